// The database's side of a run, sampled about once a second on connections of its own (they are
// left out of the counts): sessions by state (pg_stat_activity), commits, rollbacks and sessions
// started (pg_stat_database; `sessions` exists from PostgreSQL 14), CPU and memory of the server's
// processes when it runs here (proc.ts), and a pooler's SHOW POOLS / SHOW STATS when the target is
// tidepool or PgBouncer. A metric the server cannot give (an older PostgreSQL, CockroachDB) is
// recorded as null with a note, never an error.

import pg from 'pg'
import { describeError } from './errors.ts'
import { postmasterOf, sampleTree } from './proc.ts'

export interface DbSample {
  /** epoch ms */
  at: number
  sessions: { total: number; active: number; idle: number; idleInTx: number; other: number } | null
  xactCommit: number | null
  xactRollback: number | null
  sessionsStarted: number | null
  cpuSeconds: number | null
  memBytes: number | null
  pool: PoolSample | null
}

export interface PoolSample {
  clActive: number
  clWaiting: number
  svActive: number
  svIdle: number
  svUsed: number
  maxwaitMs: number
  xactCount: number
  queryCount: number
  waitTimeUs: number
}

export interface SamplerOptions {
  /** the database server to watch; null: none */
  monitorUrl: string | null
  /** the pooler's admin console; null: not a pooler */
  consoleUrl: string | null
  /** the database name pools are counted under in the console */
  poolDatabase: string
  /** the postmaster pid (--pg-pid); null: found through the monitor connection when local */
  pgPid: number | null
  intervalMs: number
}

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]', ''])

export class Sampler {
  readonly samples: DbSample[] = []
  readonly notes: string[] = []
  private monitor: pg.Client | null = null
  private console: pg.Client | null = null
  private database = ''
  private pgPid: number | null = null
  private activitySql: string | null = 'SELECT coalesce(state, \'unknown\') AS state, count(*)::INT8 AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = \'client backend\' GROUP BY 1'
  private statSql: string | null = 'SELECT xact_commit, xact_rollback, sessions FROM pg_stat_database WHERE datname = $1'
  private stopped = false
  private wake: (() => void) | null = null
  private loopDone: Promise<void> = Promise.resolve()

  private constructor(private readonly opts: SamplerOptions) {}

  static async start(opts: SamplerOptions): Promise<Sampler> {
    const s = new Sampler(opts)
    await s.open()
    s.loopDone = s.loop()
    return s
  }

  private async open(): Promise<void> {
    const { monitorUrl, consoleUrl } = this.opts
    if (monitorUrl !== null) {
      this.monitor = await this.connect(monitorUrl, 'database side not sampled: the monitor connection failed')
      if (this.monitor !== null) {
        try {
          this.database = (await this.monitor.query<{ d: string }>('SELECT current_database() AS d')).rows[0].d
          this.pgPid = this.opts.pgPid ?? await this.findPostmaster(this.monitor, monitorUrl)
        } catch (err) {
          this.notes.push(`database side not sampled: ${describeError(err)}`)
          await this.monitor.end().catch(() => {})
          this.monitor = null
        }
      }
    } else {
      this.notes.push('database side not sampled: no --monitor, and every target is a pooler')
    }
    if (this.pgPid === null && this.monitor !== null) this.notes.push('CPU and memory not sampled: the database server does not run on this machine (or give --pg-pid)')
    if (consoleUrl !== null) this.console = await this.connect(consoleUrl, 'pool stats not sampled: the admin console refused us')
  }

  /** A connection of the sampler's own, or null with a note saying why not. */
  private async connect(url: string, why: string): Promise<pg.Client | null> {
    const c = new pg.Client({ connectionString: url, application_name: 'tidepool-bench-monitor', connectionTimeoutMillis: 10_000 })
    c.on('error', () => {})
    try {
      await c.connect()
      return c
    } catch (err) {
      this.notes.push(`${why}: ${describeError(err)}`)
      await c.end().catch(() => {})
      return null
    }
  }

