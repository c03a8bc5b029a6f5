// Signals and reload as an operator drives them: SIGHUP reloads (a broken file keeps the old
// config), SIGTERM waits for clients to leave, SIGINT waits for transactions, and the pidfile.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { spawnTidepool, startTidepool, writeConfig } from '../harness/tidepool.ts'
import { waitFor, runPsql } from '../harness/clients.ts'
import { freePort } from '../harness/ports.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

function client(port: number) {
  const c = new pg.Client({ host: '127.0.0.1', port, database: 'app', user: pgi.user, password: pgi.password })
  c.on('error', () => {})
  return c
}

test('SIGHUP with a broken file keeps the old config and keeps serving', { timeout: 60_000 }, async (t) => {
  const port = await freePort()
  const tp = await spawnTidepool(t, pgi, { port, settings: { default_pool_size: 3 } })
  const c = client(port)
  await c.connect()
  t.after(() => c.end())
  fs.appendFileSync(tp.iniPath, '\n[pgbouncer]\nquery_wait_timeout = soon\n')
  tp.proc.kill('SIGHUP')
  await waitFor(() => tp.output().includes('[config.rejected]'), { timeoutMs: 10_000, what: 'reload rejected' })
  assert.match(tp.output(), /tidepool\.ini:\d+: query_wait_timeout/)
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1)
  const d = client(port)
  await d.connect()
  assert.equal((await d.query('SELECT 2 AS two')).rows[0].two, 2, 'new logins still work')
  await d.end()
})

test('RELOAD applies a new pool_mode to new transactions', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { pool_mode: 'transaction' } })
  const c = await tp.connect(t)
  await c.query('SELECT 1')
  const before = tp.pool('app', pgi.user)
  assert.ok(before !== undefined)
  tp.rewrite({ settings: { pool_mode: 'session', listen_port: 0 } })
  const r = await tp.rt.reload()
  assert.equal(r.ok, true, r.errors.join('\n'))
  assert.equal(tp.pool('app', pgi.user), before, 'the pool object survives reload')
  assert.equal(tp.pool('app', pgi.user)?.settings.pool_mode, 'session')
  assert.ok(tp.logs.some((l) => l.includes('[config.reloaded]') && l.includes('pool_mode')))
})

test('SIGTERM waits for clients to leave, refuses new ones, then exits 0 and removes the pidfile', { timeout: 60_000 }, async (t) => {
  const port = await freePort()
  const pidfile = `${fs.mkdtempSync('/tmp/tp-pid-')}/tidepool.pid`
  const tp = await spawnTidepool(t, pgi, { port, settings: { pidfile } })
  assert.equal(fs.readFileSync(pidfile, 'utf8').trim(), String(tp.proc.pid))
  const c = client(port)
  await c.connect()
  await c.query('BEGIN')
  tp.proc.kill('SIGTERM')
  await waitFor(() => tp.output().includes('waiting for clients'), { timeoutMs: 10_000, what: 'shutdown started' })
  const late = client(port)
  await assert.rejects(late.connect())
  assert.equal((await c.query('SELECT 5 AS five')).rows[0].five, 5, 'the connected client keeps working')
  await c.query('COMMIT')
  await c.end()
  assert.equal(await tp.waitExit(10_000), 0)
  assert.equal(fs.existsSync(pidfile), false)
})

test('SIGINT lets the running transaction finish, then exits', { timeout: 60_000 }, async (t) => {
  const port = await freePort()
  const tp = await spawnTidepool(t, pgi, { port })
  const c = client(port)
  await c.connect()
  await c.query('BEGIN')
  const idle = client(port)
  await idle.connect()
  tp.proc.kill('SIGINT')
  await waitFor(() => tp.output().includes('waiting for transactions'), { timeoutMs: 10_000, what: 'shutdown started' })
  assert.equal((await c.query('SELECT 7 AS seven')).rows[0].seven, 7)
  await c.query('COMMIT')
  assert.equal(await tp.waitExit(10_000), 0)
})

