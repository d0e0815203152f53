import type {ConsumeCounters, ConsumeOptions, ConsumeResult, DeadLetter, Handler, HandlerContext} from '../consume.js'
import {type Outcome, type Retry, TargetGates, TargetJudge, dead, isOutcome, retry, targetDown} from '../delivery.js'
import {CisternError, ExitCode, TargetUnhealthyError, errorMessage} from '../errors.js'
import {type Logger, silentLogger} from '../log.js'
import {Wake, backoffDelay, isPaused, seconds, sleep} from '../loop.js'
import type {Queue, QueueMessage, QueueStats} from '../queue/types.js'
import {DeleteBatcher} from './deletes.js'
import {Flight} from './flight.js'
import {HandedBack} from './handed-back.js'
import {type StoppedBy, endOfRun} from './report.js'

/** SQS allows at most 12 h, but a retry later than 15 minutes is a lost message in practice. */
export const MAX_RETRY_SECONDS = 900

/** Default retry delay: 2 s doubling per attempt (1 → 1-2 s, 2 → 2-4 s, …), capped at 15 min, with jitter. */
export function retryDelaySeconds(attempts: number, random: () => number = Math.random): number {
  return Math.round(backoffDelay(Math.max(1, attempts), {baseMs: 2000, maxMs: MAX_RETRY_SECONDS * 1000, random}) / 1000)
}

const MAX_DEAD_LETTERS_LISTED = 100

/** ConsumeOptions with their defaults. */
interface Settings {
  once: boolean
  concurrency: number
  batchSize: number
  prefetch: boolean
  waitSeconds: number
  visibility: number
  stopDeadlineMs: number
  idleMs: number
  pausePollMs: number
  maxReceiveErrors: number
  maxAttempts: number
  target?: string
}

function settingsOf(options: ConsumeOptions): Settings {
  const once = options.once ?? false
  return {
    once,
    concurrency: Math.max(1, Math.floor(options.concurrency ?? 4)),
    batchSize: clamp(Math.floor(options.batchSize ?? 10), 1, 10),
    prefetch: options.prefetch ?? true,
    waitSeconds: once ? 0 : clamp(options.waitSeconds ?? 20, 0, 20),
    visibility: Math.max(1, options.visibilityTimeout ?? 30),
    stopDeadlineMs: Math.max(0, options.stopDeadlineMs ?? 30_000),
    idleMs: options.idleMs ?? 1000,
    pausePollMs: options.pausePollMs ?? 1000,
    maxReceiveErrors: options.maxReceiveErrors ?? (once ? 5 : Number.POSITIVE_INFINITY),
    maxAttempts: Math.max(0, options.maxAttempts ?? 0),
    target: options.target,
  }
}

/**
 * One run of the consumer. The receive loop (`receiveLoop`) polls while slots are free, leases
 * what it gets (`lease`), starts handlers (`start`) and keeps the rest prefetched; each handler's
 * outcome is settled (`settle`) as docs/delivery.md says. Stopping gives prefetched messages back,
 * lets in-flight work finish within the stop deadline (`finishInFlight`), then reports (`report`).
 */
export class Consumer {
  readonly gates: TargetGates
  readonly judge: TargetJudge
  private readonly settings: Settings
  private readonly log: Logger
  private readonly counters: ConsumeCounters = {received: 0, delivered: 0, retried: 0, dead: 0, released: 0, errors: 0, inFlight: 0, receiveErrors: 0}
  private readonly deadLetters: DeadLetter[] = []
  /** Messages in a handler (each takes a slot). */
  private readonly running = new Set<Flight>()
  /** Prefetched: received and leased, not yet started, in the order received. */
  private readonly waiting: Flight[] = []
  /** Give-backs started while settling; awaited before the run returns. */
  private readonly givingBack = new Set<Promise<void>>()
  private readonly deletes: DeleteBatcher
  private readonly handedBack = new HandedBack()
  /** Aborted when the run stops receiving: cuts a long poll or a wait short. */
  private readonly receiving = new AbortController()
  /** Aborted at the stop deadline: handlers see it as context.signal. */
  private readonly handlersAbort = new AbortController()
  /** Notified whenever a handler settles (or the run stops): the receive loop waits on it. */
  private readonly settled = new Wake()
  /** One-shot: no receive after this moment. */
  private readonly deadline: number
  private stoppedBy?: StoppedBy
  private stopError?: CisternError
  /** Receives failed for good: run() rejects with this. */
  private receiveFailure?: CisternError
  private receiveFailuresInARow = 0
  /** The probe was asked once (it is asked before the first receive). */
  private probed = false
  /** The probe passed since the gate last closed: a message tests the target now. */
  private probePassed = false
  /** The receive in flight. */
  private polling?: AbortController
  /** awaitLapsingLeases: what had been received when the run last waited for someone else's lease. */
  private receivedAtLapseWait?: number

