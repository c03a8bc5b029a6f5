// The PostgreSQL harness itself: every TEST_USER logs in through the auth method its pg_hba line
// forces, a wrong password is refused, stop() leaves neither a process nor a data dir behind, and
// a process that never calls stop() (it ends, throws or is SIGKILLed) takes its PostgreSQL with it.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { sharedPostgres, startPostgres, TEST_DATABASE, TEST_USERS } from '../harness/postgres.ts'
import { hasBinary, runPgbench, runPsql, waitFor } from '../harness/clients.ts'

function processesMentioning(text: string): string[] {
  const r = spawnSync('pgrep', ['-af', '--', text], { encoding: 'utf8' })
  return r.stdout.split('\n').filter((l) => l.trim() !== '')
}

test('each test user logs in with its method; stop leaves no process or data dir', { timeout: 120_000 }, async (t) => {
  const pgi = await startPostgres({ maxConnections: 50 })
  t.after(() => pgi.stop())
  try {
    assert.equal(processesMentioning(pgi.dataDir).length, 1, 'exactly one postmaster runs with this data dir')
    const [settings] = await pgi.query(
      `SELECT current_setting('max_connections') AS max, current_setting('listen_addresses') AS listen,
              current_setting('fsync') AS fsync`,
    )
    assert.deepEqual(settings, { max: '50', listen: '127.0.0.1', fsync: 'off' })

    // What PostgreSQL stored decides which exchange it can run: md5 needs an md5 hash.
    const stored = await pgi.query(
      `SELECT rolname, CASE WHEN rolpassword LIKE 'md5%' THEN 'md5'
                            WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram-sha-256' END AS stored
         FROM pg_authid WHERE rolname = ANY($1) ORDER BY rolname`,
      [Object.values(TEST_USERS).map((u) => u.user)],
    )
    assert.deepEqual(stored, [
      { rolname: 'app_md5', stored: 'md5' },
      { rolname: 'app_plain', stored: 'scram-sha-256' },
      { rolname: 'app_scram', stored: 'scram-sha-256' },
      { rolname: 'postgres', stored: 'scram-sha-256' },
    ])

    for (const [name, u] of Object.entries(TEST_USERS)) {
      await t.test(`${name}: ${u.user} logs in to ${TEST_DATABASE} with ${u.auth}`, async () => {
        const client = new pg.Client({ host: pgi.host, port: pgi.port, user: u.user, password: u.password, database: TEST_DATABASE })
        await client.connect()
        try {
          const { rows } = await client.query('SELECT current_user AS who, current_database() AS db')
          assert.deepEqual(rows[0], { who: u.user, db: TEST_DATABASE })
          // The grant on schema public lets every test user create its own tables.
          await client.query(`CREATE TABLE t_${u.user} (id int)`)
        } finally {
          await client.end()
        }
        const [method] = await pgi.query(
          `SELECT auth_method FROM pg_hba_file_rules WHERE $1 = ANY(user_name) ORDER BY rule_number LIMIT 1`, [u.user],
        )
        assert.equal(method.auth_method, u.auth)
      })
      await t.test(`${name}: a wrong password is refused with 28P01`, async () => {
        const client = new pg.Client({ host: pgi.host, port: pgi.port, user: u.user, password: 'wrong', database: TEST_DATABASE })
        await assert.rejects(client.connect(), (err: { code?: string }) => err.code === '28P01')
      })
    }

    assert.equal(pgi.url('app', 'app_md5'), `postgresql://app_md5:md5-pw@127.0.0.1:${pgi.port}/app`)
    assert.match(pgi.logs(), /database system is ready to accept connections/)

    await pgi.stop()
    assert.deepEqual(processesMentioning(pgi.dataDir), [], 'no postgres process survives stop()')
    assert.equal(existsSync(pgi.dataDir), false, 'stop() removes the data dir')
    await pgi.stop() // idempotent
  } catch (err) {
    console.error(`--- PostgreSQL log ---\n${pgi.logs()}`)
    throw err
  }
})

const harnessUrl = new URL('../harness/postgres.ts', import.meta.url).href

// How a test process can end without calling stop(), and whether its data dir is removed too
// (a SIGKILLed process runs no code; the runner's sweep removes its dir).
const endings = [
  { how: 'its event loop empties', code: '', dirRemoved: true },
  { how: 'it throws', code: 'throw new Error("boom")', dirRemoved: true },
  { how: 'it calls process.exit', code: 'process.exit(3)', dirRemoved: true },
  { how: 'it gets SIGTERM', code: 'setInterval(() => {}, 1000); process.kill(process.pid, "SIGTERM")', dirRemoved: true },
  { how: 'it gets SIGKILL', code: 'setInterval(() => {}, 1000); process.kill(process.pid, "SIGKILL")', dirRemoved: false },
]

