// A steady load of real clients for the HA tests and the drill: N node-postgres clients, each
// running short write transactions back to back, counting what failed and how long anyone waited.
// The measure an application feels is the *stall*: for each client, the longest time between two
// of its transactions that committed (so a failed attempt, a reconnect and a wait in the pooler all
// count), and the longest single attempt.
// A client whose connection broke reconnects before its next attempt; a failed connect counts as a
// failed transaction, as it would for an application, and the client backs off briefly.
// Must not: hide an error (every one is kept with its times), or keep a socket open after stop().

import pg from 'pg'
import { setTimeout as sleep } from 'node:timers/promises'
import { SUPERUSER } from './replication.ts'

export interface Failure {
  client: number
  startedMs: number
  endedMs: number
  error: string
}

export interface LoadStats {
  ok: number
  failed: number
  failures: Failure[]
  reconnects: number
  /** longest single attempt, committed or not (ms) */
  longestTxMs: number
  /** longest time a client went between two commits (ms) */
  longestStallMs: number
  /** when the longest stall ended, for the report */
  longestStallEndMs: number
  /** ports that served commits, with the time of the last one on each */
  servedBy: Map<number, { count: number; lastMs: number; firstMs: number }>
}

export interface LoadOptions {
  clients: number
  /** a fresh connected client (the target decides where: a pooler's port, or a primary it finds) */
  connect: (client: number) => Promise<pg.Client>
  /** the transaction; resolves with the port of the server that ran it */
  tx?: (c: pg.Client, client: number, seq: number) => Promise<number>
  /** after a failed attempt, before the next one */
  backoffMs?: number
  /** pause between transactions (0: back to back) */
  thinkMs?: number
}

export interface Load {
  stats: LoadStats
  /** resolves once every client has committed at least `n` more transactions than now */
  progress(n: number, timeoutMs: number): Promise<void>
  stop(): Promise<LoadStats>
}

/** The table the default transaction writes to; create it on the primary first. */
export const LOAD_TABLE_SQL = 'CREATE TABLE IF NOT EXISTS load_tx (client int, seq int, port int, at timestamptz DEFAULT now())'

async function defaultTx(c: pg.Client, client: number, seq: number): Promise<number> {
  await c.query('BEGIN')
  const r = await c.query('INSERT INTO load_tx (client, seq, port) VALUES ($1, $2, inet_server_port()) RETURNING port', [client, seq])
  await c.query('COMMIT')
  return r.rows[0].port as number
}

export function startLoad(o: LoadOptions): Load {
  const stats: LoadStats = { ok: 0, failed: 0, failures: [], reconnects: 0, longestTxMs: 0, longestStallMs: 0, longestStallEndMs: 0, servedBy: new Map() }
  const tx = o.tx ?? defaultTx
  const perClient = new Array<number>(o.clients).fill(0)
  const live = new Set<pg.Client>()
  let running = true

  const loop = async (i: number): Promise<void> => {
    let c: pg.Client | null = null
    // Per connection: an old one's late 'end' must not condemn its replacement.
    const broken = new WeakSet<pg.Client>()
    // From the first commit on: the connect at start is not a stall.
    let lastCommitMs: number | null = null
    let seq = 0
    while (running) {
      const started = Date.now()
      try {
        if (c === null || broken.has(c)) {
          if (c !== null) {
            live.delete(c)
            void c.end().catch(() => {})
            stats.reconnects++
          }
          c = null
          const fresh = await o.connect(i)
          fresh.on('error', () => broken.add(fresh))
          fresh.on('end', () => broken.add(fresh))
          c = fresh
          live.add(c)
          if (!running) break
        }
        const port = await tx(c, i, seq++)
        const now = Date.now()
        stats.ok++
        perClient[i]++
        const s = stats.servedBy.get(port) ?? { count: 0, lastMs: now, firstMs: now }
        s.count++
        s.lastMs = now
        stats.servedBy.set(port, s)
        stats.longestTxMs = Math.max(stats.longestTxMs, now - started)
        if (lastCommitMs !== null && now - lastCommitMs > stats.longestStallMs) {
          stats.longestStallMs = now - lastCommitMs
          stats.longestStallEndMs = now
        }
        lastCommitMs = now
        if (o.thinkMs) await sleep(o.thinkMs)
      } catch (err) {
        if (!running) break
        const now = Date.now()
        stats.failed++
        stats.failures.push({ client: i, startedMs: started, endedMs: now, error: (err as Error).message })
        stats.longestTxMs = Math.max(stats.longestTxMs, now - started)
        // An error inside a transaction leaves it aborted; a broken connection is replaced.
        const open = c
        if (open !== null && !broken.has(open)) await open.query('ROLLBACK').catch(() => broken.add(open))
        await sleep(o.backoffMs ?? 50)
      }
    }
    if (c !== null) {
      live.delete(c)
      await c.end().catch(() => {})
    }
  }

  const loops = Array.from({ length: o.clients }, (_, i) => loop(i))
  return {
    stats,
    async progress(n, timeoutMs) {
      const want = perClient.map((v) => v + n)
      const deadline = Date.now() + timeoutMs
      while (perClient.some((v, i) => v < want[i]!)) {
        if (Date.now() > deadline) throw new Error(`load made no progress within ${timeoutMs} ms: commits per client ${perClient.join(',')}, wanted ${want.join(',')}; ${stats.failed} failed, last: ${stats.failures.at(-1)?.error ?? 'none'}`)
        await sleep(20)
      }
    },
    async stop() {
      running = false
      // A client held in a pooler's queue would hold stop() up to its wait timeout: end it.
      const settled = Promise.all(loops)
      const timer = setTimeout(() => { for (const c of live) void c.end().catch(() => {}) }, 15_000)
      await settled
      clearTimeout(timer)
      return stats
    },
  }
}

/** A client logged in as the superuser of the test clusters; a failed login leaves no socket behind. */
export async function connectClient(port: number, database = 'app', host = '127.0.0.1'): Promise<pg.Client> {
  const c = new pg.Client({ host, port, database, user: SUPERUSER.user, password: SUPERUSER.password, connectionTimeoutMillis: 60_000 })
  c.on('error', () => {})
  try {
    await c.connect()
  } catch (err) {
    await c.end().catch(() => {})
    throw err
  }
  return c
}

/** One line for a test's diagnostics or the drill's table. */
export function describeLoad(s: LoadStats): string {
  const ports = [...s.servedBy.entries()].map(([p, v]) => `${p}:${v.count}`).join(' ')
  return `${s.ok} committed, ${s.failed} failed, ${s.reconnects} reconnects, longest stall ${s.longestStallMs} ms, longest attempt ${s.longestTxMs} ms, served by ${ports}` +
    (s.failures.length > 0 ? `; first failure: ${s.failures[0]!.error}` : '')
}
