/**
 * GitHub's answers as outcomes (docs/delivery.md, "Target failures are not message failures"),
 * with what only status-queue knows put before the core's TargetJudge:
 *
 *   rate limit (429, 403 saying so)   the `github` gate closes for Retry-After / x-ratelimit-reset:
 *                                     the worker receives nothing until then
 *   5xx, 408, no answer               `github` is down (after the in-process retries)
 *   401                               the token is refused for everything: the worker stops (exit 3)
 *   403 that is no rate limit         `github:<owner>` is down (credentials): that organisation's
 *                                     statuses wait, the others flow
 *   a redirect, a page not JSON       GITHUB_URL is not the API: the worker stops (exit 2)
 *   another 4xx right after a 2xx     dead: GitHub refused this status while it accepted the one
 *   for the same organisation         before (the judge's "retry it and see whether others pass"
 *                                     cannot work on EventBridge's one FIFO group, where nothing
 *                                     else passes while a suspect waits: it would hold the group
 *                                     for every attempt up to the redrive limit)
 *   2xx, another 4xx                  the judge, per `github:<owner>`: delivered; a suspect retried
 *                                     once, dead on a repeat while others pass, or the
 *                                     organisation down when three in a row get it
 */
import {type Delivered, type Outcome, type Stop, type TargetDown, type TargetJudge, dead, delivered, describeAnswer, stop, targetDown} from '../core/delivery.js'
import {TargetUnhealthyError, UsageError} from '../core/errors.js'
import type {GitHubAnswer} from './answers.js'

/** The target key of GitHub as a whole: the consumer's one target. */
export const GITHUB = 'github'

/** The target key of one GitHub organisation (or user): its refusals stop only its statuses. */
export function organisation(owner: string): string {
  return `github:${owner.toLowerCase()}`
}

type AboutGitHub = Extract<GitHubAnswer, {kind: 'rate-limited' | 'unwell' | 'bad-token' | 'misdirected'}>

export class GitHubVerdicts {
  /** Organisations whose last answer was a 2xx. */
  private readonly lastAccepted = new Set<string>()

  constructor(
    private readonly apiUrl: string,
    /** Cap on the wait a rate limit closes the gate for (default 900 s). */
    private readonly maxRetryDelaySeconds = 900,
  ) {}

  /** The outcome of posting one message's status, after its in-process retries. */
  ofStatus(answer: GitHubAnswer, owner: string, messageId: string, judge: TargetJudge): Outcome {
    const org = organisation(owner)
    switch (answer.kind) {
      case 'ok':
        this.lastAccepted.add(org)
        return judge.verdict(org, messageId, {status: answer.status})
      case 'refused':
        // One refusal right after a success is this status's; the next ones go to the judge.
        if (this.lastAccepted.delete(org)) return dead(`${describeAnswer(org, answer.answer)}, while it accepted the status before`)
        return judge.verdict(org, messageId, answer.answer)
      case 'forbidden':
        return targetDown(organisation(owner), answer.reason, {credentials: true})
      default:
        return this.ofGitHub(answer)
    }
  }

  /** The health check's outcome: any answer from GitHub means it is there, unless it says otherwise. */
  ofHealth(answer: GitHubAnswer): Delivered | TargetDown | Stop {
    switch (answer.kind) {
      case 'ok':
        return answer.exhaustedForSeconds === undefined ? delivered() : this.rateLimited(answer.exhaustedForSeconds, 'GitHub rate limit used up (x-ratelimit-remaining: 0)')
      case 'refused':
      case 'forbidden':
        return delivered()
      default:
        return this.ofGitHub(answer)
    }
  }

  /** Answers about GitHub as a whole, or about the settings. */
  private ofGitHub(answer: AboutGitHub): TargetDown | Stop {
    switch (answer.kind) {
      case 'rate-limited':
        return this.rateLimited(answer.seconds, answer.reason)
      case 'unwell':
        return targetDown(GITHUB, describeAnswer(GITHUB, answer.answer))
      case 'bad-token':
        return stop(
          new TargetUnhealthyError(
            `${answer.reason}: GITHUB_ACCESS_TOKEN is not accepted`,
            `set GITHUB_ACCESS_TOKEN (or the file of --github-token-file) to a token that may create commit statuses (repo:status) on ${this.apiUrl}`,
          ),
        )
      case 'misdirected':
        return stop(new UsageError(`${answer.reason} (GITHUB_URL ${this.apiUrl})`, 'set GITHUB_URL to the API base: https://api.github.com, or https://<host>/api/v3 for GitHub Enterprise'))
    }
  }

  private rateLimited(seconds: number, reason: string): TargetDown {
    return targetDown(GITHUB, reason, {retryAfterSeconds: Math.min(seconds, this.maxRetryDelaySeconds)})
  }
}
