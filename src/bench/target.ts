// Checks a target before anything runs against it: it answers, the password is right, the
// workload's tables are there (and how big init made them), and whether it is a pooler: a tidepool
// or PgBouncer answers SHOW VERSION in its admin database `pgbouncer`.

import pg from 'pg'
import { BenchError, describeError, redactUrl } from './errors.ts'
import type { Params, Workload } from './workload.ts'

export interface TargetSpec {
  name: string
  url: string
}

export interface ProbedTarget extends TargetSpec {
  server: string
  /** SHOW VERSION's answer, e.g. 'tidepool 0.1.0'; null when not a pooler */
  pooler: string | null
  consoleUrl: string | null
  /** the database name in the URL: the pool's name in the console */
  database: string
  params: Params
}

const CONNECT_TIMEOUT_MS = 10_000

/** A connected client, or a one-line BenchError naming `label` (e.g. "target direct"). */
export async function connectTo(label: string, url: string): Promise<pg.Client> {
  let client: pg.Client
  try {
    client = new pg.Client({ connectionString: url, application_name: 'tidepool-bench', connectionTimeoutMillis: CONNECT_TIMEOUT_MS })
  } catch (err) {
    throw new BenchError(`${label}: bad connection URL ${redactUrl(url)}: ${describeError(err)}`, 2)
  }
  client.on('error', () => {})
  try {
    await client.connect()
  } catch (err) {
    await client.end().catch(() => {})
    throw new BenchError(`${label} (${redactUrl(url)}): cannot connect: ${describeError(err)}`)
  }
  return client
}

export async function probeTarget(t: TargetSpec, workload: Workload, params: Params): Promise<ProbedTarget> {
  const client = await connectTo(`target ${t.name}`, t.url)
  let server: string
  let probed: Params
  let database: string
  try {
    server = (await client.query<{ v: string }>('SELECT version() AS v')).rows[0].v
    database = client.database ?? ''
    probed = await workload.probe(client, params)
  } catch (err) {
    throw new BenchError(`target ${t.name}: ${describeError(err)}`)
  } finally {
    await client.end().catch(() => {})
  }
  const consoleUrl = withDatabase(t.url, 'pgbouncer')
  const pooler = await poolerVersion(consoleUrl)
  return { ...t, server, pooler, consoleUrl: pooler === null ? null : consoleUrl, database, params: probed }
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url)
  u.pathname = `/${encodeURIComponent(database)}`
  return u.toString()
}

async function poolerVersion(consoleUrl: string): Promise<string | null> {
  const c = new pg.Client({ connectionString: consoleUrl, application_name: 'tidepool-bench-monitor', connectionTimeoutMillis: 5000 })
  c.on('error', () => {})
  try {
    await c.connect()
    const row = (await c.query('SHOW VERSION')).rows[0] as Record<string, unknown> | undefined
    const v = row === undefined ? '' : String(Object.values(row)[0] ?? '')
    return /tidepool|pgbouncer/i.test(v) ? v : null
  } catch {
    return null
  } finally {
    await c.end().catch(() => {})
  }
}