  constructor(
    private readonly queue: Queue,
    private readonly handler: Handler,
    private readonly options: ConsumeOptions = {},
  ) {
    this.settings = settingsOf(options)
    this.log = options.log ?? silentLogger
    this.gates = options.gates ?? new TargetGates({once: this.settings.once, giveUpAfterMs: options.giveUpAfterMs, log: this.log})
    this.judge = options.judge ?? new TargetJudge(this.gates)
    this.deletes = new DeleteBatcher(queue, this.log, options.deleteFlushMs ?? 50)
    const {once} = this.settings
    this.deadline = once ? Date.now() + Math.max(0, options.deadlineMs ?? 300_000) : Number.POSITIVE_INFINITY
  }

  async run(): Promise<ConsumeResult> {
    const {signal} = this.options
    const onSignal = () => {
      this.stop('signal')
    }
    signal?.addEventListener('abort', onSignal, {once: true})
    if (signal?.aborted) this.stop('signal')
    try {
      await this.receiveLoop()
      // Stopping: prefetched messages were never started; give them back before waiting on the rest.
      await this.giveBack(this.waiting.splice(0), 'stopping')
      await this.finishInFlight()
      await Promise.all([...this.givingBack])
      await this.deletes.close()
    } finally {
      signal?.removeEventListener('abort', onSignal)
    }
    if (this.receiveFailure) throw this.receiveFailure
    return this.report()
  }

  /** Stop receiving: a stop signal, the deadline, a target given up, a stop outcome, the queue empty. */
  private stop(why: StoppedBy): void {
    this.stoppedBy ??= why
    this.receiving.abort()
    this.settled.notify()
  }

  /** A stop outcome (of a handler or the probe): the run stops and ends with the error's code. */
  private stopWith(error: CisternError, messageId?: string): void {
    this.stopError ??= error
    this.log.error(`stopping: ${error.oneLine}`, messageId === undefined ? {} : {messageId})
    this.stop('stop')
  }

  /** A method, not a getter: it changes across every await. */
  private stopping(): boolean {
    return this.receiving.signal.aborted
  }

  // --- receiving -------------------------------------------------------------------------------

  private async receiveLoop(): Promise<void> {
    while (!this.stopping()) {
      if (Date.now() >= this.deadline) {
        this.stop('deadline')
        break
      }
      if (await this.pausedNow()) continue
      if (await this.targetUnavailable()) continue
      const free = this.freeSlots()
      if (free <= 0) {
        await this.waitForSlot()
        continue
      }
      if (this.waiting.length > 0) {
        for (const flight of this.waiting.splice(0, free)) this.start(flight)
        continue
      }
      // Taken before the receive, so a handler settling during it is not missed.
      const settledDuringReceive = this.settled.notified
      const began = Date.now()
      const messages = await this.poll(free)
      if (!messages) continue
      if (this.stopping()) {
        // Received while the stop began: give them straight back.
        await Promise.all(messages.map((message) => this.releaseToQueue(message, 0)))
        break
      }
      if (messages.length === 0) {
        await this.whenEmpty(began, settledDuringReceive)
        continue
      }
      // Paused during the long poll (spigot turned OFF, maintenance began): hand them back untouched.
      if (this.options.paused && (await isPaused(this.options.paused, this.log))) {
        this.log.debug('paused while receiving: releasing the batch', {count: messages.length})
        await Promise.all(messages.map((message) => this.releaseToQueue(message, 0)))
        continue
      }
      this.take(messages, free)
    }
  }

