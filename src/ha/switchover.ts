// Planned switchover of one cluster with no client error: hold new transactions of every pool on
// the cluster's hosts, let running ones finish (until half the time is spent; then they are
// cancelled), have Patroni promote the candidate (or wait for whoever promotes it), check until
// the new primary is known, and release the held transactions there. The deadline always
// releases: a switchover that cannot finish still ends, says why, and traffic goes on.
// Each phase is timed for the log, SHOW SWITCHOVER and /metrics.
// Must not: change the operator's PAUSE state (holding is separate), or touch sockets itself.

import type { Logger } from '../observe/log.ts'
import type { Pool } from '../pool/pool.ts'
import type { DatabaseEntry } from '../config/types.ts'
import type { Backends } from './backends.ts'
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
  /** Pools whose database entry uses any of these hosts: the whole cluster is held, not only `db`. */
  poolsOn(hosts: readonly Host[]): Pool[]
  /**
   * Hold new transactions of every pool on these hosts, pools created meanwhile included
   * (separate from PAUSE); null lets them all go again.
   */
  hold(hosts: readonly Host[] | null): void
  /** Close servers still in a transaction; returns how many. */
  cancelActive(pools: readonly Pool[]): number
}

export interface SwitchoverRequest {
  database: string
  entry: DatabaseEntry
  /** host, host:port or Patroni member name of the new primary; null lets Patroni (or the operator) choose. */
  to: string | null
  timeoutMs: number
}

const POLL_MS = 50

export async function runSwitchover(d: SwitchoverDeps, r: SwitchoverRequest): Promise<SwitchoverReport> {
  const started = Date.now()
  const deadline = started + r.timeoutMs
  const hosts = d.backends.hostsOf(r.entry)
  const report: SwitchoverReport = { database: r.database, from: null, to: null, ok: false, error: null, startedAtMs: started, totalMs: 0, phases: [], cancelled: 0 }
  let phaseStart = started
  const phase = (name: PhaseName, note: string) => {
    const now = Date.now()
    report.phases.push({ name, ms: now - phaseStart, note })
    d.log.info('switchover.phase', null, `switchover ${r.database}: ${name} took ${now - phaseStart} ms${note === '' ? '' : ` (${note})`}`)
    phaseStart = now
  }

  const old = hosts.find((h) => h.role === 'primary' && h.isUsable(Date.now())) ?? null
  report.from = old?.key ?? null
  const target = r.to === null ? null : await findHost(hosts, r.to, r.entry, Math.max(1, deadline - Date.now()))
  if (r.to !== null && target === null) {
    report.error = `no host "${r.to}" in database ${r.database} (hosts: ${hosts.map((h) => h.key).join(', ')})`
    return finish(d, report, started, false)
  }
  if (target !== null && target === old) {
    report.error = `${target.key} is already the primary`
    return finish(d, report, started, false)
  }
  // Patroni checks its candidate itself (lag, state) and refuses a bad one; without it, the
  // target must at least be a standby that answers.
  const isPatroni = r.entry.patroni_urls.length > 0
  if (target !== null && (!target.isUsable(Date.now()) || target.role === 'primary' || (!isPatroni && target.role !== 'replica'))) {
    report.error = `${target.key} is not a running standby (role ${target.role}, ${target.health(Date.now())})`
    return finish(d, report, started, false)
  }

  d.hold(hosts)
  const pools = d.poolsOn(hosts)
  phase('hold', `${pools.length} pool(s)`)
  try {
    // Drain: transactions in flight finish on the old primary; new ones wait.
    const drainUntil = started + r.timeoutMs / 2
    while (pools.some((p) => p.lists.busyServerCount > 0) && Date.now() < drainUntil) await sleep(POLL_MS)
    report.cancelled = d.cancelActive(pools)
    phase('drain', report.cancelled > 0 ? `${report.cancelled} transaction(s) still running were cancelled` : 'all finished')

    const promoted = await promote(d, r, hosts, old, target, deadline)
    if (promoted !== null) throw new Error(promoted)
    phase('promote', r.entry.patroni_urls.length > 0 ? 'through Patroni' : 'waited for an outside promotion')

    // Retarget: the new primary must be known (every source agreeing) before anything is released.
    let picked: Host | null = null
    while (Date.now() < deadline) {
      await d.backends.monitor.checkAll()
      const p = d.backends.pick(r.entry, 0, Date.now())
      if (typeof p !== 'string' && p.host !== old && (target === null || p.host === target)) {
        picked = p.host
        break
      }
      await sleep(POLL_MS)
    }
    if (picked === null) throw new Error(`no new primary known within ${r.timeoutMs} ms`)
    report.to = picked.key
    phase('retarget', `new primary ${picked.key}`)
    report.ok = true
  } catch (err) {
    report.error = (err as Error).message
  }
  return finish(d, report, phaseStart, true)
}

