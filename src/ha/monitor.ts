// Active health checks: every host of the monitored [databases] entries is checked once per
// interval, each check bounded by a timeout, never two checks of one host at once. A check that
// changes a host's health or role is reported to the runtime, which retargets the pools.
// Hosts are keyed by host:port, so entries that share a cluster share its checks.
// Must not: decide which host a pool uses (hosts.ts), or touch pools (the runtime does).

import { Host, hostKey, type BackendKind, type CheckOutcome, type HealthSettings } from './hosts.ts'
import type { QueryOnceTarget } from '../auth/query-once.ts'

export interface HostSpec {
  host: string
  port: number
  kind: BackendKind
  /** How the backend check logs in (PostgreSQL); the database entry's own credentials. */
  login: QueryOnceTarget | null
  /** Patroni's REST API of this host (http://host:8008), a second role source. */
  patroniUrl: string | null
  /** An HTTP health endpoint that must answer 200 (CockroachDB: http://host:8080/health?ready=1). */
  healthUrl: string | null
  /** The host's region (host_regions), '' when none is given. */
  region: string
}

export interface MonitorSettings extends HealthSettings {
  intervalMs: number
  timeoutMs: number
}

export type HostCheck = (spec: HostSpec, timeoutMs: number) => Promise<CheckOutcome>
export type HostChange = { upChanged: boolean; roleChanged: boolean }

export class HostMonitor {
  private readonly hosts = new Map<string, Host>()
  private readonly specs = new Map<string, HostSpec>()
  private readonly inFlight = new Map<string, Promise<void>>()
  private timer: NodeJS.Timeout | null = null

  constructor(
    private settings: MonitorSettings,
    private readonly check: HostCheck,
    private readonly onChange: (h: Host, change: HostChange) => void,
  ) {}

  /** The hosts to watch, after start or RELOAD; known hosts keep their state. */
  setSpecs(specs: readonly HostSpec[], settings: MonitorSettings): void {
    this.settings = settings
    const now = Date.now()
    const keep = new Set<string>()
    for (const spec of specs) {
      const key = hostKey(spec.host, spec.port)
      keep.add(key)
      this.specs.set(key, spec)
      const known = this.hosts.get(key)
      const h = known === undefined || known.kind !== spec.kind ? new Host(spec.host, spec.port, spec.kind, now) : known
      h.region = spec.region
      this.hosts.set(key, h)
    }
    for (const key of [...this.hosts.keys()]) {
      if (!keep.has(key)) {
        this.hosts.delete(key)
        this.specs.delete(key)
      }
    }
    if (this.timer !== null) this.start()
  }

  get(host: string, port: number): Host | undefined {
    return this.hosts.get(hostKey(host, port))
  }

  all(): Host[] {
    return [...this.hosts.values()]
  }

  get size(): number {
    return this.hosts.size
  }

  start(): void {
    this.stop()
    if (this.hosts.size === 0) return
    this.timer = setInterval(() => void this.checkAll(), this.settings.intervalMs)
    this.timer.unref()
    void this.checkAll()
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  /** One round now (startup, switchover); resolves when every host has answered or timed out. */
  checkAll(): Promise<void> {
    return Promise.all([...this.hosts.keys()].map((key) => this.checkOne(key))).then(() => undefined)
  }

  private checkOne(key: string): Promise<void> {
    const running = this.inFlight.get(key)
    if (running !== undefined) return running
    const spec = this.specs.get(key)
    if (spec === undefined) return Promise.resolve()
    const p = this.check(spec, this.settings.timeoutMs).then((outcome) => {
      const h = this.hosts.get(key)
      if (h === undefined) return // removed by a RELOAD meanwhile
      const now = Date.now()
      const change = h.record(outcome, this.settings, now)
      // A ban ends by the clock, with no event of its own: the first check after it reports the
      // host usable again, so pools can move back to it (a host of the node's own region).
      if (h.bannedUntilMs !== 0 && h.bannedUntilMs <= now) {
        h.bannedUntilMs = 0
        if (h.isUp && !change.upChanged) change.upChanged = true
      }
      if (change.upChanged || change.roleChanged) this.onChange(h, change)
    }).finally(() => this.inFlight.delete(key))
    this.inFlight.set(key, p)
    return p
  }

  /** Passive check: a server connect or login to this host failed. */
  ban(host: string, port: number, reason: string): void {
    const h = this.get(host, port)
    if (h === undefined) return
    const wasUsable = h.isUsable(Date.now())
    h.ban(this.settings, reason, Date.now())
    if (wasUsable) this.onChange(h, { upChanged: true, roleChanged: false })
  }
}
