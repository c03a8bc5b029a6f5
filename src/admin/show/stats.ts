// SHOW STATS, STATS_TOTALS, STATS_AVERAGES and TOTALS: per database counters since start and
// averages of the last stats_period, in PgBouncer 1.24/1.25's columns (microseconds, bytes).

import type { StatsAverages } from '../../pool/stats.ts'
import type { ConsoleRequest } from '../request.ts'
import { columns, type ResultSet, type Row } from '../result-set.ts'

// STATS_TOTALS and STATS_AVERAGES are STATS's two halves without their prefixes; TOTALS is
// name/value rows summed over all databases.
const STAT_NAMES = ['server_assignment_count', 'xact_count', 'query_count', 'received', 'sent', 'xact_time', 'query_time', 'wait_time', 'client_parse_count', 'server_parse_count', 'bind_count'] as const
const AVG_NAMES = ['server_assignment_count', 'xact_count', 'query_count', 'recv', 'sent', 'xact_time', 'query_time', 'wait_time', 'client_parse_count', 'server_parse_count', 'bind_count'] as const

function statValues(t: StatsAverages): number[] {
  return [t.serverAssignments, t.xacts, t.queries, t.received, t.sent, Math.round(t.xactTimeUs), Math.round(t.queryTimeUs), Math.round(t.waitTimeUs), t.clientParses, t.serverParses, t.binds]
}

export function showStats(req: ConsoleRequest, which: 'both' | 'totals' | 'averages'): ResultSet {
  const totalNames = STAT_NAMES.map((n) => (which === 'both' ? `total_${n}` : n))
  const avgNames = AVG_NAMES.map((n) => (which === 'both' ? `avg_${n}` : n))
  // SHOW STATS ends with 'total_requests', total_query_count's name before PgBouncer 1.8, which
  // Debian 12's prometheus-pgbouncer-exporter (1.7) still reads; appended, so positions stay 1.25's.
  const legacy = which === 'both' ? ['total_requests'] : []
  const names = ['database', ...(which !== 'averages' ? totalNames : []), ...(which !== 'totals' ? avgNames : []), ...legacy]
  const rows = req.view.stats().map((r) => [r.database, ...(which !== 'averages' ? statValues(r.totals) : []), ...(which !== 'totals' ? statValues(r.averages) : []), ...(which === 'both' ? [r.totals.queries] : [])])
  return { columns: columns('s' + 'q'.repeat(names.length - 1), names), rows }
}

export function showTotals(req: ConsoleRequest): ResultSet {
  const sum: StatsAverages = { serverAssignments: 0, xacts: 0, queries: 0, received: 0, sent: 0, xactTimeUs: 0, queryTimeUs: 0, waitTimeUs: 0, clientParses: 0, serverParses: 0, binds: 0 }
  const avg = { ...sum }
  for (const r of req.view.stats()) {
    for (const k of Object.keys(sum) as Array<keyof typeof sum>) {
      sum[k] += r.totals[k]
      avg[k] += r.averages[k]
    }
  }
  const rows: Row[] = []
  statValues(sum).forEach((v, i) => rows.push([`total_${STAT_NAMES[i]}`, v]))
  statValues(avg).forEach((v, i) => rows.push([`avg_${AVG_NAMES[i]}`, v]))
  return { columns: columns('sq', ['name', 'value']), rows }
}
