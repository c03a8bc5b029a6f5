// Planned switchover of one cluster with no client error: hold new transactions of every pool on
// the cluster's hosts, let running ones finish (until half the time is spent; then they are
// cancelled), have Patroni promote the candidate (or wait for whoever promotes it), check until
// the new primary is known, and release the held transactions there. The deadline always
// releases: a switchover that cannot finish still ends, says why, and traffic goes on.
// Each phase is timed for the log, SHOW SWITCHOVER and /metrics.
// Must not: change the operator's PAUSE state (holding is separate), or touch sockets itself.

import type { Logger } from '../observe/log.ts'
import type { PoolControl } from '../pool/control.ts'
import type { DatabaseEntry } from '../config/types.ts'
import { isWatched, type Backends } from './backends.ts'
import type { Host } from './hosts.ts'
import { httpGetJson, httpRequest, withSlash } from './checks.ts'

export type PhaseName = 'hold' | 'drain' | 'promote' | 'retarget' | 'resume'

export interface PhaseReport {
  name: PhaseName
  ms: number
  note: string
}

export interface SwitchoverReport {
  database: string
  from: string | null
  to: string | null
  ok: boolean
  error: string | null
  startedAtMs: number
  totalMs: number
  phases: PhaseReport[]
  /** Transactions still running at the drain deadline, cancelled. */
  cancelled: number
}

export interface SwitchoverDeps {
  log: Logger
  backends: Backends
  /** The only way in to the pools: hold, drain and release them by host (pools of every database on the cluster's hosts). */
  pools: PoolControl
}

export interface SwitchoverRequest {
  database: string
  entry: DatabaseEntry
  /** host, host:port or Patroni member name of the new primary; null lets Patroni (or the operator) choose. */
  to: string | null
  timeoutMs: number
}

/**
 * SWITCHOVER db [TO host] [TIMEOUT s], from the console, HTTP or the CLI: one at a time per
 * process; the report of the last one per database stays for SHOW SWITCHOVER and /metrics.
 */
export class Switchovers {
  readonly last = new Map<string, SwitchoverReport>()
  readonly counts = new Map<string, { ok: number; failed: number }>()
  private running: string | null = null

  constructor(private readonly deps: SwitchoverDeps, private readonly entryOf: (database: string) => DatabaseEntry | undefined) {}

  async run(database: string, to: string | null, timeoutMs: number): Promise<SwitchoverReport> {
    return this.track(this.begin(database, to, timeoutMs), runSwitchover)
  }

  /**
   * A switchover of `database` made ready to run here, step by step (a fleet switchover drives
   * each node's through etcd); throws when the database cannot switch over or one is running.
   * Pass it to track() so it ends (and is recorded) whatever happens.
   */
  begin(database: string, to: string | null, timeoutMs: number, startedMs = Date.now()): SwitchoverRun {
    const run = this.plan(database, to, timeoutMs, startedMs)
    if (this.running !== null) throw new Error(`a switchover of ${this.running} is running`)
    this.running = database
    return run
  }

  /** A run that only checks and promotes (a fleet switchover's initiator): it holds nothing, so it runs beside this node's own. */
  plan(database: string, to: string | null, timeoutMs: number, startedMs = Date.now()): SwitchoverRun {
    const entry = this.entryOf(database)
    if (entry === undefined || !isWatched(entry) || entry.hosts.length < 2) {
      throw new Error(`database ${database} has no several hosts to switch over between`)
    }
    return new SwitchoverRun(this.deps, { database, entry, to, timeoutMs }, startedMs)
  }

  /** Runs `body` on a run from begin(), then records its report for SHOW SWITCHOVER and /metrics. */
  async track(run: SwitchoverRun, body: (run: SwitchoverRun) => Promise<SwitchoverReport>): Promise<SwitchoverReport> {
    try {
      const report = await body(run)
      this.last.set(report.database, report)
      const count = this.counts.get(report.database) ?? { ok: 0, failed: 0 }
      if (report.ok) count.ok++
      else count.failed++
      this.counts.set(report.database, count)
      return report
    } finally {
      this.running = null
    }
  }
}

const POLL_MS = 50
const MIN_LOOK_MS = 25

