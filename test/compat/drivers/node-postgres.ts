// Compatibility probe for node-postgres (pg) through tidepool in transaction mode. Settings from
// PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE (pg reads them itself); one JSON line per check.
// Run: node --import tsx test/compat/drivers/node-postgres.ts [check...]
// pg has no COPY API of its own (pg-copy-streams adds one, and is not a dependency here): COPY goes
// through a minimal Submittable, the extension point pg-copy-streams itself uses.
import pg from 'pg'
import { setTimeout as sleep } from 'node:timers/promises'
import { check, expect, stateOf } from './probe.ts'
import { createRequire } from 'node:module'

const T = 'compat_node_pg'
const pgVersion = (createRequire(import.meta.url)('pg/package.json') as { version: string }).version

async function connect(): Promise<pg.Client> {
  const c = new pg.Client({ connectionTimeoutMillis: 10_000 })
  c.on('error', () => { /* a broken connection shows up as the failing query's error */ })
  await c.connect()
  return c
}

async function withConn<R>(fn: (c: pg.Client) => Promise<R>): Promise<R> {
  const c = await connect()
  try {
    return await fn(c)
  } finally {
    await c.end().catch(() => {})
  }
}

/** COPY ... FROM STDIN with `data`, or COPY ... TO STDOUT collecting the data. */
class Copy {
  readonly out: Buffer[] = []
  private error: Error | null = null
  readonly done: Promise<void>
  private resolve!: () => void
  private reject!: (e: Error) => void

  constructor(readonly text: string, readonly data: Buffer | null) {
    this.done = new Promise((res, rej) => { this.resolve = res; this.reject = rej })
  }

  submit(connection: any): void {
    connection.query(this.text)
  }

  handleCopyInResponse(connection: any): void {
    connection.sendCopyFromChunk(this.data ?? Buffer.alloc(0))
    connection.endCopyFrom()
  }

  handleCopyData(msg: { chunk: Buffer }): void {
    this.out.push(msg.chunk)
  }

  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}

  handleError(err: Error): void {
    this.error = err
  }

  handleReadyForQuery(): void {
    if (this.error !== null) this.reject(this.error)
    else this.resolve()
  }
}

async function copy(c: pg.Client, text: string, data: Buffer | null): Promise<Buffer> {
  const cp = new Copy(text, data)
  void c.query(cp as any)
  await cp.done
  return Buffer.concat(cp.out)
}

await check('login', () => withConn(async (c) => {
  const r = await c.query('SELECT current_user AS u')
  return `pg ${pgVersion} (pure JavaScript), user ${r.rows[0].u}`
}))

await check('simple_query', () => withConn(async (c) => {
  expect((await c.query('SELECT 1 + 1 AS v')).rows[0].v === 2, '1 + 1')
  await c.query(`SET client_min_messages = warning; DROP TABLE IF EXISTS ${T}; CREATE TABLE ${T} (id int, v text)`)
}))

await check('parameters', () => withConn(async (c) => {
  const r = await c.query('SELECT $1::int + $2::int AS s, $3::text AS t, $4::text IS NULL AS n', [20, 22, "o'k", null])
  expect(r.rows[0].s === 42 && r.rows[0].t === "o'k" && r.rows[0].n === true, `got ${JSON.stringify(r.rows[0])}`)
}))

await check('transactions', () => withConn((a) => withConn(async (b) => {
  await a.query(`DELETE FROM ${T}`)
  await a.query('BEGIN')
  await a.query(`INSERT INTO ${T} VALUES (1, 'committed')`)
  expect((await b.query(`SELECT count(*)::int AS n FROM ${T}`)).rows[0].n === 0, 'uncommitted row visible to another connection')
  await a.query('COMMIT')
  await a.query('BEGIN')
  await a.query(`INSERT INTO ${T} VALUES (2, 'rolled back')`)
  await a.query('ROLLBACK')
  const ids = (await b.query(`SELECT id FROM ${T} ORDER BY id`)).rows.map((r) => r.id)
  expect(JSON.stringify(ids) === '[1]', `after commit and rollback saw ${JSON.stringify(ids)}`)
})))

await check('prepared_outside_tx', () => withConn(async (c) => {
  for (let i = 0; i < 8; i++) {
    const r = await c.query({ name: 'twice', text: 'SELECT $1::int * 2 AS v', values: [i] })
    expect(r.rows[0].v === i * 2, `round ${i}`)
  }
  return 'named queries ({ name, text, values })'
}))

await check('prepared_inside_tx', () => withConn(async (c) => {
  for (let round = 0; round < 3; round++) {
    await c.query('BEGIN')
    for (let i = 0; i < 6; i++) {
      const r = await c.query({ name: 'minus', text: 'SELECT $1::int - 1 AS v, $2::text AS t', values: [i, `r${round}`] })
      expect(r.rows[0].v === i - 1 && r.rows[0].t === `r${round}`, `round ${round}/${i}`)
    }
    await c.query(round === 1 ? 'ROLLBACK' : 'COMMIT')
  }
  // and after the transactions, where it was prepared
  expect((await c.query({ name: 'minus', text: 'SELECT $1::int - 1 AS v, $2::text AS t', values: [10, 'x'] })).rows[0].v === 9, 'after')
}))

await check('prepared_repeated', async () => {
  // Several connections use the same names for different text, concurrently and interleaved, so
  // each runs its statements on whichever server of the pool it gets; then fresh connections again.
  for (let run = 0; run < 3; run++) {
    const conns = await Promise.all(Array.from({ length: 4 }, () => connect()))
    try {
      for (let i = 0; i < 10; i++) {
        await Promise.all(conns.map(async (c, k) => {
          const r = await c.query({ name: 'rep', text: `SELECT $1::int * 10 + ${k} AS v`, values: [i] })
          expect(r.rows[0].v === i * 10 + k, `run ${run} conn ${k} round ${i}: ${r.rows[0].v}`)
          const l = await c.query({ name: 'len', text: 'SELECT length($1::text) AS v', values: ['x'.repeat(k)] })
          expect(l.rows[0].v === k, 'second statement')
        }))
      }
    } finally {
      await Promise.all(conns.map((c) => c.end().catch(() => {})))
    }
  }
})

