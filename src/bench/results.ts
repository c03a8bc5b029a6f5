// The saved form of a run: results.json (everything, read back by `bench report`) and, per target,
// CSV files of the raw series: series-<target>.csv (one row per client interval) and
// db-<target>.csv (one row per database sample).

import fs from 'node:fs'
import { join } from 'node:path'
import { BenchError } from './errors.ts'
import type { LatencySummary } from './histogram.ts'
import type { Params } from './workload.ts'

export const RESULTS_FILE = 'results.json'
export const CYCLE = '__cycle__'

export interface OpSummary extends LatencySummary {
  id: string
  errors: number
  opsPerS: number
}

export type Column = Array<number | null>

export interface LatencySeries {
  count: Column
  mean: Column
  p50: Column
  p90: Column
  p95: Column
  p99: Column
  max: Column
}

export interface TargetResult {
  name: string
  /** the password replaced by *** */
  url: string
  /** SELECT version() through the target */
  server: string
  /** SHOW VERSION of the target's admin console when it is a pooler, else null */
  pooler: string | null
  startedAt: string
  elapsedS: number
  threads: number
  /** the workload's operations, then the cycle */
  ops: OpSummary[]
  connect: OpSummary
  errors: Record<string, number>
  /** client side, one entry per interval: t is its end in seconds since the start */
  client: { t: number[]; opsPerS: Column; errorsPerS: Column; latency: Record<string, LatencySeries> }
  /** database side, one entry per sample: t in seconds since the start (negative while connecting) */
  db: { t: number[]; columns: Record<string, Column> }
  notes: string[]
}

/** How a run drove every target; saved with the results. */
export interface RunSettings {
  workers: number
  connections: number
  durationS: number | null
  iterations: number | null
  prepare: boolean
  thinkTimeMs: number
  seed: number
  intervalMs: number
}

export interface BenchResults {
  format: 'tidepool-bench/1'
  createdAt: string
  workload: { name: string; file: string | null; params: Params }
  options: RunSettings
  machine: { cpus: number; node: string; platform: string }
  targets: TargetResult[]
}

export function saveResults(dir: string, r: BenchResults): void {
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(join(dir, RESULTS_FILE), JSON.stringify(r, null, 1) + '\n')
  writeCsv(dir, r)
}

export function writeCsv(dir: string, r: BenchResults): void {
  for (const t of r.targets) {
    fs.writeFileSync(join(dir, `series-${t.name}.csv`), clientCsv(t))
    fs.writeFileSync(join(dir, `db-${t.name}.csv`), toCsv(t.db.t, t.db.columns))
  }
}

export function loadResults(path: string): { results: BenchResults; dir: string } {
  const isDir = fs.existsSync(path) && fs.statSync(path).isDirectory()
  const file = isDir ? join(path, RESULTS_FILE) : path
  let r: BenchResults
  try {
    r = JSON.parse(fs.readFileSync(file, 'utf8')) as BenchResults
  } catch (err) {
    throw new BenchError(`cannot read ${file}: ${(err as Error).message}`, 2)
  }
  if (r?.format !== 'tidepool-bench/1' || !Array.isArray(r.targets)) throw new BenchError(`${file} is not a tidepool bench results file`, 2)
  return { results: r, dir: isDir ? path : join(file, '..') }
}

function clientCsv(t: TargetResult): string {
  const cols: Record<string, Column> = { ops_per_s: t.client.opsPerS, errors_per_s: t.client.errorsPerS }
  for (const [op, s] of Object.entries(t.client.latency)) {
    for (const [k, v] of Object.entries(s)) cols[`${op}_${k}${k === 'count' ? '' : '_ms'}`] = v
  }
  return toCsv(t.client.t, cols)
}

function toCsv(t: number[], cols: Record<string, Column>): string {
  const names = Object.keys(cols)
  const lines = [['t_s', ...names].join(',')]
  for (let i = 0; i < t.length; i++) lines.push([t[i], ...names.map((n) => cols[n][i] ?? '')].join(','))
  return lines.join('\n') + '\n'
}