/** One switchover on this node, all of it: check, hold and drain, promote, retarget, release. */
export async function runSwitchover(run: SwitchoverRun): Promise<SwitchoverReport> {
  const why = await run.check(true)
  if (why !== null) return run.fail(why)
  try {
    await run.hold()
    await run.promote()
    await run.retarget(null)
  } catch (err) {
    run.report.error = (err as Error).message
  }
  return run.finish()
}

/**
 * The steps of one switchover on this node, each timed as a phase of its report. A fleet
 * switchover runs hold, retarget and finish on every node and promote on one (ha/fleet/commands.ts).
 */
export class SwitchoverRun {
  readonly report: SwitchoverReport
  readonly deadline: number
  private phaseStart: number
  private readonly hosts: Host[]
  private old: Host | null = null
  private target: Host | null = null
  private call: PatroniCall | null = null
  private isHolding = false

  constructor(private readonly d: SwitchoverDeps, private readonly r: SwitchoverRequest, started: number) {
    this.deadline = started + r.timeoutMs
    this.phaseStart = started
    this.hosts = d.backends.hostsOf(r.entry)
    this.report = { database: r.database, from: null, to: null, ok: false, error: null, startedAtMs: started, totalMs: 0, phases: [], cancelled: 0 }
  }

  get database(): string {
    return this.r.database
  }

  private phase(name: PhaseName, note: string): void {
    const now = Date.now()
    this.report.phases.push({ name, ms: now - this.phaseStart, note })
    this.d.log.info('switchover.phase', null, `switchover ${this.r.database}: ${name} took ${now - this.phaseStart} ms${note === '' ? '' : ` (${note})`}`)
    this.phaseStart = now
  }

  /**
   * Before anything is held: the current primary, and for the node that promotes (`isPromoter`)
   * the target and Patroni's call. Returns why the switchover cannot go on, or null.
   */
  async check(isPromoter: boolean): Promise<string | null> {
    const { r, hosts } = this
    const old = hosts.find((h) => h.role === 'primary' && h.isUsable(Date.now())) ?? null
    this.old = old
    this.report.from = old?.key ?? null
    if (!isPromoter) return null
    const target = r.to === null ? null : await findHost(hosts, r.to, r.entry, Math.max(1, this.deadline - Date.now()))
    if (r.to !== null && target === null) return `no host "${r.to}" in database ${r.database} (hosts: ${hosts.map((h) => h.key).join(', ')})`
    if (target !== null && target === old) return `${target.key} is already the primary`
    // Patroni checks its candidate itself (lag, state) and refuses a bad one; without it, the
    // target must at least be a standby that answers.
    const isPatroni = r.entry.patroni_urls.length > 0
    if (target !== null && (!target.isUsable(Date.now()) || target.role === 'primary' || (!isPatroni && target.role !== 'replica'))) {
      return `${target.key} is not a running standby (role ${target.role}, ${target.health(Date.now())})`
    }
    this.target = target
    if (isPatroni) {
      const c = await patroniCall(r, old, target, this.deadline)
      if (typeof c === 'string') return c
      this.call = c
    }
    return null
  }

  /**
   * Hold new transactions of the whole cluster (every entry on these hosts shares the primary, not
   * only this database), then drain: transactions in flight finish on the old primary until
   * `drainUntil` (half the time by default); those still running then are cancelled. Throws.
   */
  async hold(drainUntil = this.report.startedAtMs + this.r.timeoutMs / 2): Promise<void> {
    const keys = this.hosts.map((h) => h.key)
    this.isHolding = true
    const held = await this.d.pools.run({ op: 'hold', hosts: keys })
    if (!held.ok) throw new Error(held.error)
    this.phase('hold', `${held.pools} pool(s)`)
    const drained = await this.d.pools.run({ op: 'drain', hosts: keys, timeoutMs: drainUntil - Date.now(), reason: 'switchover: transaction still running at the drain deadline' })
    if (!drained.ok) throw new Error(drained.error)
    this.report.cancelled = drained.cancelled
    this.phase('drain', this.report.cancelled > 0 ? `${this.report.cancelled} transaction(s) still running were cancelled` : 'all finished')
  }