await check('copy_in', () => withConn(async (c) => {
  await c.query(`DELETE FROM ${T}`)
  const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => `${i}\trow ${i}\n`).join(''))
  await copy(c, `COPY ${T} (id, v) FROM STDIN`, data)
  const r = await c.query(`SELECT count(*)::int AS n, sum(id)::int AS s FROM ${T}`)
  expect(r.rows[0].n === 1000 && r.rows[0].s === 499500, `got ${JSON.stringify(r.rows[0])}`)
  return 'through a minimal Submittable (no pg-copy-streams)'
}))

await check('copy_out', () => withConn(async (c) => {
  const lines = (await copy(c, `COPY (SELECT id, v FROM ${T} ORDER BY id) TO STDOUT`, null)).toString().split('\n').filter((l) => l !== '')
  expect(lines.length === 1000 && lines[999] === '999\trow 999', `${lines.length} lines`)
  expect((await c.query('SELECT 7 AS v')).rows[0].v === 7, 'query after COPY')
  return 'through a minimal Submittable (no pg-copy-streams)'
}))

await check('listen_notify', () => withConn((listener) => withConn(async (notifier) => {
  const got: string[] = []
  listener.on('notification', (n) => got.push(`${n.channel}:${n.payload}`))
  await listener.query('LISTEN compat_node_pg_ch')
  await notifier.query("NOTIFY compat_node_pg_ch, 'hello'")
  for (const until = Date.now() + 10_000; got.length === 0 && Date.now() < until;) await sleep(20)
  expect(JSON.stringify(got) === '["compat_node_pg_ch:hello"]', `received ${JSON.stringify(got)}`)
  await listener.query('UNLISTEN *')
})))

await check('cancel', () => withConn(async (c) => {
  const q = new pg.Query('SELECT pg_sleep(20)')
  const done = new Promise<string>((resolve) => {
    q.on('error', (err: Error & { code?: string }) => resolve(err.code ?? err.message))
    q.on('end', () => resolve('not cancelled'))
  })
  const t0 = Date.now()
  void c.query(q)
  await sleep(500)
  // pg's cancel: a second Client object sends the CancelRequest with the first one's key
  // (Client#cancel exists in pg 8 but @types/pg does not declare it)
  const canceller = new pg.Client() as unknown as { cancel(client: pg.Client, query: pg.Query): void }
  canceller.cancel(c, q)
  const code = await done
  const took = (Date.now() - t0) / 1000
  expect(code === '57014', `expected 57014, got ${code}`)
  expect(took < 10, `cancel took ${took} s`)
  expect((await c.query('SELECT 5 AS v')).rows[0].v === 5, 'query after cancel')
  return `cancelled after ${took.toFixed(2)} s (Client#cancel)`
}))

await check('error_recovery', () => withConn(async (c) => {
  await c.query('BEGIN')
  let s = await stateOf(c.query('SELECT 1/0'))
  expect(s === '22012', `expected 22012, got ${s}`)
  s = await stateOf(c.query('SELECT 1'))
  expect(s === '25P02', `expected 25P02, got ${s}`)
  await c.query('ROLLBACK')
  expect((await c.query('SELECT 3 AS v')).rows[0].v === 3, 'query after rollback')
}))

await check('streaming_200k', () => withConn(async (c) => {
  // `rows` makes pg read through a portal, 1000 rows per Execute, PortalSuspended in between
  const r = await c.query({ text: 'SELECT generate_series(1, 200000) AS v', rows: 1000 } as pg.QueryConfig)
  let sum = 0
  for (const row of r.rows) sum += row.v
  expect(r.rows.length === 200000 && sum === 200000 * 200001 / 2, `${r.rows.length} rows, sum ${sum}`)
  const all = await c.query({ text: 'SELECT generate_series(1, 200000)', rowMode: 'array' })
  expect(all.rows.length === 200000, `${all.rows.length} rows at once`)
  return 'portal with rows: 1000 (Execute/PortalSuspended), then the whole result at once'
}))

await check('concurrent_100', async () => {
  await withConn((c) => c.query(`DROP TABLE IF EXISTS ${T}_w; CREATE TABLE ${T}_w (worker int, seq int)`))
  const errs: string[] = []
  await Promise.all(Array.from({ length: 100 }, async (_, w) => {
    try {
      await withConn(async (c) => {
        for (let s = 0; s < 3; s++) {
          await c.query('BEGIN')
          await c.query(`INSERT INTO ${T}_w VALUES ($1, $2)`, [w, s])
          await c.query('SELECT pg_sleep(0.01)')
          await c.query('COMMIT')
        }
      })
    } catch (err) {
      errs.push(`worker ${w}: ${(err as Error).message}`)
    }
  }))
  expect(errs.length === 0, errs.slice(0, 3).join('; '))
  await withConn(async (c) => {
    const r = await c.query(`SELECT count(*)::int AS n, count(DISTINCT worker)::int AS w FROM ${T}_w`)
    await c.query(`DROP TABLE ${T}_w; DROP TABLE IF EXISTS ${T}`)
    expect(r.rows[0].n === 300 && r.rows[0].w === 100, `rows, workers: ${JSON.stringify(r.rows[0])}`)
  })
  return '100 async clients, one connection each, 3 transactions each'
})
