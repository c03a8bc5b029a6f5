// Compatibility probe for postgres.js through tidepool in transaction mode, with `prepare` from
// PREPARE=true|false (default true: every query with parameters is a named server-side statement).
// Settings from PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE; one JSON line per check.
// Run: PREPARE=false node --import tsx test/compat/drivers/postgres-js.ts [check...]
import postgres from 'postgres'
import { setTimeout as sleep } from 'node:timers/promises'
import { check, expect, stateOf } from './probe.ts'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

const prepare = process.env.PREPARE !== 'false'
const T = `compat_pgjs_${prepare ? 'p' : 'u'}`

/** A pool of `max` connections (postgres.js reads PG* itself); ended after fn. */
async function withSql<R>(max: number, fn: (sql: postgres.Sql) => Promise<R>): Promise<R> {
  const sql = postgres({ prepare, max, connect_timeout: 10, onnotice: () => {} })
  try {
    return await fn(sql)
  } finally {
    await sql.end({ timeout: 5 })
  }
}

await check('login', () => withSql(1, async (sql) => {
  const [r] = await sql`SELECT current_user AS u`
  return `postgres.js, prepare: ${prepare}, user ${r.u}`
}))

await check('simple_query', () => withSql(1, async (sql) => {
  const [r] = await sql`SELECT 1 + 1 AS v`
  expect(r.v === 2, '1 + 1')
  await sql.unsafe(`DROP TABLE IF EXISTS ${T}; CREATE TABLE ${T} (id int, v text)`)
}))

await check('parameters', () => withSql(1, async (sql) => {
  const [r] = await sql`SELECT ${20}::int + ${22}::int AS s, ${"o'k"}::text AS t, ${null}::text IS NULL AS n`
  expect(r.s === 42 && r.t === "o'k" && r.n === true, `got ${JSON.stringify(r)}`)
}))

await check('transactions', () => withSql(2, async (sql) => {
  await sql`DELETE FROM ${sql(T)}`
  await sql.begin(async (tx) => {
    await tx`INSERT INTO ${sql(T)} VALUES (1, 'committed')`
    const [r] = await sql`SELECT count(*)::int AS n FROM ${sql(T)}`
    expect(r.n === 0, 'uncommitted row visible to another connection')
  })
  await sql.begin(async (tx) => {
    await tx`INSERT INTO ${sql(T)} VALUES (2, 'rolled back')`
    throw new Error('roll back')
  }).catch((err: Error) => { if (err.message !== 'roll back') throw err })
  const ids = (await sql`SELECT id FROM ${sql(T)} ORDER BY id`).map((r) => r.id)
  expect(JSON.stringify(ids) === '[1]', `after commit and rollback saw ${JSON.stringify(ids)}`)
}))

await check('prepared_outside_tx', () => withSql(3, async (sql) => {
  // three connections in postgres.js's pool, each with its own statement names
  for (let round = 0; round < 4; round++) {
    const rows = await Promise.all(Array.from({ length: 20 }, (_, i) => sql`SELECT ${i}::int * 2 AS v, ${'x' + i}::text AS s`))
    rows.forEach((r, i) => expect(r[0].v === i * 2 && r[0].s === 'x' + i, `round ${round} query ${i}`))
  }
}))

await check('prepared_inside_tx', () => withSql(2, async (sql) => {
  for (let round = 0; round < 3; round++) {
    await sql.begin(async (tx) => {
      for (let i = 0; i < 6; i++) {
        const [r] = await tx`SELECT ${i}::int - 1 AS v, ${'r' + round}::text AS t`
        expect(r.v === i - 1 && r.t === 'r' + round, `round ${round}/${i}`)
      }
      if (round === 1) throw new Error('roll back')
    }).catch((err: Error) => { if (err.message !== 'roll back') throw err })
  }
  const [r] = await sql`SELECT ${10}::int - 1 AS v, ${'x'}::text AS t`
  expect(r.v === 9, 'after the transactions')
}))

await check('prepared_repeated', async () => {
  // New pools (new connections, whose statement names collide with the last ones') several times.
  for (let run = 0; run < 3; run++) {
    await withSql(4, async (sql) => {
      for (let i = 0; i < 10; i++) {
        const rs = await Promise.all(Array.from({ length: 8 }, (_, k) => sql`SELECT ${i}::int * 10 + ${k}::int AS v`))
        rs.forEach((r, k) => expect(r[0].v === i * 10 + k, `run ${run} round ${i} query ${k}: ${r[0].v}`))
        const ls = await Promise.all(Array.from({ length: 4 }, (_, k) => sql`SELECT length(${'x'.repeat(k)}::text) AS v`))
        ls.forEach((r, k) => expect(r[0].v === k, 'second statement'))
      }
    })
  }
})

