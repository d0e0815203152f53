/**
 * Settings resolve flag > environment > config file > default, everywhere. oclif gives a flag its
 * `env:` fallback; each piece's resolver then chains `flags.x ?? env.X ?? file.x ?? default`.
 *
 * The one rule that makes `??` right: an exported-but-empty variable is unset. CI templates and
 * systemd units produce `JENKINS_URL=` all the time, and it must not beat the config file. Rather
 * than teach every resolver about '', the base command removes empty variables from the process
 * environment before parsing (unsetEmptyVariables), so oclif, the resolvers, the AWS SDK and the
 * jobs cistern runs all see them as unset.
 */
export function unsetEmptyVariables(env: NodeJS.ProcessEnv = process.env): string[] {
  const removed: string[] = []
  for (const [name, value] of Object.entries(env)) {
    if (value === '') {
      Reflect.deleteProperty(env, name)
      removed.push(name)
    }
  }
  return removed
}
