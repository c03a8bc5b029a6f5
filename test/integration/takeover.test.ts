// Online restart (`tidepool <ini> --takeover`, src/runtime/takeover.ts): under pgbench -c 50 in
// transaction mode, a new process takes over from the running one: no transaction fails, no
// connection is refused, clients keep their session (a prepared statement made before still runs
// after, a cancel key issued before still cancels after), a client inside a transaction finishes
// it on the old process and is handed over after; bad input gets a clear error and exit code.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import pg from 'pg'
import { sharedPostgres } from '../harness/postgres.ts'
import { spawnTidepool, writeConfig } from '../harness/tidepool.ts'
import { freePort } from '../harness/ports.ts'
import { runPgbench, runPsql, waitFor, type RunResult } from '../harness/clients.ts'
import * as build from '../../src/protocol/build.ts'

const ROOT = join(import.meta.dirname, '..', '..')

/** `tidepool <ini> --takeover ...` from the sources, as the tests run tidepool. */
function takeover(iniPath: string, extra: string[] = [], onOut?: (s: string) => void): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'main.ts'), iniPath, '--takeover', ...extra], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; onOut?.(stdout) })
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
    const timer = setTimeout(() => child.kill('SIGKILL'), 45_000)
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

function sendCancel(port: number, pid: number, secret: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.end(build.cancelRequest(pid, secret)))
    s.on('error', () => resolve())
    s.on('close', () => resolve())
    s.resume()
  })
}

/** The processes whose parent is `pid` (a primary's workers and spare). */
function childrenOf(pid: number): number[] {
  const out: number[] = []
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d))
    } catch {
      // Gone meanwhile.
    }
  }
  return out
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