function finish(d: SwitchoverDeps, report: SwitchoverReport, phaseStart: number, isHolding: boolean): SwitchoverReport {
  if (isHolding) {
    d.hold(null)
    report.phases.push({ name: 'resume', ms: Date.now() - phaseStart, note: report.ok ? '' : 'released at the deadline or on error' })
  }
  report.totalMs = Date.now() - report.startedAtMs
  if (report.ok) d.log.info('switchover.done', null, `switchover ${report.database}: ${report.from ?? '(none)'} -> ${report.to} in ${report.totalMs} ms`)
  else d.log.error('switchover.failed', null, `switchover ${report.database} failed after ${report.totalMs} ms: ${report.error}`)
  return report
}

/**
 * With Patroni: ask the leader's API to switch over (Patroni demotes it and promotes the
 * candidate, then answers). Without: wait for someone else to promote, seen by the checks.
 * Returns null on success, or why not.
 */
async function promote(d: SwitchoverDeps, r: SwitchoverRequest, hosts: readonly Host[], old: Host | null, target: Host | null, deadline: number): Promise<string | null> {
  const urls = r.entry.patroni_urls
  if (urls.length === 0) {
    while (Date.now() < deadline) {
      await d.backends.monitor.checkAll()
      const primaries = hosts.filter((h) => h.role === 'primary' && h !== old)
      if (primaries.length > 0 && (target === null || primaries.includes(target))) return null
      await sleep(POLL_MS)
    }
    return `no promotion seen within ${r.timeoutMs} ms (no patroni_urls: promote the standby yourself, e.g. with pg_ctl promote)`
  }
  if (old === null) return 'no current primary known to switch over from'
  const leaderUrl = urlOf(r.entry, old)
  if (leaderUrl === null) return `no patroni_urls entry for ${old.key}`
  const leaderName = await memberName(leaderUrl, deadline)
  if (leaderName === null) return `Patroni at ${leaderUrl} did not say its member name`
  let candidateName: string | null = null
  if (target !== null) {
    const u = urlOf(r.entry, target)
    candidateName = u === null ? null : await memberName(u, deadline)
    if (candidateName === null) return `Patroni of ${target.key} did not say its member name`
  }
  const body: Record<string, string> = { leader: leaderName }
  if (candidateName !== null) body.candidate = candidateName
  const res = await httpRequest('POST', new URL('switchover', withSlash(leaderUrl)).href, body, Math.max(1, deadline - Date.now()))
  if ('error' in res) return `Patroni switchover request failed: ${res.error}`
  if (res.status !== 200) return `Patroni refused the switchover: HTTP ${res.status} ${res.text.trim()}`
  return null
}

async function findHost(hosts: readonly Host[], to: string, e: DatabaseEntry, timeoutMs: number): Promise<Host | null> {
  const direct = hosts.find((h) => h.key === to || h.host === to || `${h.host}:${h.port}` === to)
  if (direct !== undefined) return direct
  // A Patroni member name, as patronictl shows it.
  for (const h of hosts) {
    const u = urlOf(e, h)
    if (u !== null && (await memberName(u, Date.now() + timeoutMs)) === to) return h
  }
  return null
}

function urlOf(e: DatabaseEntry, h: Host): string | null {
  const i = e.hosts.findIndex((name, j) => name === h.host && e.ports[j] === h.port)
  return i < 0 ? null : (e.patroni_urls[i] ?? null)
}

/** Patroni's GET /patroni answers with the member's own name under patroni.name. */
async function memberName(baseUrl: string, deadline: number): Promise<string | null> {
  const j = await httpGetJson(new URL('patroni', withSlash(baseUrl)).href, Math.max(1, deadline - Date.now()))
  const name = (j as { patroni?: { name?: unknown } } | null)?.patroni?.name
  return typeof name === 'string' ? name : null
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref())
}
