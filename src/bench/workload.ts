// The contract between a workload (flights, event-logs, train-events, custom) and the runner.
// A workload names its operations up front, so histograms are arrays indexed by operation; builds
// each connection's cycle once, reusing its query configs; and runs every statement through
// OpRunner, which times it and counts errors by SQLSTATE.

import type pg from 'pg'
import type { Rng } from './rng.ts'
import { SqlState } from '../protocol/pg-error.ts'

export interface ParamSpec {
  name: string
  default: number
  doc: string
  /** whole numbers only */
  integer?: boolean
  min?: number
  max?: number
  /** a size that `init` uses (the run reads the sizes back from the data) */
  size?: boolean
}

export type Params = Record<string, number>

export interface OpRunner {
  /** Runs operation `op` (an index into Workload.ops), recording its latency or its error. Never
   *  throws; false when the operation failed. */
  run(op: number, fn: () => Promise<unknown>): Promise<boolean>
}

export interface CycleContext {
  /** the connection; read it at each use, since the worker replaces a connection that broke */
  readonly client: pg.Client
  readonly rng: Rng
  readonly params: Params
  readonly op: OpRunner
  /** builds a query config, named (a prepared statement) when --prepare was given */
  query(id: string, text: string, values: unknown[]): pg.QueryArrayConfig
  /** the pause between the operations of one cycle, from the workload's own `delay` param */
  sleep(ms: number): Promise<void>
}

export interface Workload {
  readonly name: string
  readonly description: string
  readonly ops: readonly string[]
  readonly params: readonly ParamSpec[]
  /** Drops and creates the workload's tables and fills them. */
  init(client: pg.Client, params: Params): Promise<void>
  /** Checks that init's tables are there and returns the params with the sizes init used. */
  probe(client: pg.Client, params: Params): Promise<Params>
  /** One connection's cycle: called once per connection; the returned function runs one cycle. */
  cycle(ctx: CycleContext): () => Promise<void>
}

/** Runs fn inside BEGIN/COMMIT, rolling back when it fails. */
export async function inTransaction(ctx: CycleContext, fn: () => Promise<unknown>): Promise<void> {
  await ctx.client.query('BEGIN')
  try {
    await fn()
    await ctx.client.query('COMMIT')
  } catch (err) {
    await ctx.client.query('ROLLBACK').catch(() => {})
    throw err
  }
}

/** Runs a statement once per chunk of [1, total], for filling tables server-side in bounded steps. */
export async function fillInChunks(client: pg.Client, sql: string, total: number, extra: unknown[] = [], chunk = 50_000): Promise<void> {
  for (let lo = 1; lo <= total; lo += chunk) {
    await client.query(sql, [lo, Math.min(total, lo + chunk - 1), ...extra])
  }
}

/** The largest value of an indexed column (the sizes init used), or a clear error when init has not run. */
export async function maxOf(client: pg.Client, workload: string, table: string, column: string): Promise<number> {
  try {
    const r = await client.query<{ n: string | null }>(`SELECT max(${column}) AS n FROM ${table}`)
    const n = Number(r.rows[0].n ?? 0)
    if (n === 0) throw Object.assign(new Error(`table ${table} is empty: run \`tidepool bench init ${workload}\` first`), { code: 'BENCH_NOT_INITIALISED' })
    return n
  } catch (err) {
    if ((err as { code?: string }).code === SqlState.UndefinedTable) {
      throw Object.assign(new Error(`table ${table} is missing: run \`tidepool bench init ${workload}\` first`), { code: 'BENCH_NOT_INITIALISED' })
    }
    throw err
  }
}

export function weightsOf(params: Params, ops: readonly string[]): number[] {
  return ops.map((o) => params[o] ?? 0)
}
