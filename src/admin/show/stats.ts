// SHOW STATS, STATS_TOTALS, STATS_AVERAGES and TOTALS: per database counters since start and
// averages of the last stats_period (microseconds, bytes), in PgBouncer's column names, which
// differ between the four views: PgBouncer's src/stats.c names each list by hand, and
// pgbouncer_exporter and dashboards read them by name. The lists are 1.25's plus
// client_login_count, added after 1.25.2 (pgbouncer commit 565e2092, doc/usage.md on master).

import type { StatsAverages } from '../../pool/stats.ts'
import type { ConsoleRequest } from '../request.ts'
import { columns, type ResultSet, type Row } from '../result-set.ts'

// One entry per counter, in PgBouncer's order: its name in SHOW STATS (after total_/avg_), in
// STATS_TOTALS, in STATS_AVERAGES, and in TOTALS (after total_/avg_: PgBouncer's struct fields).
const COUNTERS: ReadonlyArray<{ stats: [string, string]; totals: string; averages: string; sum: string; value: (t: StatsAverages) => number }> = [
  { stats: ['server_assignment_count', 'server_assignment_count'], totals: 'server_assignment_count', averages: 'server_assignment_count', sum: 'server_assignment_count', value: (t) => t.serverAssignments },
  { stats: ['xact_count', 'xact_count'], totals: 'xact_count', averages: 'xact_count', sum: 'xact_count', value: (t) => t.xacts },
  { stats: ['query_count', 'query_count'], totals: 'query_count', averages: 'query_count', sum: 'query_count', value: (t) => t.queries },
  { stats: ['received', 'recv'], totals: 'bytes_received', averages: 'bytes_received', sum: 'client_bytes', value: (t) => t.received },
  { stats: ['sent', 'sent'], totals: 'bytes_sent', averages: 'bytes_sent', sum: 'server_bytes', value: (t) => t.sent },
  { stats: ['xact_time', 'xact_time'], totals: 'xact_time', averages: 'xact_time', sum: 'xact_time', value: (t) => Math.round(t.xactTimeUs) },
  { stats: ['query_time', 'query_time'], totals: 'query_time', averages: 'query_time', sum: 'query_time', value: (t) => Math.round(t.queryTimeUs) },
  { stats: ['wait_time', 'wait_time'], totals: 'wait_time', averages: 'wait_time', sum: 'wait_time', value: (t) => Math.round(t.waitTimeUs) },
  // STATS_AVERAGES keeps the avg_ prefix on these, as PgBouncer does.
  { stats: ['client_parse_count', 'client_parse_count'], totals: 'client_parse_count', averages: 'avg_client_parse_count', sum: 'ps_client_parse_count', value: (t) => t.clientParses },
  { stats: ['server_parse_count', 'server_parse_count'], totals: 'server_parse_count', averages: 'avg_server_parse_count', sum: 'ps_server_parse_count', value: (t) => t.serverParses },
  { stats: ['bind_count', 'bind_count'], totals: 'bind_count', averages: 'avg_bind_count', sum: 'ps_bind_count', value: (t) => t.binds },
  { stats: ['client_login_count', 'client_login_count'], totals: 'client_login_count', averages: 'avg_client_login_count', sum: 'client_login_count', value: (t) => t.clientLogins },
]

export function showStats(req: ConsoleRequest, which: 'both' | 'totals' | 'averages'): ResultSet {
  const totalNames = COUNTERS.map((c) => (which === 'both' ? `total_${c.stats[0]}` : c.totals))
  const avgNames = COUNTERS.map((c) => (which === 'both' ? `avg_${c.stats[1]}` : c.averages))
  // SHOW STATS ends with 'total_requests', total_query_count's name before PgBouncer 1.8, which
  // Debian 12's prometheus-pgbouncer-exporter (1.7) still reads; appended, so positions stay 1.25's.
  const legacy = which === 'both' ? ['total_requests'] : []
  const names = ['database', ...(which !== 'averages' ? totalNames : []), ...(which !== 'totals' ? avgNames : []), ...legacy]
  const values = (t: StatsAverages): number[] => COUNTERS.map((c) => c.value(t))
  const rows = req.view.stats().map((r) => [r.database, ...(which !== 'averages' ? values(r.totals) : []), ...(which !== 'totals' ? values(r.averages) : []), ...(which === 'both' ? [r.totals.queries] : [])])
  return { columns: columns('s' + 'q'.repeat(names.length - 1), names), rows }
}

export function showTotals(req: ConsoleRequest): ResultSet {
  const sum: StatsAverages = { serverAssignments: 0, xacts: 0, queries: 0, received: 0, sent: 0, xactTimeUs: 0, queryTimeUs: 0, waitTimeUs: 0, clientParses: 0, serverParses: 0, binds: 0, clientLogins: 0 }
  const avg = { ...sum }
  for (const r of req.view.stats()) {
    for (const k of Object.keys(sum) as Array<keyof typeof sum>) {
      sum[k] += r.totals[k]
      avg[k] += r.averages[k]
    }
  }
  const rows: Row[] = [
    ...COUNTERS.map((c): Row => [`total_${c.sum}`, c.value(sum)]),
    ...COUNTERS.map((c): Row => [`avg_${c.sum}`, c.value(avg)]),
  ]
  return { columns: columns('sq', ['name', 'value']), rows }
}