test('tidepool check-config reports errors with file:line and exit 2', { timeout: 60_000 }, async (t) => {
  const dir = fs.mkdtempSync('/tmp/tp-check-')
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const ini = writeConfig(dir, pgi, { settings: { query_wait_timeout: 'soon' } })
  const { spawnSync } = await import('node:child_process')
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'check-config', ini], { encoding: 'utf8' })
  assert.equal(r.status, 2, r.stdout + r.stderr)
  assert.match(r.stdout, /tidepool\.ini:\d+: query_wait_timeout/)
  const good = writeConfig(dir, pgi, {})
  const ok = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'check-config', good], { encoding: 'utf8' })
  assert.equal(ok.status, 0, ok.stdout + ok.stderr)
})

test('psql and pgbench work through tidepool', { timeout: 120_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 4, max_client_conn: 200 } })
  const q = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: 'app', sql: `SELECT 'psql ok'` })
  assert.equal(q.code, 0, q.stderr)
  assert.equal(q.stdout.trim(), 'psql ok')
  const init = await runPsql({ port: pgi.port, user: pgi.user, password: pgi.password, db: 'app', sql: 'SELECT 1' })
  assert.equal(init.code, 0)
  const { runPgbench } = await import('../harness/clients.ts')
  const i = await runPgbench({ port: tp.port, user: pgi.user, password: pgi.password, db: 'app', args: ['-i', '-s', '1', '-q'] })
  assert.equal(i.code, 0, i.stderr)
  const r = await runPgbench({ port: tp.port, user: pgi.user, password: pgi.password, db: 'app', args: ['-c', '20', '-j', '2', '-t', '50'] })
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /number of failed transactions: 0/)
  assert.ok((r.tps ?? 0) > 0)
  const e = await runPgbench({ port: tp.port, user: pgi.user, password: pgi.password, db: 'app', args: ['-c', '10', '-j', '2', '-t', '50', '-S', '-M', 'extended'] })
  assert.equal(e.code, 0, e.stderr)
  assert.equal(tp.poolCounts('app', pgi.user).sv_active, 0)
})

test('settings this version cannot honour are refused, ignored tuning is a warning', { timeout: 60_000 }, async (t) => {
  const dir = fs.mkdtempSync('/tmp/tp-support-')
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const { spawnSync } = await import('node:child_process')
  const run = (ini: string) => spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'check-config', ini], { encoding: 'utf8' })
  // verify-full without server_tls_ca_file trusts Node's root certificates (PgBouncer: the system's).
  const tls = writeConfig(dir, pgi, { settings: { server_tls_sslmode: 'verify-full' } })
  const r1 = run(tls)
  assert.equal(r1.status, 0, r1.stdout)
  const proto = writeConfig(dir, pgi, { settings: { server_tls_sslmode: 'prefer', server_tls_protocols: 'tlsv9' } })
  const rp = run(proto)
  assert.equal(rp.status, 2, rp.stdout)
  assert.match(rp.stdout, /error: server_tls_protocols: unknown protocol in "tlsv9"/)
  const hba = writeConfig(dir, pgi, { settings: { auth_type: 'hba' }, userlist: {} })
  const r2 = run(hba)
  assert.equal(r2.status, 2, r2.stdout)
  assert.match(r2.stdout, /auth_type hba needs auth_hba_file/)
  const tuning = writeConfig(dir, pgi, { settings: { tcp_keepcnt: 3, so_reuseport: 1, disable_pqexec: 1 } })
  const r3 = run(tuning)
  assert.equal(r3.status, 0, r3.stdout)
  assert.match(r3.stdout, /warning: .*tcp_keepcnt is accepted but not applied/)
  assert.match(r3.stdout, /warning: .*so_reuseport is accepted but not applied/)
  // Applied settings get no such warning.
  assert.doesNotMatch(r3.stdout, /disable_pqexec/)
})
