// What tidepool knows of each backend host, and the choice of a host for a new server
// connection. Health follows HAProxy's model: `rise` good checks in a row bring a host up, `fall`
// bad ones take it down, and a failed connect or login bans it for a while (the passive check).
// A host's role comes from every configured source (the backend's pg_is_in_recovery(), and
// Patroni's REST API when configured); a host is primary only when all of them say so, so a
// stale primary in a split brain never gets writes. Pure bookkeeping: the monitor feeds it.
// Must not: do I/O or read clocks itself (callers pass nowMs), so tests can drive it.

import type { BackendKind, TargetSessionAttrs } from '../config/types.ts'

export type { BackendKind, TargetSessionAttrs }
export type Role = 'primary' | 'replica' | 'unknown'

export interface HealthSettings {
  rise: number
  fall: number
  banMs: number
}

/** One check's outcome, from the monitor. */
export interface CheckOutcome {
  ok: boolean
  /** The backend's own answer: false = primary, true = in recovery; null when not asked (CockroachDB) or failed. */
  inRecovery: boolean | null
  /** Patroni's answer for this host; null when Patroni is not configured for it. */
  patroni: Role | null
  latencyMs: number
  error: string | null
}

export class Host {
  isUp = true
  role: Role = 'unknown'
  /** The sources disagree about the role (logged once per change, shown in SHOW HOSTS). */
  isConflicted = false
  /** Has at least one check completed; until then the role is unknown. */
  isChecked = false
  okInRow = 0
  failInRow = 0
  lastChangeMs: number
  lastCheckMs = 0
  checkLatencyMs = 0
  lastError: string | null = null
  bannedUntilMs = 0
  /** Open server connections to this host, over all pools: least-connections counts these. */
  servers = 0
  /** The host's region from host_regions ('' = none given); RELOAD may change it. */
  region = ''

  constructor(
    readonly host: string,
    readonly port: number,
    readonly kind: BackendKind,
    nowMs: number,
  ) {
    this.lastChangeMs = nowMs
  }

  get key(): string {
    return hostKey(this.host, this.port)
  }

  isUsable(nowMs: number): boolean {
    return this.isUp && this.bannedUntilMs <= nowMs
  }

  /** Applies a check; returns what changed, for the log and for retargeting pools. */
  record(o: CheckOutcome, h: HealthSettings, nowMs: number): { upChanged: boolean; roleChanged: boolean } {
    this.lastCheckMs = nowMs
    this.checkLatencyMs = o.latencyMs
    this.lastError = o.error
    const wasUp = this.isUp
    const oldRole = this.role
    if (o.ok) {
      this.okInRow++
      this.failInRow = 0
      if (!this.isUp && this.okInRow >= h.rise) this.isUp = true
      const backend: Role = this.kind === 'cockroachdb' ? 'primary' : o.inRecovery === null ? 'unknown' : o.inRecovery ? 'replica' : 'primary'
      this.isConflicted = o.patroni !== null && o.patroni !== backend
      this.role = o.patroni === null || o.patroni === backend ? backend : 'unknown'
    } else {
      this.failInRow++
      this.okInRow = 0
      if (this.isUp && this.failInRow >= h.fall) this.isUp = false
      // A host that cannot be asked has no known role: writes must not go there on old news.
      if (!this.isUp) this.role = 'unknown'
    }
    this.isChecked = true
    const upChanged = wasUp !== this.isUp
    const roleChanged = oldRole !== this.role
    if (upChanged || roleChanged) this.lastChangeMs = nowMs
    return { upChanged, roleChanged }
  }

  /** Passive check: a connect or login to this host failed. */
  ban(h: HealthSettings, reason: string, nowMs: number): void {
    this.bannedUntilMs = nowMs + h.banMs
    this.lastError = reason
  }

  /** The state word SHOW HOSTS prints. */
  health(nowMs: number): 'up' | 'down' | 'banned' | 'unchecked' {
    if (!this.isUp) return 'down'
    if (this.bannedUntilMs > nowMs) return 'banned'
    return this.isChecked ? 'up' : 'unchecked'
  }
}

export function hostKey(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/** Why pickHost found nothing, for the log line and the error a waiting client finally gets. */
export type NoHost = 'no usable host' | 'no primary known' | 'several primaries (split brain)' | 'no standby known' | 'not every host checked yet'

/** The hosts a new server connection of an entry may go to now, or why there are none. */
export function candidates(hosts: readonly Host[], attrs: TargetSessionAttrs, nowMs: number): Host[] | NoHost {
  const usable = hosts.filter((h) => h.isUsable(nowMs))
  if (usable.length === 0) return 'no usable host'
  const primaries = usable.filter((h) => h.role === 'primary')
  const replicas = usable.filter((h) => h.role === 'replica')
  switch (attrs) {
    case 'any':
      return usable
    case 'read-write':
    case 'primary':
      // Two PostgreSQL hosts that both claim to be primary: no write goes to either until the
      // sources agree again (Patroni's answer is folded into role already). A claim counts while
      // the host passes checks, even if a failed connect banned it: a ban is no proof it stepped down.
      if (hosts.filter((h) => h.isUp && h.role === 'primary').length > 1 && hosts.some((h) => h.kind === 'postgresql')) return 'several primaries (split brain)'
      // A host not yet asked may be a second primary: the first answer alone cannot rule out a
      // split brain, so writes wait until every host has answered (or failed) one check.
      if (primaries.length > 0 && hosts.some((h) => !h.isChecked && h.kind === 'postgresql')) return 'not every host checked yet'
      if (primaries.length === 0) return 'no primary known'
      return primaries
    case 'read-only':
    case 'standby':
      return replicas.length > 0 ? replicas : 'no standby known'
    case 'prefer-standby':
      // As libpq: a standby if there is one, otherwise any host that answers.
      return replicas.length > 0 ? replicas : usable
  }
}

/**
 * Of an entry's candidates, those in `region` while there is one (the node's own region first);
 * all of them otherwise, so a region with no fitting host falls back to the others. The role
 * decides first (candidates), the region only among hosts that fit: prefer-standby takes a remote
 * standby over a local primary, and writes go to the one primary wherever it is. '' prefers nothing.
 */
export function preferRegion(c: Host[], region: string): Host[] {
  if (region === '') return c
  let local: Host[] | null = null
  for (const h of c) {
    if (h.region === region) (local ??= []).push(h)
  }
  return local ?? c
}

/**
 * The host a new server connection of an entry goes to, or why none may be used now. Among
 * candidates (those of `region` first, see preferRegion) the one with the fewest open server
 * connections wins (HAProxy's leastconn); `turn` rotates the start among ties so they share new
 * connections.
 */
export function pickHost(hosts: readonly Host[], attrs: TargetSessionAttrs, nowMs: number, turn: number, region = ''): Host | NoHost {
  const all = candidates(hosts, attrs, nowMs)
  if (typeof all === 'string') return all
  const c = preferRegion(all, region)
  let best: Host | null = null
  const n = c.length
  for (let i = 0; i < n; i++) {
    const h = c[(turn + i) % n]
    if (best === null || h.servers < best.servers) best = h
  }
  return best as Host
}
