/** Buildkite EventBridge events as the service's rule delivers them (detail) or unwrapped (envelope). */
export const SHA = '0123456789abcdef0123456789abcdef01234567'

export interface DetailInput {
  number?: number
  state?: string
  commit?: string
  branch?: string
  message?: string
  repo?: string
  pipeline?: string
  org?: string
}

export function detail(input: DetailInput = {}) {
  return {
    version: 1,
    build: {
      uuid: '0190c1a8-0b2e-4a57-9f0e-5d6c8a1b2c3d',
      graphql_id: 'QnVpbGQtLS0wMTkwYzFhOA==',
      number: input.number ?? 42,
      commit: input.commit ?? SHA,
      message: input.message ?? 'Fix the flaky test\n\nLonger body',
      branch: input.branch ?? 'main',
      state: input.state ?? 'passed',
      source: 'webhook',
      started_at: '2026-11-26 06:00:00 UTC',
      finished_at: '2026-11-26 06:03:12 UTC',
    },
    pipeline: {
      uuid: '0190c1a8-aaaa-4a57-9f0e-5d6c8a1b2c3d',
      graphql_id: 'UGlwZWxpbmUtLS0wMTkw',
      slug: input.pipeline ?? 'web-app',
      repo: input.repo ?? 'git@github.com:acme/web-app.git',
    },
    organization: {uuid: '0190c1a8-bbbb-4a57-9f0e-5d6c8a1b2c3d', graphql_id: 'T3JnYW5pemF0aW9u', slug: input.org ?? 'acme'},
  }
}

export function envelope(input: DetailInput = {}, detailType = 'Build Finished') {
  return {
    version: '0',
    id: '2d3e2f9a-6f1c-4b5c-9a8e-1c2d3e4f5a6b',
    'detail-type': detailType,
    source: 'aws.partner/buildkite.com/acme/0190c1a8-cccc',
    account: '123456789012',
    time: '2026-11-26T06:03:12Z',
    region: 'us-east-1',
    resources: [],
    detail: detail(input),
  }
}

export const body = (value: unknown) => JSON.stringify(value)