  /** Has the primary changed (through Patroni, or by someone else without it); the new primary's key if known yet. Throws. */
  async promote(): Promise<string | null> {
    const promoted = await promote(this.d, this.r, this.hosts, this.old, this.target, this.deadline, this.call)
    if (promoted !== null) throw new Error(promoted)
    this.phase('promote', this.r.entry.patroni_urls.length > 0 ? 'through Patroni' : 'waited for an outside promotion')
    const now = this.hosts.find((h) => h.role === 'primary' && h !== this.old && (this.target === null || h === this.target))
    return (this.target ?? now)?.key ?? null
  }

  /** A phase this node spent waiting for another to do its step (a fleet switchover's promote). */
  waited(name: PhaseName, note: string): void {
    this.phase(name, note)
  }

  /**
   * The new primary must be known (every source agreeing) before anything is released: `toKey`
   * (host:port) when another node promoted, else the promoted target or any primary but the old. Throws.
   */
  async retarget(toKey: string | null): Promise<void> {
    const target = toKey === null ? this.target : this.hosts.find((h) => h.key === toKey) ?? null
    if (toKey !== null && target === null) throw new Error(`the new primary ${toKey} is none of this node's hosts`)
    let picked: Host | null = null
    // The promotion's last look usually settles it already: no extra round before the release.
    for (let isFirst = true; Date.now() < this.deadline; isFirst = false) {
      if (!isFirst) await look(this.d, this.deadline)
      const p = this.d.backends.pick(this.r.entry, 0, Date.now())
      if (typeof p !== 'string' && p.host !== this.old && (target === null || p.host === target)) {
        picked = p.host
        break
      }
    }
    if (picked === null) throw new Error(`no new primary known within ${this.r.timeoutMs} ms`)
    this.report.to = picked.key
    this.phase('retarget', `new primary ${picked.key}`)
    this.report.ok = true
  }

  /** Ends before anything was held, saying why. */
  fail(why: string): Promise<SwitchoverReport> {
    this.report.error = why
    return this.finish()
  }

  /** Releases what is held (on success, error or the deadline alike) and logs the outcome. */
  async finish(): Promise<SwitchoverReport> {
    const { d, report } = this
    if (report.error !== null) report.ok = false
    if (this.isHolding) {
      this.isHolding = false
      const released = await d.pools.run({ op: 'release' })
      if (!released.ok) {
        report.ok = false
        report.error = `held pools were not released: ${released.error}`
      }
      report.phases.push({ name: 'resume', ms: Date.now() - this.phaseStart, note: report.ok ? '' : 'released at the deadline or on error' })
    }
    report.totalMs = Date.now() - report.startedAtMs
    if (report.ok) d.log.info('switchover.done', null, `switchover ${report.database}: ${report.from ?? '(none)'} -> ${report.to} in ${report.totalMs} ms`)
    else d.log.error('switchover.failed', null, `switchover ${report.database} failed after ${report.totalMs} ms: ${report.error}`)
    return report
  }
}

/** The POST /switchover for Patroni, made up before anything is held: names are looked up over HTTP. */
interface PatroniCall {
  url: string
  body: { leader: string; candidate?: string }
}

async function patroniCall(r: SwitchoverRequest, old: Host | null, target: Host | null, deadline: number): Promise<PatroniCall | string> {
  if (old === null) return 'no current primary known to switch over from'
  const leaderUrl = urlOf(r.entry, old)
  if (leaderUrl === null) return `no patroni_urls entry for ${old.key}`
  const leader = await memberName(leaderUrl, old, deadline)
  if (leader === null) return `Patroni at ${leaderUrl} did not say its member name`
  const body: PatroniCall['body'] = { leader }
  if (target !== null) {
    const u = urlOf(r.entry, target)
    const candidate = u === null ? null : await memberName(u, target, deadline)
    if (candidate === null) return `Patroni of ${target.key} did not say its member name`
    body.candidate = candidate
  }
  return { url: new URL('switchover', withSlash(leaderUrl)).href, body }
}