  /** While paused nothing is received and nothing prefetched is kept. */
  private async pausedNow(): Promise<boolean> {
    if (!(await isPaused(this.options.paused, this.log))) return false
    await this.giveBack(this.waiting.splice(0), 'paused')
    await sleep(Math.min(this.settings.pausePollMs, this.deadline - Date.now()), this.receiving.signal)
    return true
  }

  /**
   * A consumer of one target receives nothing while the target's gate is closed (SQS counts every
   * receive), gives back what it holds, and a one-shot run stops once the target is given up.
   */
  private async targetUnavailable(): Promise<boolean> {
    const {target} = this.settings
    if (target === undefined) return false
    if (this.gates.isOpen(target)) return this.probeFails(target)
    this.probePassed = false
    if (this.gates.givenUp(target)) {
      this.stop('target-down')
      return true
    }
    await this.giveBack(this.waiting.splice(0), `${target} is down`, Math.ceil(this.gates.retryInMs(target) / 1000))
    await this.settled.wait(Math.min(this.gates.changesInMs(target) ?? 0, this.deadline - Date.now()), this.receiving.signal)
    return true
  }

  /**
   * With a probe: while the target is down but its gate is open again, ask it before a message is
   * spent on the test; and before the first receive where every receive counts toward the redrive
   * policy (SQS, the facade; the embedded queue does not count a release, so receiving first costs
   * nothing and an empty queue needs no target). True when the target is (still) down. A probe
   * that passes lets one message test the target for real: only a delivery makes it well again (a
   * health check can pass while the real requests fail, and a one-shot run must still give up).
   */
  private async probeFails(target: string): Promise<boolean> {
    const {probe} = this.options
    const first = !this.probed && this.queue.kind !== 'sqlite'
    this.probed = true
    // Once it passed, and while a message tests the target, no probe: the message's outcome will tell.
    if (!probe || this.probePassed || !(first || this.gates.isDown(target)) || this.running.size > 0) return false
    const outcome = await probe(this.receiving.signal).catch((error: unknown) => targetDown(target, errorMessage(error)))
    if (this.stopping()) return true
    switch (outcome.kind) {
      case 'delivered': {
        this.probePassed = true
        return false
      }
      case 'target-down': {
        this.gates.failedWith(outcome)
        return true
      }
      case 'stop': {
        this.stopWith(outcome.error)
        return true
      }
    }
  }

  /** Free handler slots; one while the only target is down but open again (one message probes it). */
  private freeSlots(): number {
    const {target, concurrency} = this.settings
    if (target !== undefined && this.gates.isDown(target)) return this.running.size === 0 ? 1 : 0
    return concurrency - this.running.size
  }

  private async waitForSlot(): Promise<void> {
    // Holding prefetched messages: notice a pause within pausePollMs, not only when a slot frees.
    const forPause = this.waiting.length > 0 && this.options.paused ? this.settings.pausePollMs : Number.POSITIVE_INFINITY
    await this.settled.wait(Math.min(forPause, this.deadline - Date.now()), this.receiving.signal)
  }

  private async poll(free: number): Promise<QueueMessage[] | undefined> {
    const {target, prefetch, batchSize} = this.settings
    const probing = target !== undefined && this.gates.isDown(target)
    this.deletes.flushGroups()
    // Cut short by a stop, or by the one target going down meanwhile (targetWentDown).
    const polling = new AbortController()
    const onStop = () => {
      polling.abort()
    }
    this.receiving.signal.addEventListener('abort', onStop, {once: true})
    this.polling = polling
    try {
      const messages = await this.queue.receive({
        maxMessages: probing ? 1 : prefetch ? batchSize : Math.min(batchSize, free),
        waitSeconds: this.settings.waitSeconds,
        visibilityTimeout: this.settings.visibility,
        signal: polling.signal,
        onDead: (message, reason) => {
          this.recordDead(message.id, undefined, reason, 'dead-letter-queue, by the queue at receive')
        },
      })
      this.receiveFailuresInARow = 0
      return await this.unlessTargetClosed(messages)
    } catch (error) {
      if (!this.stopping() && !polling.signal.aborted) await this.receiveFailed(error)
      return undefined
    } finally {
      this.receiving.signal.removeEventListener('abort', onStop)
      this.polling = undefined
    }
  }

