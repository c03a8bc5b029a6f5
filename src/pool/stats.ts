// Traffic counters, PgBouncer's SHOW STATS semantics: totals since start, and averages over the
// last completed stats_period. Counted per pool on the hot path (integer adds, and one clock read
// per query boundary); summed per database when someone asks.
//   xacts     — ReadyForQuery('I') after work: one per transaction (an autocommit query is one)
//   queries   — ReadyForQuery messages: one per Query, Sync or FunctionCall answered
//   times     — microseconds; xact time runs from the first query to ReadyForQuery('I')
//   parses, binds — with max_prepared_statements > 0 (as PgBouncer counts them only then): Parse
//               messages from clients, Parse messages sent to servers (a client's, or one tidepool
//               puts ahead of a Bind/Describe), and Bind messages of named statements
//   clientLogins — clients that logged in and joined the pool (PgBouncer's client_login_count):
//               churn that the count of open clients does not show
// Must not: allocate per message or read the wall clock more than once per query boundary.

/** Histogram bucket bounds in seconds (Prometheus' `le`), shared by the three latency histograms. */
export const LATENCY_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const
const BUCKETS_US = LATENCY_BUCKETS_S.map((b) => b * 1e6)

/** Counts per bucket (not cumulative; the last slot is +Inf) plus the sum, for one duration. */
export class Histogram {
  readonly counts = new Float64Array(LATENCY_BUCKETS_S.length + 1)
  sumUs = 0

  observe(us: number): void {
    let i = 0
    while (i < BUCKETS_US.length && us > BUCKETS_US[i]) i++
    this.counts[i]++
    this.sumUs += us
  }

  addTo(into: Histogram): void {
    addHistogram(this, into)
  }
}

/** A histogram's data: a Histogram, or its structured clone from a worker (no methods). */
export type HistogramData = Pick<Histogram, 'counts' | 'sumUs'>

function addHistogram(from: HistogramData, into: Histogram): void {
  for (let i = 0; i < from.counts.length; i++) into.counts[i] += from.counts[i]
  into.sumUs += from.sumUs
}

export class PoolStats {
  readonly waitHist = new Histogram()
  readonly queryHist = new Histogram()
  readonly xactHist = new Histogram()
  serverAssignments = 0
  xacts = 0
  queries = 0
  received = 0
  sent = 0
  xactTimeUs = 0
  queryTimeUs = 0
  waitTimeUs = 0
  clientParses = 0
  serverParses = 0
  binds = 0
  clientLogins = 0
  /** ErrorResponses by SQLSTATE: from servers, and sent by tidepool itself. Created on first error. */
  serverErrors: Map<string, number> | null = null
  poolerErrors: Map<string, number> | null = null

  countError(from: 'server' | 'pooler', sqlstate: string): void {
    const key = from === 'server' ? 'serverErrors' : 'poolerErrors'
    const m = (this[key] ??= new Map())
    m.set(sqlstate, (m.get(sqlstate) ?? 0) + 1)
  }

  addTo(into: PoolStats): void {
    addStats(this, into)
  }
}

/** A PoolStats' data: a PoolStats, or its structured clone from a worker (no methods). */
export type PoolStatsData = Omit<PoolStats, 'countError' | 'addTo' | 'waitHist' | 'queryHist' | 'xactHist'> & {
  readonly waitHist: HistogramData
  readonly queryHist: HistogramData
  readonly xactHist: HistogramData
}

/** Adds every counter of `from` to `into` (SHOW STATS totals; with workers, every worker's). */
export function addStats(from: PoolStatsData, into: PoolStats): void {
  addHistogram(from.waitHist, into.waitHist)
  addHistogram(from.queryHist, into.queryHist)
  addHistogram(from.xactHist, into.xactHist)
  for (const key of ['serverErrors', 'poolerErrors'] as const) {
    const m = from[key]
    if (m === null) continue
    const dest = (into[key] ??= new Map())
    for (const [code, n] of m) dest.set(code, (dest.get(code) ?? 0) + n)
  }
  into.serverAssignments += from.serverAssignments
  into.xacts += from.xacts
  into.queries += from.queries
  into.received += from.received
  into.sent += from.sent
  into.xactTimeUs += from.xactTimeUs
  into.queryTimeUs += from.queryTimeUs
  into.waitTimeUs += from.waitTimeUs
  into.clientParses += from.clientParses
  into.serverParses += from.serverParses
  into.binds += from.binds
  into.clientLogins += from.clientLogins
}

/** Per-second rates and per-event durations over one stats_period, as PgBouncer computes them. */
export interface StatsAverages {
  serverAssignments: number
  xacts: number
  queries: number
  received: number
  sent: number
  xactTimeUs: number
  queryTimeUs: number
  waitTimeUs: number
  clientParses: number
  serverParses: number
  binds: number
  clientLogins: number
}

export function averages(now: PoolStats, before: PoolStats, periodS: number): StatsAverages {
  const d = (k: keyof PoolStats) => (now[k] as number) - (before[k] as number)
  const xacts = d('xacts')
  const queries = d('queries')
  const assignments = d('serverAssignments')
  return {
    serverAssignments: Math.round(assignments / periodS),
    xacts: Math.round(xacts / periodS),
    queries: Math.round(queries / periodS),
    received: Math.round(d('received') / periodS),
    sent: Math.round(d('sent') / periodS),
    xactTimeUs: xacts > 0 ? Math.round(d('xactTimeUs') / xacts) : 0,
    queryTimeUs: queries > 0 ? Math.round(d('queryTimeUs') / queries) : 0,
    waitTimeUs: assignments > 0 ? Math.round(d('waitTimeUs') / assignments) : 0,
    clientParses: Math.round(d('clientParses') / periodS),
    serverParses: Math.round(d('serverParses') / periodS),
    binds: Math.round(d('binds') / periodS),
    clientLogins: Math.round(d('clientLogins') / periodS),
  }
}

/** Microseconds on a monotonic clock. */
export function nowUs(): number {
  return performance.now() * 1000
}