await check('copy_in', () => withSql(1, async (sql) => {
  await sql`DELETE FROM ${sql(T)}`
  const data = Array.from({ length: 1000 }, (_, i) => `${i}\trow ${i}\n`)
  const w = await sql`COPY ${sql(T)} (id, v) FROM STDIN`.writable()
  await pipeline(Readable.from(data), w)
  const [r] = await sql`SELECT count(*)::int AS n, sum(id)::int AS s FROM ${sql(T)}`
  expect(r.n === 1000 && r.s === 499500, `got ${JSON.stringify(r)}`)
}))

await check('copy_out', () => withSql(1, async (sql) => {
  const chunks: Buffer[] = []
  const r = await sql`COPY (SELECT id, v FROM ${sql(T)} ORDER BY id) TO STDOUT`.readable()
  await pipeline(r, new Writable({ write(chunk: Buffer, _enc, cb) { chunks.push(chunk); cb() } }))
  const lines = Buffer.concat(chunks).toString().split('\n').filter((l) => l !== '')
  expect(lines.length === 1000 && lines[999] === '999\trow 999', `${lines.length} lines`)
  const [x] = await sql`SELECT 7 AS v`
  expect(x.v === 7, 'query after COPY')
}))

await check('listen_notify', () => withSql(2, async (sql) => {
  const got: string[] = []
  // sql.listen opens a connection of its own for LISTEN
  const sub = await sql.listen('compat_pgjs_ch', (payload) => got.push(payload))
  await sql.notify('compat_pgjs_ch', 'hello')
  for (const until = Date.now() + 10_000; got.length === 0 && Date.now() < until;) await sleep(20)
  await sub.unlisten()
  expect(JSON.stringify(got) === '["hello"]', `received ${JSON.stringify(got)}`)
}))

await check('cancel', () => withSql(1, async (sql) => {
  const t0 = Date.now()
  const q = sql`SELECT pg_sleep(20)`
  const code = stateOf(q)
  await sleep(500)
  q.cancel()
  const c = await code
  const took = (Date.now() - t0) / 1000
  expect(c === '57014', `expected 57014, got ${c}`)
  expect(took < 10, `cancel took ${took} s`)
  const [r] = await sql`SELECT 5 AS v`
  expect(r.v === 5, 'query after cancel')
  return `cancelled after ${took.toFixed(2)} s (query.cancel())`
}))

await check('error_recovery', () => withSql(1, async (sql) => {
  // sql.begin() rolls back itself; the reserved connection does it by hand, as an application would
  const c = await sql.reserve()
  try {
    await c`BEGIN`
    let s = await stateOf(c`SELECT 1/0`)
    expect(s === '22012', `expected 22012, got ${s}`)
    s = await stateOf(c`SELECT 1`)
    expect(s === '25P02', `expected 25P02, got ${s}`)
    await c`ROLLBACK`
    const [r] = await c`SELECT 3 AS v`
    expect(r.v === 3, 'query after rollback')
  } finally {
    c.release()
  }
}))

await check('streaming_200k', () => withSql(1, async (sql) => {
  // cursor(): an unnamed portal read 5000 rows per Execute, PortalSuspended in between
  let n = 0
  let sum = 0
  for await (const rows of sql`SELECT generate_series(1, 200000) AS v`.cursor(5000)) {
    for (const r of rows) {
      n++
      sum += r.v
    }
  }
  expect(n === 200000 && sum === 200000 * 200001 / 2, `${n} rows, sum ${sum}`)
  const all = await sql`SELECT generate_series(1, 200000) AS v`
  expect(all.length === 200000, `${all.length} rows at once`)
  return 'cursor(5000), then the whole result at once'
}))

await check('concurrent_100', async () => {
  await withSql(1, (sql) => sql.unsafe(`DROP TABLE IF EXISTS ${T}_w; CREATE TABLE ${T}_w (worker int, seq int)`))
  await withSql(100, async (sql) => {
    await Promise.all(Array.from({ length: 100 }, async (_, w) => {
      for (let s = 0; s < 3; s++) {
        await sql.begin(async (tx) => {
          await tx`INSERT INTO ${sql(T + '_w')} VALUES (${w}, ${s})`
          await tx`SELECT pg_sleep(0.01)`
        })
      }
    }))
    const [r] = await sql`SELECT count(*)::int AS n, count(DISTINCT worker)::int AS w FROM ${sql(T + '_w')}`
    await sql.unsafe(`DROP TABLE ${T}_w; DROP TABLE IF EXISTS ${T}`)
    expect(r.n === 300 && r.w === 100, `rows, workers: ${JSON.stringify(r)}`)
  })
  return '100 concurrent sql.begin() loops on a pool of max 100 connections'
})