  /**
   * Received while the one target went down (the poll was already answered): hand them back
   * untouched, for when its gate opens, instead of attempting them now.
   */
  private async unlessTargetClosed(messages: QueueMessage[]): Promise<QueueMessage[]> {
    const {target} = this.settings
    if (target === undefined || messages.length === 0 || this.gates.isOpen(target)) return messages
    const delay = Math.ceil(this.gates.retryInMs(target) / 1000)
    // Handed back like any other message waiting for its target: a one-shot run waits for them.
    await Promise.all(messages.map((message) => this.handBack(message, delay, `${target} went down while receiving`, target)))
    return []
  }

  /** Back off before the next receive; give up after too many in a row, or at once for a usage error. */
  private async receiveFailed(error: unknown): Promise<void> {
    const failures = ++this.receiveFailuresInARow
    this.counters.receiveErrors++
    this.progress()
    if ((error instanceof CisternError && error.exitCode === ExitCode.usage) || failures >= this.settings.maxReceiveErrors) {
      this.log.error('receive failed; giving up', {error: errorMessage(error), attempt: failures})
      // A network or service error is the operator's to fix, not a bug: say which queue.
      this.receiveFailure =
        error instanceof CisternError
          ? error
          : new TargetUnhealthyError(`cannot receive from ${this.queue.url}: ${errorMessage(error)} (${failures} attempts)`, 'check the queue URL, credentials and network', error)
      this.stop('stop')
      return
    }
    const wait = backoffDelay(failures, this.options.receiveBackoff)
    this.log.warn(`receive failed; retrying in ${seconds(wait)}`, {error: errorMessage(error), attempt: failures})
    await sleep(wait, this.receiving.signal)
  }

  /**
   * The queue looked empty. A loop waits out the rest of idleMs. A one-shot run looks again when a
   * running handler settles or pending deletes unblock a FIFO group; then it waits for what it
   * handed back that is due before the deadline; with nothing left to wait for, it ends.
   */
  private async whenEmpty(began: number, settledDuringReceive: Promise<void>): Promise<void> {
    if (!this.settings.once) {
      const rest = this.settings.idleMs - (Date.now() - began)
      if (rest > 0) await sleep(rest, this.receiving.signal)
      return
    }
    if (this.running.size > 0) {
      await this.settled.wait(this.deadline - Date.now(), this.receiving.signal, settledDuringReceive)
      return
    }
    // Deletes still waiting in the batch hold back FIFO groups (a group is blocked while its head
    // is in flight): send them, then look once more before calling the queue empty.
    if (await this.deletes.settle()) return
    const next = this.handedBack.nextLook(this.deadline, this.gates)
    if (next === undefined) {
      if (await this.awaitLapsingLease()) return
      this.stop(this.whyNothingIsLeft())
      return
    }
    // The queue may know of something visible sooner (another consumer's lease lapsing).
    const visibleAt = (await this.statsOrUndefined())?.nextVisibleAt?.getTime()
    const wakeAt = Math.min(next, visibleAt !== undefined && visibleAt > Date.now() ? visibleAt : next, this.deadline)
    this.log.debug(`waiting ${seconds(wakeAt - Date.now())} for ${this.handedBack.size} handed-back message(s)`)
    await sleep(wakeAt - Date.now(), this.receiving.signal)
  }