/**
 * With Patroni: ask the leader's API to switch over (Patroni demotes it and promotes the
 * candidate). Patroni answers only on its next whole second of polling, so the checks run
 * meanwhile: a candidate that every source calls primary ends the wait before the answer does.
 * Without Patroni: wait for someone else to promote, seen by the checks.
 * Returns null on success, or why not.
 */
async function promote(d: SwitchoverDeps, r: SwitchoverRequest, hosts: readonly Host[], old: Host | null, target: Host | null, deadline: number, call: PatroniCall | null): Promise<string | null> {
  let answer: string | null | undefined
  if (call !== null) {
    void httpRequest('POST', call.url, call.body, Math.max(1, deadline - Date.now())).then((res) => {
      if ('error' in res) answer = `Patroni switchover request failed: ${res.error}`
      else answer = res.status === 200 ? null : `Patroni refused the switchover: HTTP ${res.status} ${res.text.trim()}`
    })
  }
  while (Date.now() < deadline) {
    await look(d, deadline)
    if (answer !== undefined) return answer
    const primaries = hosts.filter((h) => h.role === 'primary' && h !== old)
    if (primaries.length > 0 && (target === null || primaries.includes(target))) return null
  }
  return call !== null
    ? `Patroni did not finish the switchover within ${r.timeoutMs} ms`
    : `no promotion seen within ${r.timeoutMs} ms (no patroni_urls: promote the standby yourself, e.g. with pg_ctl promote)`
}

async function findHost(hosts: readonly Host[], to: string, e: DatabaseEntry, timeoutMs: number): Promise<Host | null> {
  const direct = hosts.find((h) => h.key === to || h.host === to || `${h.host}:${h.port}` === to)
  if (direct !== undefined) return direct
  // A Patroni member name, as patronictl shows it.
  for (const h of hosts) {
    const u = urlOf(e, h)
    if (u !== null && (await memberName(u, h, Date.now() + timeoutMs)) === to) return h
  }
  return null
}

function urlOf(e: DatabaseEntry, h: Host): string | null {
  const i = e.hosts.findIndex((name, j) => name === h.host && e.ports[j] === h.port)
  return i < 0 ? null : (e.patroni_urls[i] ?? null)
}

/**
 * The member name Patroni knows this host by. GET /patroni says it under patroni.name from
 * Patroni 3.0.3 on; before that (Debian 12 ships 3.0.2) only GET /cluster lists names, with
 * each member's PostgreSQL address and REST URL, so the host is found there.
 */
async function memberName(baseUrl: string, h: Host, deadline: number): Promise<string | null> {
  const j = await httpGetJson(new URL('patroni', withSlash(baseUrl)).href, Math.max(1, deadline - Date.now()))
  const name = (j as { patroni?: { name?: unknown } } | null)?.patroni?.name
  if (typeof name === 'string') return name
  const c = await httpGetJson(new URL('cluster', withSlash(baseUrl)).href, Math.max(1, deadline - Date.now()))
  const members = (c as { members?: unknown } | null)?.members
  if (!Array.isArray(members)) return null
  const base = withSlash(baseUrl)
  const m = (members as Array<{ name?: unknown; host?: unknown; port?: unknown; api_url?: unknown }>).find((x) =>
    (x.host === h.host && x.port === h.port) || (typeof x.api_url === 'string' && x.api_url.startsWith(base)))
  return typeof m?.name === 'string' ? m.name : null
}

/**
 * One look at the cluster while traffic is held: a check of every host that has none running, and
 * at most POLL_MS of waiting for them. Waiting for the whole round would tie every look to the
 * slowest host: one that hangs on connect costs health_check_timeout_ms per look, past the
 * deadline too. Its check runs on, bounded by that timeout, while the others are asked again.
 * A short rest between looks keeps fast hosts from being asked hundreds of times a second.
 */
async function look(d: SwitchoverDeps, deadline: number): Promise<void> {
  const started = Date.now()
  const wait = Math.max(1, Math.min(POLL_MS, deadline - started))
  await Promise.race([d.backends.monitor.checkAll(), sleep(wait)])
  const rest = Math.min(MIN_LOOK_MS - (Date.now() - started), deadline - Date.now())
  if (rest > 0) await sleep(rest)
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref())
}
