// How workers share the listening addresses. node:cluster either accepts in the primary and
// passes each connection to a worker in turn ('rr', SCHED_RR), or lets every worker accept on
// the primary's socket ('shared', SCHED_NONE: on Linux the busiest worker tends to win the race);
// Node >= 22.12 can also bind one socket per worker with SO_REUSEPORT ('reuseport'), where the
// kernel spreads connections by a hash of their addresses, as PgBouncer's so_reuseport setups do.
// Which one runs is chosen per Node version from the measurements in docs/architecture.md:
// 'shared' before 22.12, 'reuseport' from it; TIDEPOOL_WORKER_LISTEN overrides it (bench lab, tests).

export type ListenMode = 'rr' | 'shared' | 'reuseport'

const MODES: readonly ListenMode[] = ['rr', 'shared', 'reuseport']

/** net.Server's reusePort option: Node 22.12+ and 23.1+. */
export function hasReusePort(version: string = process.versions.node): boolean {
  const [major, minor] = version.split('.').map(Number)
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12)
}

/**
 * The mode for this Node version, or the override when it names one this Node can run. Measured
 * (docs/architecture.md, "Workers: measured"): 'rr' costs the primary an accept and a descriptor
 * passed over IPC per connection (churn: 1.6x the CPU per transaction of 'shared'), for no gain
 * in the other scenarios; 'shared' spread connections evenly in every run; 'reuseport' does as
 * well as 'shared' and leaves the spreading to the kernel, without a shared accept queue.
 */
export function chooseListenMode(override: string | undefined, version: string = process.versions.node): ListenMode {
  const asked = MODES.find((m) => m === override)
  if (asked !== undefined && (asked !== 'reuseport' || hasReusePort(version))) return asked
  return hasReusePort(version) ? 'reuseport' : 'shared'
}