  /**
   * ConsumeOptions.awaitLapsingLeases: sleep until the queue's next hidden message becomes visible,
   * when that is before the deadline and none of this run's own messages is still out (those wait
   * for targets it gave up). Not again once a wait brought nothing: its holder is alive.
   */
  private async awaitLapsingLease(): Promise<boolean> {
    if (!this.options.awaitLapsingLeases || this.handedBack.size > 0) return false
    if (this.receivedAtLapseWait === this.counters.received) return false
    const stats = await this.statsOrUndefined()
    const at = stats?.nextVisibleAt?.getTime()
    if (at === undefined || stats === undefined || stats.inFlight + stats.delayed === 0 || at > this.deadline) return false
    this.receivedAtLapseWait = this.counters.received
    const wait = Math.max(0, at - Date.now()) + 100
    this.log.debug(`waiting ${seconds(wait)} for a message another consumer holds (its lease ends, or it extends it)`)
    await sleep(Math.min(wait, this.deadline - Date.now()), this.receiving.signal)
    return true
  }

  /** A one-shot run that has nothing left to wait for: why. */
  private whyNothingIsLeft(): StoppedBy {
    if (this.handedBack.size === 0) return 'empty'
    return this.handedBack.waitsOnlyForGivenUpTargets(this.gates) ? 'target-down' : 'deadline'
  }

  // --- handling --------------------------------------------------------------------------------

  /** Received messages: leased from now until they settle or are given back; the first `free` start. */
  private take(messages: QueueMessage[], free: number): void {
    const onLost = (flight: Flight) => {
      this.lostWhileWaiting(flight)
    }
    const leased = messages.map((message) => new Flight(message, this.queue, this.settings.visibility, this.log, onLost))
    for (const flight of leased.slice(0, free)) this.start(flight)
    this.waiting.push(...leased.slice(free))
  }

  private lostWhileWaiting(flight: Flight): void {
    const index = this.waiting.indexOf(flight)
    if (index >= 0) this.waiting.splice(index, 1)
  }

  private start(flight: Flight): void {
    flight.started = true
    this.running.add(flight)
    this.counters.received++
    this.counters.inFlight++
    this.progress()
    flight.settled = this.handle(flight)
      .catch((error: unknown) => {
        this.log.error('settling a message failed', {messageId: flight.message.id, error: errorMessage(error)})
      })
      .finally(() => {
        if (flight.abandoned) return
        this.running.delete(flight)
        this.counters.inFlight--
        this.progress()
        this.settled.notify()
      })
  }

  private async handle(flight: Flight): Promise<void> {
    const outcome = await this.attempt(flight)
    if (flight.abandoned) {
      this.log.debug('handler finished after its message was released', {messageId: flight.message.id, outcome: outcome.kind})
      return
    }
    flight.drop()
    await this.settle(flight, outcome)
  }

  /** The handler's outcome; one that throws or returns no outcome is a retry (and an error). */
  private async attempt(flight: Flight): Promise<Outcome> {
    const {message} = flight
    const log = this.log.child({messageId: message.id})
    try {
      const outcome: unknown = await this.handler(message, this.contextFor(flight, log))
      if (isOutcome(outcome)) return outcome
      this.counters.errors++
      log.error('handler returned no outcome; retrying later', {outcome: String(outcome)})
      return retry('the handler returned no outcome')
    } catch (error) {
      this.counters.errors++
      log.error('handler failed; retrying later', {error: errorMessage(error), attempts: flight.attempts})
      if (error instanceof Error && error.stack) log.debug(error.stack)
      return retry(errorMessage(error))
    } finally {
      flight.stopHeartbeat()
    }
  }

  private contextFor(flight: Flight, log: Logger): HandlerContext {
    return {
      signal: this.handlersAbort.signal,
      log,
      gates: this.gates,
      judge: this.judge,
      attempt: flight.attempts,
      setLabel: (label) => (flight.label = label),
    }
  }

