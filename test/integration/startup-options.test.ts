// The startup parameter `options` (libpq's `options` and PGOPTIONS), as PgBouncer 1.20+ takes it:
// `-c name=value` and `--name=value` settings of tracked parameters are kept per client and applied
// to whichever server it gets; anything else is refused with PgBouncer's 08P01 texts unless
// ignore_startup_parameters lists the name or `options`. Through psql and node-postgres.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { runPsql } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

/** A node-postgres client through tidepool with `options` in its startup packet; ended after the test. */
async function withOptions(t: import('node:test').TestContext, tp: TestTidepool, options: string): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: pgi.user, password: pgi.password, options })
  c.on('error', () => {})
  t.after(() => c.end().catch(() => {}))
  await c.connect()
  return c
}

/** The FATAL a login with these options gets (its SQLSTATE and text), or null when it logs in. */
async function refusal(tp: TestTidepool, options: string): Promise<string | null> {
  const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: pgi.user, password: pgi.password, options })
  c.on('error', () => {})
  try {
    await c.connect()
    await c.end()
    return null
  } catch (e: any) {
    return `${e.code} ${e.message}`
  }
}

const show = async (c: pg.Client, name: string): Promise<string> => {
  const value = Object.values((await c.query(`SHOW ${name}`)).rows[0] as Record<string, string>)[0]
  assert.equal(typeof value, 'string')
  return value
}

test('psql with PGOPTIONS: -c settings of tracked parameters follow the client in every transaction, and leave other clients alone', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const other = await tp.connect(t) // shares the pool's one server with psql
  const zone = await show(other, 'TimeZone')
  const file = join(tp.dir, 'show.sql')
  fs.writeFileSync(file, 'SHOW TimeZone;\nSHOW DateStyle;\nSHOW IntervalStyle;\nSELECT 1;\nSHOW TimeZone;\n')
  const r = await runPsql({ port: tp.port, user: pgi.user, db: 'app', file,
    env: { PGOPTIONS: '-c TimeZone=Europe/Lisbon  -c    DateStyle=German,\\ YMD --IntervalStyle=iso_8601' } })
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(r.stdout.trim().split('\n'), ['Europe/Lisbon', 'German, YMD', 'iso_8601', '1', 'Europe/Lisbon'])
  assert.equal(await show(other, 'TimeZone'), zone, 'the other client keeps its own value on the same server')
  assert.notEqual(zone, 'Europe/Lisbon')
})

test('search_path from options (track_extra_parameters = search_path) is applied to every server the client gets, and to no other client', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1, track_extra_parameters: 'IntervalStyle, search_path' } })
  const plain = await tp.connect(t)
  const before = await show(plain, 'search_path')
  const a = await withOptions(t, tp, '-c search_path=tp_opts,public')
  const b = await withOptions(t, tp, '-csearch_path=pg_temp,\\ "TpQuoted"')
  // What PostgreSQL itself shows for the same options: the list as the client wrote it.
  const direct = new pg.Client({ host: '127.0.0.1', port: pgi.port, database: 'app', user: pgi.user, password: pgi.password, options: '-csearch_path=pg_temp,\\ "TpQuoted"' })
  await direct.connect()
  t.after(() => direct.end())
  assert.equal(await show(direct, 'search_path'), 'pg_temp, "TpQuoted"')
  for (let i = 0; i < 3; i++) {
    assert.equal(await show(a, 'search_path'), 'tp_opts,public')
    assert.equal(await show(plain, 'search_path'), before, 'a client without one sees the server default')
    assert.equal(await show(b, 'search_path'), 'pg_temp, "TpQuoted"')
  }
  // Its own SET then wins, and follows it too.
  await a.query('SET search_path = public')
  assert.equal(await show(plain, 'search_path'), before)
  assert.equal(await show(a, 'search_path'), 'public')
  const r = await runPsql({ port: tp.port, user: pgi.user, db: 'app', sql: 'SHOW search_path', env: { PGOPTIONS: '--search_path=tp_psql' } })
  assert.equal(r.stdout.trim(), 'tp_psql', r.stderr)
  assert.equal(await show(plain, 'search_path'), before)
  // Session mode: set once on the client's server, gone (DISCARD ALL) when the next client gets it.
  const sess = await startTidepool(t, pgi, { settings: { default_pool_size: 1, pool_mode: 'session', track_extra_parameters: 'search_path' } })
  const s1 = await withOptions(t, sess, '-c search_path=tp_opts,public')
  assert.equal(await show(s1, 'search_path'), 'tp_opts,public')
  await s1.end()
  assert.equal(await show(await sess.connect(t), 'search_path'), before)
})

test('anything else in options is refused with PgBouncer\'s texts, unless ignore_startup_parameters lists it or options', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  assert.equal(await refusal(tp, '-c enable_seqscan=off'), '08P01 unsupported startup parameter in options: enable_seqscan')
  const badForm = "08P01 unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed"
  assert.equal(await refusal(tp, '-d'), badForm)
  assert.equal(await refusal(tp, '-c TimeZone'), badForm)
  assert.equal(await refusal(tp, '-B 100'), badForm)
  assert.equal(await refusal(tp, ''), null, 'empty options are fine')
  const r = await runPsql({ port: tp.port, user: pgi.user, db: 'app', sql: 'SELECT 1', env: { PGOPTIONS: '-c work_mem=64MB' } })
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /unsupported startup parameter in options: work_mem/)
  assert.ok(tp.logs.some((l) => l.includes('unsupported startup parameter in options: enable_seqscan')), 'the refusal is logged')

  const named = await startTidepool(t, pgi, { settings: { default_pool_size: 1, ignore_startup_parameters: 'enable_seqscan' } })
  const n = await withOptions(t, named, '-c enable_seqscan=off -c TimeZone=Asia/Tokyo')
  assert.equal(await show(n, 'enable_seqscan'), 'on', 'an ignored setting is dropped, as PgBouncer drops it')
  assert.equal(await show(n, 'TimeZone'), 'Asia/Tokyo')
  assert.equal(await refusal(named, '-c work_mem=1MB'), '08P01 unsupported startup parameter in options: work_mem')

  const all = await startTidepool(t, pgi, { settings: { default_pool_size: 1, ignore_startup_parameters: 'options' } })
  const o = await withOptions(t, all, '-c enable_seqscan=off --work_mem=1MB -c TimeZone=Asia/Tokyo')
  const plain = await all.connect(t)
  assert.equal(await show(o, 'enable_seqscan'), 'on')
  assert.equal(await show(o, 'work_mem'), await show(plain, 'work_mem'))
  assert.notEqual(await show(o, 'work_mem'), '1MB')
  assert.equal(await show(o, 'TimeZone'), 'Asia/Tokyo', 'tracked ones are still applied')
  assert.equal(await refusal(all, '-d'), badForm, 'a malformed value is refused even then, as in PgBouncer')
})
