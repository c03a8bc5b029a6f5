// The runtime's view of backend hosts: which [databases] entries are watched, the monitor that
// checks their hosts, the choice of a host for each new server connection, and whether an open
// server still fits its entry after a host changed role or health. An entry is watched when it
// has several hosts, target_session_attrs, patroni_urls, health_urls or backend=cockroachdb;
// a plain single-host entry is left exactly as before (no checks, no bans).
// Must not: touch pools or connections (the runtime retargets them when told a host changed).

import type { Config, DatabaseEntry } from '../config/types.ts'
import type { Settings } from '../config/settings.ts'
import { candidates, pickHost, preferRegion, type Host, type NoHost, type TargetSessionAttrs } from './hosts.ts'
import { HostMonitor, type HostCheck, type HostChange, type HostSpec, type MonitorSettings } from './monitor.ts'
import type { QueryOnceTarget } from '../auth/query-once.ts'

export function isWatched(e: DatabaseEntry): boolean {
  return e.hosts.length > 1 || e.target_session_attrs !== null || e.patroni_urls.length > 0 || e.health_urls.length > 0 || e.backend === 'cockroachdb'
}

export function monitorSettings(s: Settings): MonitorSettings {
  return { intervalMs: s.health_check_interval_ms, timeoutMs: s.health_check_timeout_ms, rise: s.health_check_rise, fall: s.health_check_fall, banMs: s.host_ban_ms }
}

export class Backends {
  readonly monitor: HostMonitor
  private config: Config | null = null

  constructor(
    check: HostCheck,
    onChange: (h: Host, change: HostChange) => void,
    /** A SCRAM ClientKey learnt for a user, for checks that log in with a stored verifier. */
    private readonly scramClientKey: (user: string) => Buffer | null,
  ) {
    this.monitor = new HostMonitor({ intervalMs: 1000, timeoutMs: 2000, rise: 2, fall: 2, banMs: 5000 }, check, onChange)
  }

  /** At start and on every RELOAD: the hosts to watch and how to log in to check them. */
  apply(config: Config): void {
    this.config = config
    const specs = new Map<string, HostSpec>()
    // A host's region is the host's, whichever entry names it (the loader refuses entries that disagree).
    const regions = new Map<string, string>()
    for (const e of config.databases.values()) {
      e.host_regions.forEach((region, i) => regions.set(`${e.hosts[i]}\u0000${e.ports[i]}`, region))
    }
    for (const e of config.databases.values()) {
      if (!isWatched(e)) continue
      e.hosts.forEach((host, i) => {
        const port = e.ports[i]
        const key = `${host}\u0000${port}`
        if (specs.has(key)) return // entries on one cluster share its checks; the first one's login serves
        specs.set(key, {
          host, port, kind: e.backend ?? 'postgresql',
          login: this.checkLogin(config, e, host, port),
          patroniUrl: e.patroni_urls[i] ?? null,
          healthUrl: e.health_urls[i] ?? null,
          region: regions.get(key) ?? '',
        })
      })
    }
    this.monitor.setSpecs([...specs.values()], monitorSettings(config.settings))
    if (this.monitor.size > 0) this.monitor.start()
    else this.monitor.stop()
  }

  stop(): void {
    this.monitor.stop()
  }

  /** The watched hosts of an entry, in host= order. */
  hostsOf(e: DatabaseEntry): Host[] {
    const out: Host[] = []
    e.hosts.forEach((host, i) => {
      const h = this.monitor.get(host, e.ports[i])
      if (h !== undefined) out.push(h)
    })
    return out
  }

  /** Where the next server connection of a watched entry goes: the host's index in host=, or why nowhere. */
  pick(e: DatabaseEntry, turn: number, nowMs: number): { index: number; host: Host } | NoHost {
    const hosts = this.hostsOf(e)
    const region = this.regionOf(e)
    let h: Host | NoHost
    if (e.load_balance_hosts === 'disable') {
      // PgBouncer's meaning: the first fitting host in host= order, not a spread.
      const c = candidates(hosts, attrsOf(e), nowMs)
      h = typeof c === 'string' ? c : preferRegion(c, region)[0]
    } else {
      h = pickHost(hosts, attrsOf(e), nowMs, turn, region)
    }
    if (typeof h === 'string') return h
    return { index: e.hosts.findIndex((name, i) => name === h.host && e.ports[i] === h.port), host: h }
  }

  /** Whether a server on host:port may still serve a watched entry (false once the host lost the role). */
  fits(e: DatabaseEntry, host: string, port: number, nowMs: number): boolean {
    const h = this.monitor.get(host, port)
    if (h === undefined) return false
    const c = candidates(this.hostsOf(e), attrsOf(e), nowMs)
    return typeof c !== 'string' && c.includes(h)
  }

  /**
   * Whether a server on host:port is where a new one of the entry would go now: in the node's own
   * region, or anywhere fitting while no host of that region fits. False for a server that fits
   * but sits in another region once a home host is back: it should move home, though not in a rush.
   */
  isPreferred(e: DatabaseEntry, host: string, port: number, nowMs: number): boolean {
    const h = this.monitor.get(host, port)
    if (h === undefined) return false
    const c = candidates(this.hostsOf(e), attrsOf(e), nowMs)
    return typeof c !== 'string' && preferRegion(c, this.regionOf(e)).includes(h)
  }

  /** The region an entry's new server connections prefer: node_region, for entries that give host_regions. */
  regionOf(e: DatabaseEntry): string {
    return e.host_regions.length > 0 && this.config !== null ? this.config.settings.node_region : ''
  }

  /**
   * The check logs in as the entry's forced user, else as auth_user: a role can only be read
   * by someone who can log in. With neither, the check is a bare login attempt as "postgres"
   * would be guesswork, so it stays null and the config loader warns.
   */
  private checkLogin(config: Config, e: DatabaseEntry, host: string, port: number): QueryOnceTarget | null {
    const user = e.user ?? e.auth_user ?? (config.settings.auth_user !== '' ? config.settings.auth_user : null)
    if (user === null) return null
    const password = (user === e.user ? e.password : null) ?? config.userlist.get(user)?.password ?? null
    const database = e.dbname ?? (e.name === '*' ? 'postgres' : e.name)
    const authPolicy = { requireAuth: e.require_auth ?? config.settings.server_require_auth, maxIterations: config.settings.server_scram_max_iterations }
    return { host, port, database, user, password, keys: null, authPolicy }
  }

  /** Checks that need a SCRAM key learnt after start (a verifier in auth_file) get it at use. */
  withKeys(t: QueryOnceTarget): QueryOnceTarget {
    if (t.password === null || !t.password.startsWith('SCRAM-SHA-256$')) return t
    const clientKey = this.scramClientKey(t.user)
    if (clientKey === null) return t
    const serverKey = Buffer.from(t.password.split(':')[1] ?? '', 'base64')
    return { ...t, keys: { clientKey, serverKey } }
  }

  get isActive(): boolean {
    return this.config !== null && this.monitor.size > 0
  }
}

export function attrsOf(e: DatabaseEntry): TargetSessionAttrs {
  return e.target_session_attrs ?? 'any'
}
