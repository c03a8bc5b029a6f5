// What one worker shows of itself to the console, /metrics and /api (a WorkerSnapshot, plain data),
// and how the snapshots of every worker become one set of numbers: pools summed by (database,
// user), clients, servers and sockets listed together (their ids are unique over the workers),
// SHOW STATS totals summed and its averages recombined (rates add up, times weigh by their counts),
// a flag such as "paused" set when any worker has it.
// Must not: read a live connection or pool outside makeSnapshot (the rest is pure).

import type { ConsoleView, PeerPoolRow, SocketFacts } from '../admin/view.ts'
import type { ClientInfo, ServerInfo } from '../admin/view.ts'
import type { DashboardSnapshot, DashboardPool } from '../observe/dashboard.ts'
import type { ProcessFigures } from '../observe/metrics.ts'
import type { PoolCounts, PoolRow } from '../pool/control.ts'
import { PoolStats, addStats, type PoolStatsData, type StatsAverages } from '../pool/stats.ts'
import type { SwitchoverReport } from '../ha/switchover.ts'

export interface WorkerSnapshot {
  index: number
  pid: number
  atMs: number
  pools: PoolRow[]
  clients: ClientInfo[]
  servers: ServerInfo[]
  stats: Array<{ database: string; totals: PoolStatsData; averages: StatsAverages }>
  sockets: Array<[string, SocketFacts]>
  listeners: Array<{ fd: number; addr: string; port: number }>
  memory: { rss: number; heapTotal: number; heapUsed: number; external: number; arrayBuffers: number }
  cpuUs: number
  isPausedAll: boolean
  pausedDbs: string[]
  disabledDbs: string[]
  isSuspended: boolean
  isShuttingDown: boolean
  switchovers: SwitchoverReport[]
  peerPools: PeerPoolRow[]
  dashboard: DashboardSnapshot
}

/** This worker, now, through its own console view. */
export function makeSnapshot(index: number, view: ConsoleView, dashboard: DashboardSnapshot): WorkerSnapshot {
  const now = Date.now()
  const cfg = view.config()
  const names = [...cfg.databases.keys()]
  const cpu = process.cpuUsage()
  return {
    index,
    pid: process.pid,
    atMs: now,
    pools: view.pools(now),
    clients: [...view.clients()],
    servers: [...view.servers()],
    stats: view.stats(),
    sockets: [...view.sockets()],
    listeners: view.listenerSockets(),
    memory: view.memoryUsage(),
    cpuUs: cpu.user + cpu.system,
    isPausedAll: view.isPaused(null),
    pausedDbs: names.filter((n) => view.isPaused(n)),
    disabledDbs: names.filter((n) => view.isDisabled(n)),
    isSuspended: view.isSuspended,
    isShuttingDown: view.isShuttingDown,
    switchovers: view.switchovers(),
    peerPools: view.peerPools(),
    dashboard,
  }
}

/** Every worker's snapshot as one pooler's. */
export class Merged {
  readonly pools: PoolRow[]
  readonly clients: ClientInfo[]
  readonly servers: ServerInfo[]
  readonly stats: Array<{ database: string; totals: PoolStats; averages: StatsAverages }>
  readonly sockets: Map<string, SocketFacts>
  readonly listeners: Array<{ fd: number; addr: string; port: number }>
  readonly memory: WorkerSnapshot['memory']
  readonly process: ProcessFigures
  readonly isPausedAll: boolean
  readonly pausedDbs: ReadonlySet<string>
  readonly disabledDbs: ReadonlySet<string>
  readonly isSuspended: boolean
  readonly isShuttingDown: boolean
  readonly switchovers: SwitchoverReport[]
  readonly peerPools: PeerPoolRow[]

  constructor(readonly workers: readonly WorkerSnapshot[]) {
    this.pools = mergePools(workers.map((w) => w.pools))
    this.clients = workers.flatMap((w) => w.clients)
    this.servers = workers.flatMap((w) => w.servers)
    this.stats = mergeStats(workers)
    this.sockets = new Map(workers.flatMap((w) => w.sockets))
    this.listeners = workers.flatMap((w) => w.listeners)
    const mem = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 }
    for (const w of workers) for (const k of Object.keys(mem) as Array<keyof typeof mem>) mem[k] += w.memory[k]
    this.memory = mem
    this.process = { cpuUs: sum(workers.map((w) => w.cpuUs)), rss: mem.rss, heapUsed: mem.heapUsed }
    this.isPausedAll = workers.some((w) => w.isPausedAll)
    this.pausedDbs = new Set(workers.flatMap((w) => w.pausedDbs))
    this.disabledDbs = new Set(workers.flatMap((w) => w.disabledDbs))
    this.isSuspended = workers.some((w) => w.isSuspended)
    this.isShuttingDown = workers.some((w) => w.isShuttingDown)
    // A switchover runs in the worker whose console started it: the latest report per database.
    const last = new Map<string, SwitchoverReport>()
    for (const r of workers.flatMap((w) => w.switchovers)) {
      const seen = last.get(r.database)
      if (seen === undefined || seen.startedAtMs < r.startedAtMs) last.set(r.database, r)
    }
    this.switchovers = [...last.values()]
    this.peerPools = mergePeerPools(workers.map((w) => w.peerPools))
  }

  /** The dashboard's document over all workers; hosts and switchovers as `local` (this worker) has them. */
  dashboard(local: DashboardSnapshot): DashboardSnapshot {
    const pools = new Map<string, DashboardPool>()
    for (const w of this.workers) {
      for (const p of w.dashboard.pools) {
        const k = `${p.database}\u0000${p.user}`
        const into = pools.get(k)
        if (into === undefined) pools.set(k, { ...p, wait_hist: [...p.wait_hist] })
        else addDashboardPool(p, into)
      }
    }
    return {
      ...local,
      state: { ...local.state, paused: this.isPausedAll, suspended: this.isSuspended, shutting_down: this.isShuttingDown },
      clients: this.clients.length,
      pools: [...pools.values()].sort((a, b) => (a.database === b.database ? (a.user < b.user ? -1 : 1) : a.database < b.database ? -1 : 1)),
      databases: local.databases.map((d) => ({ ...d, paused: d.paused || this.isPausedAll || this.pausedDbs.has(d.name), disabled: this.disabledDbs.has(d.name) })),
      switchovers: this.switchovers,
    }
  }
}