  /** What the queue sees for each outcome (docs/delivery.md, "Outcomes"). */
  private async settle(flight: Flight, outcome: Outcome): Promise<void> {
    const {message} = flight
    const label = outcome.label ?? flight.label
    if (outcome.kind === 'retry' && this.settings.maxAttempts > 0 && flight.attempts >= this.settings.maxAttempts) {
      outcome = dead(`gave up after ${flight.attempts} attempts: ${outcome.reason}`)
    }
    switch (outcome.kind) {
      case 'delivered': {
        this.counters.delivered++
        if (this.settings.target !== undefined) this.gates.succeeded(this.settings.target)
        this.handedBack.forget(message.id)
        this.deletes.add(message)
        return
      }
      case 'dead': {
        this.handedBack.forget(message.id)
        return this.deadLetter(message, outcome.reason, label)
      }
      case 'retry': {
        return this.retryLater(flight, outcome)
      }
      case 'released': {
        return this.handBack(message, outcome.delaySeconds ?? 0, outcome.reason, outcome.target)
      }
      case 'target-down': {
        this.gates.failedWith(outcome)
        // The one target is down: a long poll in flight would take messages that cannot be attempted.
        // (A short poll is left to answer: cutting it could strand what SQS already handed out.)
        if (outcome.target === this.settings.target && this.settings.waitSeconds > 0) this.polling?.abort()
        return this.handBack(message, Math.ceil(this.gates.retryInMs(outcome.target) / 1000), outcome.reason, outcome.target)
      }
      case 'stop': {
        this.stopWith(outcome.error, message.id)
        return this.handBack(message, 0, 'stopping', undefined, false)
      }
    }
  }

  /** Hidden for its delay (default: back-off by attempts), then received again. An attempt. */
  private async retryLater(flight: Flight, outcome: Retry): Promise<void> {
    const {message} = flight
    const asked = outcome.delaySeconds
    const delay = clamp(Math.round(asked !== undefined && Number.isFinite(asked) ? asked : retryDelaySeconds(flight.attempts)), 0, MAX_RETRY_SECONDS)
    this.holdBackGroup(message, delay)
    this.counters.retried++
    this.expectBack(message.id, delay)
    this.log.debug('retry later', {messageId: message.id, delaySeconds: delay, reason: outcome.reason})
    await this.queue.changeVisibility(message.receiptHandle, delay).catch((error: unknown) => {
      // The message still comes back when its current visibility lapses: only the delay is lost.
      this.log.warn('could not set the retry delay', {messageId: message.id, error: errorMessage(error)})
    })
  }

  /** Released, target down, stopping: back to the queue untouched, not an attempt. */
  private async handBack(message: QueueMessage, delaySeconds: number, reason: string, target?: string, comesBack = true): Promise<void> {
    const delay = clamp(Math.round(delaySeconds), 0, MAX_RETRY_SECONDS)
    this.holdBackGroup(message, delay)
    this.counters.released++
    if (comesBack) this.expectBack(message.id, delay, target)
    this.log.debug('released', {messageId: message.id, delaySeconds: delay, reason})
    await this.releaseToQueue(message, delay)
    // Only what is expected back is re-timed (nothing, when it is not).
    this.handedBack.released(message.id, delay)
  }

  /**
   * A FIFO group's later messages must not overtake an earlier one that is coming back: give the
   * prefetched ones back too, expected back with it.
   */
  private holdBackGroup(message: QueueMessage, delaySeconds: number): void {
    const group = message.groupId
    if (group === undefined) return
    const held = this.waiting.filter((flight) => flight.message.groupId === group)
    if (held.length === 0) return
    for (const flight of held) {
      this.waiting.splice(this.waiting.indexOf(flight), 1)
      this.expectBack(flight.message.id, delaySeconds)
    }
    const giving = this.giveBack(held, `an earlier message of group ${group} is coming back`).finally(() => this.givingBack.delete(giving))
    this.givingBack.add(giving)
  }

  /** A one-shot run waits for what it handed back (a loop just receives it again whenever it comes). */
  private expectBack(messageId: string, delaySeconds: number, target?: string): void {
    if (this.settings.once) this.handedBack.expect(messageId, delaySeconds, target)
  }