for (const e of endings) {
  test(`no postgres process survives when the test process ends because ${e.how}`, { timeout: 60_000 }, async (t) => {
    const script = `const { startPostgres } = await import(${JSON.stringify(harnessUrl)})
      const pgi = await startPostgres()
      console.log('DATADIR=' + pgi.dataDir)
      ${e.code}`
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: dirname(fileURLToPath(import.meta.url)), stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (b: Buffer) => { out += b.toString() })
    child.stderr.on('data', (b: Buffer) => { out += b.toString() })
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    t.after(() => { child.kill('SIGKILL') })
    await exited
    const dataDir = /DATADIR=(\S+)/.exec(out)?.[1]
    assert.ok(dataDir, `the child started PostgreSQL:\n${out}`)
    t.after(() => rmSync(dirname(dataDir), { recursive: true, force: true }))
    // A postmaster that loses its parent shuts down on its own signal, so allow it a moment.
    await waitFor(() => processesMentioning(dataDir).length === 0, { timeoutMs: 10_000, what: `postmaster of ${dataDir} to exit` })
    assert.equal(existsSync(dataDir), !e.dirRemoved)
  })
}

test('a later process removes the data dir a SIGKILLed one left behind', { timeout: 60_000 }, async (t) => {
  const startIn = async (code: string): Promise<{ dataDir: string; out: string }> => {
    const script = `const { startPostgres } = await import(${JSON.stringify(harnessUrl)})
      const pgi = await startPostgres()
      console.log('DATADIR=' + pgi.dataDir)
      ${code}`
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (b: Buffer) => { out += b.toString() })
    child.stderr.on('data', (b: Buffer) => { out += b.toString() })
    t.after(() => { child.kill('SIGKILL') })
    await new Promise<void>((resolve) => child.once('exit', () => resolve()))
    const dataDir = /DATADIR=(\S+)/.exec(out)?.[1]
    assert.ok(dataDir, out)
    t.after(() => rmSync(dirname(dataDir), { recursive: true, force: true }))
    return { dataDir, out }
  }
  const killed = await startIn('process.kill(process.pid, "SIGKILL")')
  await waitFor(() => processesMentioning(killed.dataDir).length === 0, { timeoutMs: 10_000, what: 'the orphaned postmaster to exit' })
  assert.equal(existsSync(killed.dataDir), true, 'nothing ran to remove it')
  const next = await startIn('await pgi.stop()')
  assert.equal(existsSync(next.dataDir), false)
  assert.equal(existsSync(killed.dataDir), false, 'the next startPostgres reaped the stale dir')
})

test('psql and pgbench run against the harness PostgreSQL', { timeout: 120_000, skip: !hasBinary('psql') || !hasBinary('pgbench') }, async (t) => {
  const pgi = await startPostgres()
  t.after(() => pgi.stop())
  const { scram, md5, plain } = TEST_USERS
  for (const u of [scram, md5, plain]) {
    const r = await runPsql({ port: pgi.port, user: u.user, password: u.password, db: TEST_DATABASE, sql: 'SELECT current_user, 1 + 1' })
    assert.deepEqual(r, { code: 0, stdout: `${u.user}|2\n`, stderr: '' })
  }
  const bad = await runPsql({ port: pgi.port, user: scram.user, password: 'nope', db: TEST_DATABASE, sql: 'SELECT 1' })
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /password authentication failed for user "app_scram"/)
  const failing = await runPsql({ port: pgi.port, user: scram.user, password: scram.password, db: TEST_DATABASE, sql: 'SELECT 1/0' })
  assert.equal(failing.code, 1, 'ON_ERROR_STOP turns an SQL error into exit code 1')
  assert.match(failing.stderr, /division by zero/)

  const su = { port: pgi.port, user: pgi.user, password: pgi.password, db: TEST_DATABASE }
  const init = await runPgbench({ ...su, args: ['-i', '-s', '1', '-q'] })
  assert.equal(init.code, 0, init.stderr)
  const bench = await runPgbench({ ...su, args: ['-S', '-c', '4', '-j', '2', '-T', '1'] })
  assert.equal(bench.code, 0, bench.stderr)
  assert.ok(bench.tps !== null && bench.tps > 0, `tps parsed from:\n${bench.stdout}`)

  const hung = await runPsql({ ...su, sql: 'SELECT pg_sleep(30)', timeoutMs: 500 })
  assert.equal(hung.code, null)
  assert.match(hung.stderr, /killed after 500 ms/)
})

test('sharedPostgres hands out one server per process, and a fresh one after a stop', { timeout: 60_000 }, async () => {
  const [a, b] = await Promise.all([sharedPostgres(), sharedPostgres()])
  assert.equal(a, b)
  assert.equal((await a.query('SELECT 1 AS one'))[0].one, 1)
  await a.stop()
  const c = await sharedPostgres()
  assert.notEqual(c.dataDir, a.dataDir)
  assert.equal((await c.query('SELECT 2 AS two'))[0].two, 2)
  // c is left running on purpose: the exit listener stops it, as it does for every test file.
})

test('waitFor resolves once the condition holds and names what it waited for on timeout', async () => {
  let n = 0
  await waitFor(() => ++n === 3, { timeoutMs: 1_000, intervalMs: 1 })
  assert.equal(n, 3)
  await waitFor(async () => { if (++n < 6) throw new Error('not yet'); return true }, { timeoutMs: 1_000, intervalMs: 1 })
  await assert.rejects(waitFor(() => false, { timeoutMs: 50, what: 'the moon' }), /timed out after 50 ms waiting for the moon/)
  assert.equal(hasBinary('sh'), true)
  assert.equal(hasBinary('no-such-binary-tidepool'), false)
})
