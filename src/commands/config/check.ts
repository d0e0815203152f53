import {Args, Flags} from '@oclif/core'

import {cisternConfigSchema} from '../../config/cistern.js'
import {CisternCommand} from '../../core/command.js'
import {checkConfigFile, type ConfigCheckResult} from '../../core/config.js'
import {jobsSchema, looksLikeJobs} from '../../core/jobs.js'

export default class ConfigCheck extends CisternCommand<ConfigCheckResult> {
  static override summary = 'Validate a cistern.yml or jobs.yml file'

  static override description = `Parses the YAML and checks it against the schema of its kind. Unless --kind is given, the kind is detected: a file whose top-level values are all jobs (each with argv: or command:) is a jobs.yml, anything else a cistern.yml.

Prints "FILE: ok", or the first problem as one line naming the file, line and key, e.g. cistern.yml:12 spigot.jenkins.url: expected a URL, got "jenkins". With --json: {file, kind, ok, error?, line?, key?}.

Exit codes: 0 valid, 2 invalid or unreadable.`

  static override examples = [
    {description: 'Check the main config', command: '<%= config.bin %> <%= command.id %> /etc/cistern/cistern.yml'},
    {description: 'Check a job table, as JSON', command: '<%= config.bin %> <%= command.id %> jobs.yml --kind jobs --json'},
  ]

  static override args = {
    file: Args.string({required: true, summary: 'The YAML file to check.'}),
  }

  static override flags = {
    kind: Flags.option({options: ['cistern', 'jobs'] as const, summary: 'What the file is (default: detected from its content).'})(),
  }

  async run(): Promise<ConfigCheckResult> {
    const {args, flags} = await this.parse(ConfigCheck)
    const result = await checkConfigFile(args.file, {
      kind: flags.kind,
      detect: (data) => (looksLikeJobs(data) ? 'jobs' : 'cistern'),
      schemas: {cistern: cisternConfigSchema, jobs: jobsSchema},
    })
    this.logger.debug('config file checked', {file: result.file, kind: result.kind, ok: result.ok})
    if (result.ok) {
      this.print(`${args.file}: ok`)
      return result
    }
    // The one line goes to stderr either way; with --json the result object is the output too.
    process.stderr.write(`${result.error}\n`)
    if (this.jsonEnabled()) this.logJson(result)
    return this.exit(2)
  }
}