  private async findPostmaster(c: pg.Client, url: string): Promise<number | null> {
    const host = new URL(url).hostname
    if (!LOCAL_HOSTS.has(host) && !host.startsWith('%2F')) return null
    const pid = Number((await c.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0].p)
    return postmasterOf(pid)
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const t0 = Date.now()
      await this.sampleOnce()
      const wait = this.opts.intervalMs - (Date.now() - t0)
      if (wait > 0 && !this.stopped) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait)
          this.wake = () => { clearTimeout(timer); resolve() }
        })
        this.wake = null
      }
    }
  }

  private async sampleOnce(): Promise<void> {
    const s: DbSample = { at: Date.now(), sessions: null, xactCommit: null, xactRollback: null, sessionsStarted: null, cpuSeconds: null, memBytes: null, pool: null }
    const [activity, stat, pool] = await Promise.all([this.activity(), this.stat(), this.pool()])
    s.sessions = activity
    if (stat !== null) Object.assign(s, stat)
    s.pool = pool
    if (this.pgPid !== null) {
      const p = sampleTree(this.pgPid)
      if (p !== null) {
        s.cpuSeconds = p.cpuSeconds
        s.memBytes = p.memBytes
      }
    }
    // A sample still being read when the end began may straddle the connections closing.
    if (!this.stopped) this.samples.push(s)
  }

  private async activity(): Promise<DbSample['sessions']> {
    if (this.monitor === null || this.activitySql === null) return null
    try {
      const r = await this.monitor.query<{ state: string; n: string }>(this.activitySql, [this.database])
      const out = { total: 0, active: 0, idle: 0, idleInTx: 0, other: 0 }
      for (const row of r.rows) {
        const n = Number(row.n)
        out.total += n
        if (row.state === 'active') out.active += n
        else if (row.state === 'idle') out.idle += n
        else if (row.state.startsWith('idle in transaction')) out.idleInTx += n
        else out.other += n
      }
      return out
    } catch (err) {
      // CockroachDB and PostgreSQL before 10 have no backend_type: count every session instead.
      this.activitySql = this.activitySql.includes('backend_type') ? this.activitySql.replace(" AND backend_type = 'client backend'", '') : null
      if (this.activitySql === null) this.notes.push(`sessions not sampled: ${describeError(err)}`)
      return this.activitySql === null ? null : this.activity()
    }
  }

  private async stat(): Promise<Pick<DbSample, 'xactCommit' | 'xactRollback' | 'sessionsStarted'> | null> {
    if (this.monitor === null || this.statSql === null) return null
    try {
      const r = await this.monitor.query<{ xact_commit: string; xact_rollback: string; sessions: string | null }>(this.statSql, [this.database])
      const row = r.rows[0]
      if (row === undefined) return null
      return { xactCommit: Number(row.xact_commit), xactRollback: Number(row.xact_rollback), sessionsStarted: row.sessions === null ? null : Number(row.sessions) }
    } catch (err) {
      if (this.statSql.includes(', sessions')) {
        this.statSql = this.statSql.replace(', sessions', ', NULL AS sessions')
        this.notes.push('connection rate not sampled: pg_stat_database has no sessions column (PostgreSQL 14+ has)')
        return this.stat()
      }
      this.statSql = null
      this.notes.push(`transactions not sampled: ${describeError(err)}`)
      return null
    }
  }

  private async pool(): Promise<PoolSample | null> {
    if (this.console === null) return null
    try {
      const pools = (await this.console.query('SHOW POOLS')).rows as Array<Record<string, string>>
      const stats = (await this.console.query('SHOW STATS')).rows as Array<Record<string, string>>
      const db = this.opts.poolDatabase
      const sum = (rows: Array<Record<string, string>>, col: string) => rows.filter((r) => r.database === db).reduce((a, r) => a + Number(r[col] ?? 0), 0)
      const mine = pools.filter((r) => r.database === db)
      return {
        clActive: sum(pools, 'cl_active'),
        clWaiting: sum(pools, 'cl_waiting'),
        svActive: sum(pools, 'sv_active'),
        svIdle: sum(pools, 'sv_idle'),
        svUsed: sum(pools, 'sv_used'),
        maxwaitMs: mine.reduce((a, r) => Math.max(a, Number(r.maxwait ?? 0) * 1000 + Number(r.maxwait_us ?? 0) / 1000), 0),
        xactCount: sum(stats, 'total_xact_count'),
        queryCount: sum(stats, 'total_query_count'),
        waitTimeUs: sum(stats, 'total_wait_time'),
      }
    } catch (err) {
      this.notes.push(`pool stats not sampled: ${describeError(err)}`)
      await this.console.end().catch(() => {})
      this.console = null
      return null
    }
  }

  /** Takes no sample after this call, and drops the one under way. */
  async stop(): Promise<void> {
    this.stopped = true
    this.wake?.()
    await this.loopDone
    await Promise.all([this.monitor?.end().catch(() => {}), this.console?.end().catch(() => {})])
  }
}
