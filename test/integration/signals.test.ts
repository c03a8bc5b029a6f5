// PgBouncer's signals sent to a started tidepool process (issue 16, item 4): SIGUSR1 pauses and
// SIGUSR2 resumes, as the console's PAUSE and RESUME do (and neither opens Node's inspector nor
// kills the process), a stop signal during a shutdown stops at once, and the entry refuses to run
// with a debugger flag. lifecycle.test.ts has SIGHUP, the first SIGTERM and SIGINT, and the pidfile.
import { test, before, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { spawnTidepool, writeConfig, type ChildTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import { freePort } from '../harness/ports.ts'
import { REPO_ROOT } from '../harness/build.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

async function client(t: TestContext, port: number, database = 'app'): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port, database, user: pgi.user, password: pgi.password })
  c.on('error', () => {})
  await c.connect()
  t.after(() => c.end().catch(() => {}))
  return c
}

/** tidepool as a child process, with a client of `app` and an admin console session. */
async function started(t: TestContext): Promise<{ tp: ChildTidepool; app: pg.Client; admin: pg.Client }> {
  const port = await freePort()
  const tp = await spawnTidepool(t, pgi, { port, settings: { admin_users: pgi.user } })
  return { tp, app: await client(t, port), admin: await client(t, port, 'pgbouncer') }
}

async function state(admin: pg.Client): Promise<Record<string, string>> {
  return Object.fromEntries((await admin.query('SHOW STATE')).rows.map((r) => [r.key, r.value]))
}

function isAlive(tp: ChildTidepool): boolean {
  return tp.proc.exitCode === null && tp.proc.signalCode === null
}

test('SIGUSR1 pauses and SIGUSR2 resumes as PAUSE and RESUME do, with no debugger and no exit', { timeout: 60_000 }, async (t) => {
  const { tp, app, admin } = await started(t)
  await app.query('SELECT 1')

  // Not paused: RESUME is refused as the console refuses it, and the process carries on.
  tp.proc.kill('SIGUSR2')
  await waitFor(() => tp.output().includes('RESUME not done: pooler is not paused/suspended'), { timeoutMs: 10_000, what: 'SIGUSR2 refused' })
  assert.ok(isAlive(tp), 'SIGUSR2 did not end the process')

  tp.proc.kill('SIGUSR1')
  await waitFor(async () => (await state(admin)).paused === 'yes', { timeoutMs: 10_000, what: 'paused by SIGUSR1' })
  const held = app.query('SELECT 2 AS two')
  await waitFor(async () => (await admin.query('SHOW POOLS')).rows.some((r) => r.database === 'app' && Number(r.cl_waiting) === 1), { timeoutMs: 10_000, what: 'the query held' })
  tp.proc.kill('SIGUSR1')
  await waitFor(() => tp.output().includes('PAUSE not done: already suspended/paused'), { timeoutMs: 10_000, what: 'a second SIGUSR1 refused' })

  tp.proc.kill('SIGUSR2')
  assert.equal((await held).rows[0].two, 2, 'SIGUSR2 let the held query through')
  assert.equal((await state(admin)).paused, 'no')
  assert.ok(isAlive(tp))
  assert.doesNotMatch(tp.output(), /Debugger listening|inspector/i, 'no signal opened Node\'s inspector')
})

test('with workers, SIGUSR1 and SIGUSR2 sent to the primary pause and resume every worker', { timeout: 90_000 }, async (t) => {
  const port = await freePort()
  const tp = await spawnTidepool(t, pgi, { port, tidepool: { workers: 2 } })
  const count = (text: string) => tp.output().split(text).length - 1
  tp.proc.kill('SIGUSR1')
  await waitFor(() => count('SIGUSR1: PAUSE done') === 2, { timeoutMs: 20_000, what: 'both workers paused' })
  tp.proc.kill('SIGUSR2')
  await waitFor(() => count('SIGUSR2: RESUME done') === 2, { timeoutMs: 20_000, what: 'both workers resumed' })
  assert.ok(isAlive(tp))
  assert.doesNotMatch(tp.output(), /Debugger listening/, 'no process opened Node\'s inspector')
})

test('a second SIGINT during a safe shutdown stops at once', { timeout: 60_000 }, async (t) => {
  const { tp, app } = await started(t)
  await app.query('BEGIN')
  tp.proc.kill('SIGINT')
  await waitFor(() => tp.output().includes('waiting for transactions'), { timeoutMs: 10_000, what: 'shutdown started' })
  tp.proc.kill('SIGINT')
  assert.equal(await tp.waitExit(10_000), 0, 'exited with the transaction still open')
  assert.match(tp.output(), /got SIGINT while shutting down, stopping at once/)
})

test('a stop signal after the console\'s SHUTDOWN WAIT_FOR_CLIENTS stops at once', { timeout: 60_000 }, async (t) => {
  const { tp, admin } = await started(t)
  await admin.query('SHUTDOWN WAIT_FOR_CLIENTS')
  await waitFor(() => tp.output().includes('waiting for clients'), { timeoutMs: 10_000, what: 'shutdown started' })
  tp.proc.kill('SIGTERM')
  assert.equal(await tp.waitExit(10_000), 0, 'exited with a client still connected')
})

test('SIGTERM during a SUSPEND stops at once, as PgBouncer\'s', { timeout: 60_000 }, async (t) => {
  const { tp, app, admin } = await started(t)
  await app.query('SELECT 1')
  await admin.query('SUSPEND')
  tp.proc.kill('SIGTERM')
  assert.equal(await tp.waitExit(10_000), 0, 'exited with a client still connected')
  assert.match(tp.output(), /got SIGTERM during SUSPEND, stopping at once/)
})

test('the entry refuses --inspect and --debug flags, in its arguments or NODE_OPTIONS (exit 2)', { timeout: 60_000 }, async (t) => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-nodebug-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const ini = writeConfig(dir, pgi, { settings: { listen_port: await freePort() } })
  const main = join(REPO_ROOT, 'src', 'main.ts')
  const runs: Array<{ args: string[]; env?: Record<string, string>; flag: string }> = [
    { args: ['--inspect=127.0.0.1:0', '--import', 'tsx', main, ini], flag: '--inspect=127.0.0.1:0' },
    { args: ['--import', 'tsx', main, ini], env: { NODE_OPTIONS: '--inspect-port=0 --inspect' }, flag: '--inspect-port=0 --inspect' },
    { args: ['--debug-port=0', '--import', 'tsx', main, 'check-config', ini], flag: '--debug-port=0' },
  ]
  for (const run of runs) {
    // A tidepool that starts anyway never exits by itself: the timeout ends it, and status is null.
    const r = spawnSync(process.execPath, run.args, { cwd: REPO_ROOT, encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...run.env } })
    assert.equal(r.status, 2, `${run.flag}: exit ${r.status}\n${r.stderr}`)
    assert.ok(r.stderr.includes(`tidepool: refusing to run with a debugger (${run.flag})`), r.stderr)
    assert.doesNotMatch(r.stderr, /runtime\.started/, 'the pooler never started')
  }
})
