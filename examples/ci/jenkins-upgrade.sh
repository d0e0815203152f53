#!/usr/bin/env bash
# Upgrade (or restart) Jenkins without losing a GitHub webhook.
#
#   JENKINS_URL=https://jenkins.example.com/ ./jenkins-upgrade.sh ./upgrade-jenkins.sh 2.462.3
#
# The steps `cistern spigot maintenance -- CMD` does in one command, spelled out for pipelines that
# want each step visible or want to add their own between them:
#   1. spigot OFF        webhooks are queued from now on
#   2. run CMD           the upgrade itself (its output is shown as is)
#   3. wait for Jenkins  `cistern spigot status` until every Jenkins target is healthy (bounded)
#   4. spigot ON         new webhooks go straight to Jenkins again
#   5. drain             replay what was queued, signatures intact, in order per repository
#
# Environment:
#   JENKINS_URL          Jenkins base URL (required; JENKINS_USER + JENKINS_TOKEN if it needs auth)
#   HEALTH_TIMEOUT       seconds to wait for Jenkins after CMD (default 600)
#   HEALTH_INTERVAL      seconds between health checks (default 5)
#   CISTERN              the cistern executable (default: cistern on PATH)
#   plus anything cistern reads: CISTERN_QUEUE, CISTERN_DATA_DIR, CISTERN_SPIGOT_API_NAME (apigw state), …
#
# Exit codes:
#   0    upgraded, spigot ON, queue drained
#   1    cistern could not toggle the spigot, or the drain dead-lettered webhooks (see the log)
#   2    usage error (no CMD, no JENKINS_URL)
#   3    Jenkins was not healthy within HEALTH_TIMEOUT, or went down during the drain (spigot OFF)
#   N    CMD failed with exit code N: the spigot stays OFF and webhooks keep queueing
set -euo pipefail

CISTERN=${CISTERN:-cistern}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-600}
HEALTH_INTERVAL=${HEALTH_INTERVAL:-5}

log() { printf '%s jenkins-upgrade: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() {
  local code=$1
  shift
  log "ERROR: $*"
  exit "$code"
}

[[ ${1:-} == "--" ]] && shift
if [[ $# -eq 0 ]]; then
  die 2 "usage: $0 UPGRADE_COMMAND [ARGS…]  (e.g. $0 ./upgrade-jenkins.sh 2.462.3)"
fi
if [[ -z ${JENKINS_URL:-} ]]; then
  die 2 "JENKINS_URL is not set: export JENKINS_URL=https://jenkins.example.com/"
fi
if ! command -v "$CISTERN" >/dev/null 2>&1; then
  die 2 "'$CISTERN' not found on PATH: npm install -g cistern (or set CISTERN=/path/to/cistern)"
fi

# Is every Jenkins target healthy? `spigot status` exits 0 whatever the health, so read its JSON
# (with node: cistern needs it anyway, jq may not be installed).
jenkins_healthy() {
  local json
  json=$("$CISTERN" spigot status --json --health-timeout 5000 2>/dev/null) || return 1
  printf '%s' "$json" | node -e '
    let text = ""
    process.stdin.on("data", (chunk) => (text += chunk)).on("end", () => {
      const status = JSON.parse(text)
      for (const target of status.jenkins ?? []) if (target.state !== "up") console.error(`  ${target.name} ${target.url}: ${target.state}${target.detail ? ` (${target.detail})` : ""}`)
      process.exit(status.healthy === true ? 0 : 1)
    })'
}

# 1. OFF
log "1/5 turning the spigot OFF (webhooks are queued from now on)"
if ! "$CISTERN" spigot toggle --state OFF; then
  die 1 "could not turn the spigot OFF; nothing was upgraded"
fi

# 2. the upgrade
log "2/5 running: $*"
set +e
"$@"
cmd_status=$?
set -e
if [[ $cmd_status -ne 0 ]]; then
  die "$cmd_status" "upgrade command failed (exit $cmd_status): the spigot stays OFF and webhooks keep queueing. When Jenkins is fixed: $CISTERN spigot toggle --state ON && $CISTERN spigot drain"
fi

# 3. wait until healthy (bounded)
log "3/5 waiting up to ${HEALTH_TIMEOUT}s for Jenkins to be healthy"
deadline=$((SECONDS + HEALTH_TIMEOUT))
until jenkins_healthy; do
  if ((SECONDS >= deadline)); then
    die 3 "Jenkins is not healthy after ${HEALTH_TIMEOUT}s: the spigot stays OFF and webhooks keep queueing. When it is: $CISTERN spigot toggle --state ON && $CISTERN spigot drain"
  fi
  log "   Jenkins not healthy yet; checking again in ${HEALTH_INTERVAL}s"
  sleep "$HEALTH_INTERVAL"
done
log "   Jenkins is healthy"

# 4. ON
log "4/5 turning the spigot ON"
if ! "$CISTERN" spigot toggle --state ON; then
  die 1 "could not turn the spigot ON: Jenkins is upgraded but webhooks are still being queued; run: $CISTERN spigot toggle --state ON && $CISTERN spigot drain"
fi

# 5. drain (--auto-off: if Jenkins falls over again mid-drain, go back to queueing)
log "5/5 replaying the webhooks queued during the upgrade"
set +e
"$CISTERN" spigot drain --auto-off
drain_status=$?
set -e
case $drain_status in
  0) log "done: Jenkins upgraded, spigot ON, queue drained" ;;
  3) die 3 "Jenkins went down during the drain: the spigot is OFF again and the rest stays queued; drain again when it is healthy" ;;
  1) die 1 "the drain dead-lettered some webhooks (Jenkins refused them with 4xx); the log above names them; 'cistern spigot status' counts them and 'cistern queue peek --dead <queue URL>' lists them" ;;
  *) die "$drain_status" "the drain failed (exit $drain_status); the spigot is ON, queued webhooks are kept: run $CISTERN spigot drain again" ;;
esac