for (const workers of (process.env.TAKEOVER_WORKERS ?? '1,2').split(',').map(Number)) test(`takeover, workers = ${workers}: pgbench -c 50 sees no failed transaction and no refused connection; sessions and cancel keys survive`, { timeout: 120_000 }, async (t) => {
  const pgi = await sharedPostgres()
  const port = await freePort()
  const sockDir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-takeover-'))
  t.after(() => fs.rmSync(sockDir, { recursive: true, force: true }))
  const old = await spawnTidepool(t, pgi, { port, settings: { unix_socket_dir: sockDir, pool_mode: 'transaction', default_pool_size: 20, max_client_conn: 400 }, tidepool: { workers } })
  let newPid = 0
  t.after(() => { if (newPid !== 0 && isAlive(newPid)) process.kill(newPid, 'SIGKILL') })
  await waitFor(() => workers === 1 || childrenOf(old.proc.pid ?? 0).length > workers, { timeoutMs: 20_000, what: 'the workers and the spare' })
  const oldWorkers = workers === 1 ? [] : childrenOf(old.proc.pid ?? 0)

  const connect = async () => {
    const c = new pg.Client({ host: '127.0.0.1', port, database: 'app', user: pgi.user, password: pgi.password })
    c.on('error', () => {})
    await c.connect()
    t.after(() => c.end().catch(() => {}))
    return c
  }
  // A session with a protocol-level prepared statement, and its cancel key.
  const a = await connect()
  assert.equal((await a.query({ name: 'plus_one', text: 'SELECT $1::int + 1 AS n', values: [1] })).rows[0].n, 2)
  const key = a as unknown as { processID: number; secretKey: number }
  // A client inside a transaction: it finishes it on the old process.
  const b = await connect()
  await b.query('BEGIN')
  await b.query("SELECT set_config('application_name', 'inside', true)")

  const script = join(sockDir, 'select.sql')
  fs.writeFileSync(script, 'SELECT 1;\n')
  const bench = runPgbench({ port, user: pgi.user, password: pgi.password, db: 'app', args: ['-n', '-c', '50', '-j', '2', '-T', workers > 1 ? '40' : '20', '-M', 'prepared', '-f', script], timeoutMs: 60_000 })

  // The server connections of old and new together, sampled straight from PostgreSQL: with
  // workers the new ledger counts the old pooler's slots, so the sum stays within default_pool_size.
  const direct = new pg.Client({ connectionString: pgi.url('postgres') })
  await direct.connect()
  t.after(() => direct.end().catch(() => {}))
  let maxServers = 0
  let maxRows = ''
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      const rows = (await direct.query("SELECT pid, application_name, state, left(query, 40) AS q, client_port FROM pg_stat_activity WHERE datname = 'app' AND backend_type = 'client backend'")).rows
      if (rows.length > maxServers) {
        maxServers = rows.length
        maxRows = JSON.stringify(rows)
      }
      await new Promise((r) => setTimeout(r, 20))
    }
  })()

  // New connections all along, and the longest gap between two answers of one busy client.
  let running = true
  let refused = 0
  let connected = 0
  const errors: string[] = []
  const churn = (async () => {
    while (running) {
      const c = new pg.Client({ host: '127.0.0.1', port, database: 'app', user: pgi.user, password: pgi.password })
      c.on('error', () => {})
      try {
        await c.connect()
        await c.query('SELECT 1')
        connected++
      } catch (err) {
        refused++
        errors.push((err as Error).message)
      }
      await c.end().catch(() => {})
      await new Promise((r) => setTimeout(r, 10))
    }
  })()
  const busy = await connect()
  let stallMs = 0
  let stallEnd = ''
  const stall = (async () => {
    let last = Date.now()
    while (running) {
      await busy.query('SELECT 1')
      const now = Date.now()
      if (now - last > stallMs) {
        stallMs = now - last
        stallEnd = new Date(now).toISOString()
      }
      last = now
    }
  })()

  await new Promise((r) => setTimeout(r, 1500))
  let isReady = false
  const first = takeover(old.iniPath, ['--takeover-timeout', '30'], (out) => { if (out.includes('listens')) isReady = true })
  let firstDone: RunResult | null = null
  void first.then((x) => { firstDone = x })
  await waitFor(() => isReady || firstDone !== null, { timeoutMs: 30_000, what: 'the new process to listen' })
  assert.ok(isReady, JSON.stringify(firstDone))
  // A second takeover while the first drains is refused.
  const second = await takeover(old.iniPath)
  assert.equal(second.code, 1, second.stderr)
  assert.match(second.stderr, /a takeover is already in progress/)
  // The transaction ends on the old process, then the client moves.
  assert.equal((await b.query('SHOW application_name')).rows[0].application_name, 'inside')
  await b.query('COMMIT')
  const r = await first
  assert.equal(r.code, 0, r.stderr + r.stdout)
  newPid = Number(/pid (\d+) serves/.exec(r.stdout)?.[1])
  assert.ok(newPid > 0 && newPid !== old.proc.pid, r.stdout)
  assert.equal(await old.waitExit(10_000), 0)
  // The old workers (and the spare) are gone with their primary; the new primary has its own.
  await waitFor(() => oldWorkers.every((pid) => !isAlive(pid)), { timeoutMs: 10_000, what: `the old workers ${oldWorkers.join(', ')} to exit` })
  if (workers > 1) assert.ok(childrenOf(newPid).length >= workers, `new workers of ${newPid}: ${childrenOf(newPid).join(', ')}`)
  assert.match(r.stdout, /0 closed at the deadline/)
  const handed = Number(/(\d+) clients handed over/.exec(r.stdout)?.[1])
  assert.ok(handed >= 50, `pgbench's clients were handed over while it ran: ${r.stdout}`)

  // Sessions go on in the new process.
  assert.equal((await a.query({ name: 'plus_one', text: 'SELECT $1::int + 1 AS n', values: [41] })).rows[0].n, 42)
  assert.equal((await b.query('SELECT 7 AS n')).rows[0].n, 7)
  const sleeping = a.query('SELECT pg_sleep(20)').then(() => null, (err: { code?: string }) => err.code ?? 'error')
  await new Promise((r) => setTimeout(r, 300))
  const cancelAt = Date.now()
  await sendCancel(port, key.processID, key.secretKey)
  assert.equal(await sleeping, '57014', 'a cancel key issued before the takeover cancels after it')
  assert.ok(Date.now() - cancelAt < 5000)

  const res = await bench
  running = false
  sampling = false
  await Promise.all([churn, stall, sampler])
  // workers = 1 has no ledger: old and new may each open default_pool_size (20) meanwhile.
  if (workers > 1) assert.ok(maxServers <= 20, `${maxServers} server connections at once during the takeover (default_pool_size 20): ${maxRows}`)
  assert.equal(res.code, 0, res.stderr + res.stdout)
  assert.doesNotMatch(res.stderr, /aborted|error/i)
  const failedTx = /number of failed transactions: (\d+)/.exec(res.stdout)
  if (failedTx !== null) assert.equal(Number(failedTx[1]), 0, res.stdout)
  assert.equal(refused, 0, errors.join('\n'))
  assert.ok(connected > 10, `only ${connected} new connections during the run`)
  t.diagnostic(`takeover (workers = ${workers}) under pgbench -c 50 : ${res.tps} tps, failed 0, refused ${refused} of ${connected + refused} new connections, longest stall ${stallMs} ms (ending ${stallEnd}), at most ${maxServers} server connections; ${r.stdout.trim().split('\n').at(-1)}`)
  // The unix socket outlived the old process, and the new one opened the control socket.
  const viaUnix = await runPsql({ host: sockDir, port, user: pgi.user, password: pgi.password, db: 'app', sql: 'SELECT 40 + 2' })
  assert.equal(viaUnix.stdout.trim(), '42', viaUnix.stderr)
  await waitFor(() => fs.existsSync(join(sockDir, `.s.PGSQL.${port}.takeover`)), { timeoutMs: 5000, what: 'the new control socket' })
  assert.ok(stallMs < 5000, `longest stall ${stallMs} ms`)
})

test('takeover: with nobody running, or without unix_socket_dir, a clear error and exit code', { timeout: 60_000 }, async () => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-takeover-bad-'))
  try {
    const port = await freePort()
    const ini = writeConfig(dir, null, { settings: { listen_port: port, unix_socket_dir: dir } })
    const none = await takeover(ini)
    assert.equal(none.code, 1)
    assert.match(none.stderr, /no tidepool is running there/)
    const noDir = writeConfig(dir, null, { settings: { listen_port: port, unix_socket_dir: '' } })
    const r = await takeover(noDir)
    assert.equal(r.code, 2)
    assert.match(r.stderr, /--takeover needs unix_socket_dir/)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