  private async deadLetter(message: QueueMessage, reason: string, label?: string): Promise<void> {
    try {
      const where = await this.queue.deadLetter(message, reason)
      this.recordDead(message.id, label, reason, where)
    } catch (error) {
      this.log.error('could not dead-letter the message; it will be received again', {messageId: message.id, reason, error: errorMessage(error)})
    }
  }

  /** Dead letters are loud: a warn line each, a count, and the first 100 listed in the result. */
  private recordDead(id: string, label: string | undefined, reason: string, where: string): void {
    this.counters.dead++
    if (this.deadLetters.length < MAX_DEAD_LETTERS_LISTED) this.deadLetters.push({id, ...(label === undefined ? {} : {label}), reason})
    this.log.warn(`dead letter ${id}${label === undefined ? '' : ` ${label}`} — ${reason} (to ${where})`, {messageId: id, label, reason, to: where})
    this.progress()
  }

  // --- giving back and stopping ----------------------------------------------------------------

  /** Prefetched messages back to the queue untouched (never attempted). */
  private async giveBack(held: Flight[], why: string, delaySeconds = 0): Promise<void> {
    if (held.length === 0) return
    for (const flight of held) flight.drop()
    this.log.debug(`giving back ${held.length} prefetched message(s): ${why}`, {messageIds: held.map((flight) => flight.message.id)})
    await Promise.all(held.map((flight) => this.releaseToQueue(flight.message, delaySeconds)))
  }

  private releaseToQueue(message: QueueMessage, delaySeconds: number): Promise<void> {
    return this.queue.release(message.receiptHandle, delaySeconds).catch((error: unknown) => {
      this.log.warn('could not release the message; it comes back when its visibility lapses', {messageId: message.id, error: errorMessage(error)})
    })
  }

  /** In-flight handlers get the stop deadline to finish; then they are aborted and their messages released. */
  private async finishInFlight(): Promise<void> {
    if (this.running.size === 0) return
    const timer = new AbortController()
    const allSettled = Promise.all([...this.running].map((flight) => flight.settled)).then(() => true)
    const inTime = await Promise.race([allSettled, sleep(this.settings.stopDeadlineMs, timer.signal).then(() => false)])
    timer.abort()
    if (inTime || this.running.size === 0) return
    this.handlersAbort.abort(new Error('stop deadline passed'))
    const unfinished = [...this.running]
    this.log.warn(`stop deadline passed: releasing ${unfinished.length} unfinished message(s)`)
    for (const flight of unfinished) {
      flight.abandoned = true
      flight.drop()
      this.running.delete(flight)
      this.counters.inFlight--
      this.counters.released++
    }
    this.progress()
    await Promise.all(unfinished.map((flight) => this.releaseToQueue(flight.message, 0)))
  }

  // --- the result ------------------------------------------------------------------------------

  private async report(): Promise<ConsumeResult> {
    const stoppedBy = this.stoppedBy ?? 'signal'
    const end = endOfRun({
      once: this.settings.once,
      stoppedBy,
      stopError: this.stopError,
      dead: this.counters.dead,
      queueUrl: this.queue.url,
      stats: await this.statsOrUndefined(),
      handedBack: this.handedBack.tally(this.deadline, this.gates),
      gates: this.gates,
      target: this.settings.target,
      groups: this.queue.capabilities.groups === true,
    })
    return {...this.counters, stoppedBy, deadLetters: this.deadLetters, ...end, ...(this.stopError ? {stopError: this.stopError} : {})}
  }

  /** The queue's counts, or undefined when it cannot tell (the facade answers -1). */
  private async statsOrUndefined(): Promise<QueueStats | undefined> {
    try {
      const stats = await this.queue.stats()
      return stats.visible < 0 || stats.inFlight < 0 || stats.delayed < 0 ? undefined : stats
    } catch (error) {
      this.log.debug('queue stats failed', {error: errorMessage(error)})
      return undefined
    }
  }

  private progress(): void {
    if (!this.options.onProgress) return
    try {
      this.options.onProgress({...this.counters})
    } catch (error) {
      this.log.debug('onProgress failed', {error: errorMessage(error)})
    }
  }
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value))
}
