// The text form of results: per target, a table like dbworkload's (elapsed, id, threads, tot_ops,
// tot_ops/s, mean, p50, p90, p95, p99, max; latencies in ms), then one comparison table of the
// headline figures, client and database side, with each target's ratio to the first.

import { CYCLE, type BenchResults, type Column, type TargetResult } from './results.ts'

export interface Metric {
  label: string
  value: (t: TargetResult) => number | null
  /** lower is better (latency, sessions, CPU); shown in the report only */
  lowerIsBetter: boolean
}

const cycleOf = (t: TargetResult) => t.ops.find((o) => o.id === CYCLE)!

/** The mean (or max) of a database column over the samples taken while the workload ran. A rate
 *  counts only when its whole span was: the first one after the start also covers the connecting. */
export function during(t: TargetResult, name: string, how: 'mean' | 'max'): number | null {
  const col: Column | undefined = t.db.columns[name]
  if (col === undefined) return null
  const isRate = name.endsWith('_per_s') || name === 'cpu_pct'
  const ts = t.db.t
  const vals = col.filter((v, i): v is number => v !== null && ts[i] <= t.elapsedS && (isRate ? i > 0 && ts[i - 1] >= 0 : ts[i] >= 0))
  if (vals.length === 0) return null
  const v = how === 'max' ? Math.max(...vals) : vals.reduce((a, b) => a + b, 0) / vals.length
  return Math.round(v * 100) / 100
}

export function headlineMetrics(r: BenchResults): Metric[] {
  const m: Metric[] = [
    { label: 'cycles/s', value: (t) => cycleOf(t).opsPerS, lowerIsBetter: false },
    { label: 'operations/s', value: (t) => Math.round(t.ops.filter((o) => o.id !== CYCLE).reduce((a, o) => a + o.opsPerS, 0) * 100) / 100, lowerIsBetter: false },
    ...(['mean', 'p50', 'p90', 'p95', 'p99', 'max'] as const).map((k) => ({ label: `cycle ${k} (ms)`, value: (t: TargetResult) => cycleOf(t)[k], lowerIsBetter: true })),
    { label: 'errors', value: (t) => Object.values(t.errors).reduce((a, b) => a + b, 0), lowerIsBetter: true },
    { label: 'connect p50 (ms)', value: (t) => t.connect.p50, lowerIsBetter: true },
    { label: 'db sessions (mean)', value: (t) => during(t, 'sessions', 'mean'), lowerIsBetter: true },
    { label: 'db sessions (max)', value: (t) => during(t, 'sessions', 'max'), lowerIsBetter: true },
    { label: 'db active sessions (mean)', value: (t) => during(t, 'sessions_active', 'mean'), lowerIsBetter: true },
    { label: 'db commits/s', value: (t) => during(t, 'commits_per_s', 'mean'), lowerIsBetter: false },
    { label: 'db rollbacks/s', value: (t) => during(t, 'rollbacks_per_s', 'mean'), lowerIsBetter: true },
    { label: 'db connections/s', value: (t) => during(t, 'connections_per_s', 'mean'), lowerIsBetter: true },
    { label: 'db CPU % (mean)', value: (t) => during(t, 'cpu_pct', 'mean'), lowerIsBetter: true },
    { label: 'db memory MB (mean)', value: (t) => during(t, 'mem_mb', 'mean'), lowerIsBetter: true },
  ]
  if (r.targets.some((t) => t.db.columns.pool_cl_waiting !== undefined)) {
    m.push(
      { label: 'pool clients waiting (max)', value: (t) => during(t, 'pool_cl_waiting', 'max'), lowerIsBetter: true },
      { label: 'pool servers active (max)', value: (t) => during(t, 'pool_sv_active', 'max'), lowerIsBetter: true },
    )
  }
  return m
}

export function ratio(a: number | null, b: number | null): string {
  if (a === null || b === null) return '-'
  if (b === 0) return a === 0 ? '1.00x' : '-'
  return `${(a / b).toFixed(2)}x`
}

export function num(v: number | null, digits = 2): string {
  if (v === null) return '-'
  return Number.isInteger(v) && digits === 2 ? String(v) : v.toFixed(digits)
}

export function renderTable(header: string[], rows: string[][], leftColumns = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]) => cells.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd()
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}

export const CLIENT_HEADER = ['elapsed', 'id', 'threads', 'tot_ops', 'tot_ops/s', 'mean(ms)', 'p50(ms)', 'p90(ms)', 'p95(ms)', 'p99(ms)', 'max(ms)', 'errors']

export function clientRows(t: TargetResult): string[][] {
  return t.ops.map((o) => [
    String(Math.round(t.elapsedS)), o.id, String(t.threads), String(o.count), o.opsPerS.toFixed(2),
    o.mean.toFixed(2), o.p50.toFixed(2), o.p90.toFixed(2), o.p95.toFixed(2), o.p99.toFixed(2), o.max.toFixed(2), String(o.errors),
  ])
}

export function comparisonRows(r: BenchResults): { header: string[]; rows: string[][] } {
  const [base, ...others] = r.targets
  const header = ['metric', base.name, ...others.flatMap((t) => [t.name, `${t.name}/${base.name}`])]
  const rows = headlineMetrics(r).map((m) => {
    const b = m.value(base)
    return [m.label, num(b), ...others.flatMap((t) => [num(m.value(t)), ratio(m.value(t), b)])]
  })
  return { header, rows }
}

export function renderTables(r: BenchResults): string {
  const out: string[] = []
  const o = r.options
  const span = o.durationS !== null ? `${o.durationS} s` : `${o.iterations} iterations`
  out.push(`workload ${r.workload.name}: ${o.workers} workers x ${o.connections} connections, ${span}, seed ${o.seed}${o.prepare ? ', prepared statements' : ''}${o.thinkTimeMs > 0 ? `, think time ${o.thinkTimeMs} ms` : ''}`)
  for (const t of r.targets) {
    out.push('', `target ${t.name}: ${t.url}${t.pooler === null ? '' : ` (${t.pooler})`}`)
    out.push(renderTable(CLIENT_HEADER, clientRows(t), 2).replace(/^/gm, '  '))
    const codes = Object.entries(t.errors)
    if (codes.length > 0) out.push(`  errors by SQLSTATE: ${codes.map(([c, n]) => `${c} ${n}`).join(', ')}`)
    for (const n of t.notes) out.push(`  note: ${n}`)
  }
  if (r.targets.length > 1) {
    const { header, rows } = comparisonRows(r)
    out.push('', `comparison (ratios to ${r.targets[0].name}):`, renderTable(header, rows).replace(/^/gm, '  '))
  }
  return out.join('\n') + '\n'
}
