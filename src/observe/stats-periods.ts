// SHOW STATS' two halves per database: totals since start (live pools plus those dropped as idle,
// so a total never goes backwards) and the averages of the last completed stats_period, which
// log_stats also writes to the log when the period closes.
// Must not: count anything itself (pools count on the hot path, pool/stats.ts); it only sums.

import type { Logger } from './log.ts'
import type { Pool } from '../pool/pool.ts'
import { PoolStats, averages, type StatsAverages } from '../pool/stats.ts'

export interface StatsRow {
  database: string
  totals: PoolStats
  averages: StatsAverages
}

export class StatsPeriods {
  /** Counters of pools that were dropped. */
  private readonly retired = new Map<string, PoolStats>()
  /** Totals at the start of the current period, and the averages of the last one. */
  private before = new Map<string, PoolStats>()
  private last = new Map<string, StatsAverages>()
  private timer: NodeJS.Timeout | null = null

  constructor(private readonly pools: () => Iterable<Pool>, private readonly log: Logger) {}

  /** A pool is dropped: its counters stay in its database's totals. */
  retire(pool: Pool): void {
    pool.stats.addTo(statsFor(this.retired, pool.database))
  }

  /** Totals per database: live pools plus dropped ones. */
  totals(): Map<string, PoolStats> {
    const m = new Map<string, PoolStats>()
    for (const [db, st] of this.retired) st.addTo(statsFor(m, db))
    for (const p of this.pools()) p.stats.addTo(statsFor(m, p.database))
    return m
  }

  /** Per database, sorted by name. */
  rows(): StatsRow[] {
    const zero = averages(new PoolStats(), new PoolStats(), 1)
    return [...this.totals()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([database, totals]) => ({ database, totals, averages: this.last.get(database) ?? zero }))
  }

  /** (Re)starts the period timer; `isLogged` is read when each period closes (log_stats is live). */
  start(periodSetting: number, isLogged: () => boolean): void {
    this.stop()
    const periodS = Math.max(1, periodSetting)
    this.timer = setInterval(() => this.closePeriod(periodS, isLogged()), periodS * 1000)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  private closePeriod(periodS: number, isLogged: boolean): void {
    const now = this.totals()
    const next = new Map<string, StatsAverages>()
    for (const [db, st] of now) next.set(db, averages(st, this.before.get(db) ?? new PoolStats(), periodS))
    this.last = next
    this.before = now
    if (!isLogged) return
    for (const [db, a] of next) {
      this.log.info('stats.period', null, `stats: ${db}: ${a.xacts} xacts/s, ${a.queries} queries/s, ${a.serverAssignments} server assignments/s, in ${a.received} B/s, out ${a.sent} B/s, xact ${a.xactTimeUs} us, query ${a.queryTimeUs} us, wait ${a.waitTimeUs} us`)
    }
  }
}

function statsFor(m: Map<string, PoolStats>, db: string): PoolStats {
  let s = m.get(db)
  if (s === undefined) {
    s = new PoolStats()
    m.set(db, s)
  }
  return s
}
