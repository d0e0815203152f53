import {defineConfig} from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // two cores: keep parallel files low so subprocess and timing-sensitive tests stay steady
    maxWorkers: 2,
    env: {AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true'},
    // The JSON report lets .ci/run print one plain 'N passed, N failed' line.
    reporters: ['default', 'json'],
    outputFile: {json: '.tmp/vitest-report.json'},
  },
})