/** Pools of the same (database, user) in several workers are one pool to the console. */
export function mergePools(lists: ReadonlyArray<readonly PoolRow[]>): PoolRow[] {
  const m = new Map<string, PoolRow>()
  for (const list of lists) {
    for (const p of list) {
      const k = `${p.database}\u0000${p.user}`
      const into = m.get(k)
      if (into === undefined) {
        m.set(k, { ...p, counts: { ...p.counts } })
        continue
      }
      into.paused ||= p.paused
      into.databaseServers += p.databaseServers
      into.userServers += p.userServers
      addCounts(p.counts, into.counts)
    }
  }
  return [...m.values()]
}

/**
 * SHOW STATS per database: totals add up; of the averages, rates add up and per-event times are
 * weighed by each worker's count of those events in the same period.
 */
export function mergeStats(workers: ReadonlyArray<Pick<WorkerSnapshot, 'stats'>>): Array<{ database: string; totals: PoolStats; averages: StatsAverages }> {
  const m = new Map<string, { totals: PoolStats; averages: StatsAverages; weights: { xact: number; query: number; wait: number } }>()
  for (const w of workers) {
    for (const r of w.stats) {
      let e = m.get(r.database)
      if (e === undefined) {
        e = { totals: new PoolStats(), averages: zeroAverages(), weights: { xact: 0, query: 0, wait: 0 } }
        m.set(r.database, e)
      }
      addStats(r.totals, e.totals)
      const a = e.averages
      const b = r.averages
      a.serverAssignments += b.serverAssignments
      a.xacts += b.xacts
      a.queries += b.queries
      a.received += b.received
      a.sent += b.sent
      a.clientParses += b.clientParses
      a.serverParses += b.serverParses
      a.binds += b.binds
      a.clientLogins += b.clientLogins
      a.xactTimeUs += b.xactTimeUs * b.xacts
      a.queryTimeUs += b.queryTimeUs * b.queries
      a.waitTimeUs += b.waitTimeUs * b.serverAssignments
      e.weights.xact += b.xacts
      e.weights.query += b.queries
      e.weights.wait += b.serverAssignments
    }
  }
  return [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([database, e]) => {
    const a = e.averages
    a.xactTimeUs = e.weights.xact > 0 ? Math.round(a.xactTimeUs / e.weights.xact) : 0
    a.queryTimeUs = e.weights.query > 0 ? Math.round(a.queryTimeUs / e.weights.query) : 0
    a.waitTimeUs = e.weights.wait > 0 ? Math.round(a.waitTimeUs / e.weights.wait) : 0
    return { database, totals: e.totals, averages: a }
  })
}

/** Peer pools of the same peer in several workers: every count adds up. */
export function mergePeerPools(lists: ReadonlyArray<readonly PeerPoolRow[]>): PeerPoolRow[] {
  const m = new Map<number, PeerPoolRow>()
  for (const list of lists) {
    for (const p of list) {
      const into = m.get(p.peer_id)
      if (into === undefined) {
        m.set(p.peer_id, { ...p })
        continue
      }
      into.cl_active_cancel_req += p.cl_active_cancel_req
      into.cl_waiting_cancel_req += p.cl_waiting_cancel_req
      into.sv_active_cancel += p.sv_active_cancel
      into.sv_login += p.sv_login
    }
  }
  return [...m.values()].sort((a, b) => a.peer_id - b.peer_id)
}

/** Counts of one pool in two workers: every count adds up, the longest wait is the longer one. */
function addCounts<T extends PoolCounts>(from: T, into: T): void {
  for (const k of Object.keys(from) as Array<keyof T>) {
    const v = from[k]
    if (typeof v !== 'number') continue
    const cur = into[k] as number
    ;(into[k] as number) = k === 'maxwait_ms' ? Math.max(cur, v) : cur + v
  }
}

function addDashboardPool(p: DashboardPool, into: DashboardPool): void {
  into.paused ||= p.paused
  addCounts(p, into)
  p.wait_hist.forEach((n, i) => { into.wait_hist[i] = (into.wait_hist[i] ?? 0) + n })
}

function zeroAverages(): StatsAverages {
  return { serverAssignments: 0, xacts: 0, queries: 0, received: 0, sent: 0, xactTimeUs: 0, queryTimeUs: 0, waitTimeUs: 0, clientParses: 0, serverParses: 0, binds: 0, clientLogins: 0 }
}

function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0)
}
