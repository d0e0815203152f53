import {Args, Flags} from '@oclif/core'

import {type ConfigCheckResult, checkConfig} from '../../config/check.js'
import {CONFIG_KINDS, KIND_SUMMARIES} from '../../config/kinds.js'
import {CisternCommand} from '../../core/command.js'

export default class ConfigCheck extends CisternCommand<ConfigCheckResult> {
  static override summary = 'Validate a cistern.yml, jobs.yml, codepipeline.yml or .sqslistener file'

  static override description = `Parses the YAML and checks it with the schema its piece loads it with. Unless --kind is given, the kind is detected from the content (section names, a table of jobs, actions:, Bang!'s keys), then from the file name:
${CONFIG_KINDS.map((kind) => `  ${kind.padEnd(16)} ${KIND_SUMMARIES[kind]}`).join('\n')}

Prints "FILE: ok (KIND)" and exits 0, or prints the first problem as one line naming the file, line and key and exits 2, e.g. cistern.yml:12 spigot.jenkinsUrl: expected a URL, got "jenkins". Keys a piece accepts but ignores are warned about. With --json: {file, kind, ok, warnings?}, or the error object.

Each file is checked on its own: the files it names (jobs_config_path, jobs:) are not opened.`

  static override examples = [
    {description: 'Check the main config', command: '<%= config.bin %> <%= command.id %> /etc/cistern/cistern.yml'},
    {description: "Check Bang!'s listener config", command: '<%= config.bin %> <%= command.id %> ~/.sqslistener'},
    {description: 'Check a job table, as JSON', command: '<%= config.bin %> <%= command.id %> jobs.yml --kind jobs --json'},
  ]

  static override args = {
    file: Args.string({required: true, summary: 'The YAML file to check.'}),
  }

  static override flags = {
    kind: Flags.option({options: CONFIG_KINDS, summary: 'What the file is (default: detected from its content, then its name).'})(),
  }

  async run(): Promise<ConfigCheckResult> {
    const {args, flags} = await this.parse(ConfigCheck)
    const result = await checkConfig(args.file, flags.kind)
    this.logger.debug('config file checked', {file: result.file, kind: result.kind, ok: result.ok})
    for (const warning of result.warnings ?? []) this.logger.warn(warning)
    this.print(`${result.file}: ok (${result.kind})`)
    return result
  }
}
