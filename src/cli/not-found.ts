import {type Hook, toConfiguredId} from '@oclif/core'
import levenshtein from 'fast-levenshtein'

import {ExitCode} from '../core/errors.js'

/**
 * An unknown command. On a terminal, @oclif/plugin-not-found asks "Did you mean …?" and runs the
 * answer; anywhere else (CI scripts, cron) there is nobody to ask, so the suggestion is one usage
 * line (exit 2) instead of the plugin's bare "Run cistern help" (exit 127).
 */
const hook: Hook.CommandNotFound = async function (options) {
  if (process.stdin.isTTY && process.stderr.isTTY) {
    const {default: prompt} = await import('@oclif/plugin-not-found')
    return prompt.call(this, options)
  }
  const visible = options.config.commands.filter((command) => !command.hidden)
  const ids = visible.flatMap((command) => [command.id, ...command.aliases])
  const closest = ids
    .map((id) => ({id, distance: levenshtein.get(options.id, id)}))
    .sort((a, b) => a.distance - b.distance)
    .at(0)
  const typed = toConfiguredId(options.id, options.config)
  const bin = options.config.bin
  const suggestion = closest ? `did you mean \`${bin} ${toConfiguredId(closest.id, options.config)}\`? (\`${bin} --help\` lists every command)` : `\`${bin} --help\` lists every command`
  // Printed like the base command's usage errors: one line, exit 2.
  process.stderr.write(`Error: "${typed}" is not a ${bin} command — ${suggestion}\n`)
  this.exit(ExitCode.usage)
}

export default hook
