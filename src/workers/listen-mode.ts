// How workers share the listening addresses. node:cluster either accepts in the primary and
// passes each connection to a worker in turn ('rr', SCHED_RR), or lets every worker accept on
// the primary's socket ('shared', SCHED_NONE: on Linux the busiest worker tends to win the race);
// Node >= 22.12 can also bind one socket per worker with SO_REUSEPORT ('reuseport'), where the
// kernel spreads connections by a hash of their addresses, as PgBouncer's so_reuseport setups do.
// Which one runs is chosen per Node version from the measurements in docs/architecture.md;
// TIDEPOOL_WORKER_LISTEN overrides it for the bench lab.

export type ListenMode = 'rr' | 'shared' | 'reuseport'

const MODES: readonly ListenMode[] = ['rr', 'shared', 'reuseport']

/** net.Server's reusePort option: Node 22.12+ and 23.1+. */
export function hasReusePort(version: string = process.versions.node): boolean {
  const [major, minor] = version.split('.').map(Number)
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12)
}

/** The mode for this Node version, or the override when it names one this Node can run. */
export function chooseListenMode(override: string | undefined, version: string = process.versions.node): ListenMode {
  const asked = MODES.find((m) => m === override)
  if (asked !== undefined && (asked !== 'reuseport' || hasReusePort(version))) return asked
  return 'rr'
}
