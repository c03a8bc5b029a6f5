// examples/fleet/up.sh as a user runs it: up (a 3-member etcd from Debian's etcd-server, the
// embedded PostgreSQL, three tidepool nodes in one fleet, Debian's HAProxy in front), a client and
// the admin console through HAProxy (SHOW FLEET lists the three nodes; FLEET PAUSE and RESUME are
// answered by all three), then down: exit 0, no process naming the dir, no dir.
// The dir is under one of the harness's run dirs, so the runner's sweep finds anything that
// survived a crash of this test (every process up.sh starts names the dir on its command line).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import pg from 'pg'
import { destroy, makeDir, requireBinaries } from '../harness/replication.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const SCRIPT = join(ROOT, 'examples', 'fleet', 'up.sh')
/** The ports up.sh takes from its base port on (its head lists them). */
const OFFSETS = [0, 1, 2, 3, 11, 12, 13, 20, 31, 32, 33, 41, 42, 43]

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  const proc = spawn('bash', [SCRIPT, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout.on('data', (d) => { out += String(d) })
  proc.stderr.on('data', (d) => { out += String(d) })
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
  return new Promise((resolve) => proc.on('exit', (code) => {
    clearTimeout(timer)
    resolve({ code, out })
  }))
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

/** A base port whose every port up.sh takes is free now. */
async function freeBase(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000)
    if ((await Promise.all(OFFSETS.map((o) => isFree(base + o)))).every(Boolean)) return base
  }
  throw new Error('no base port with 44 free ports after it')
}

function processesNaming(text: string): string[] {
  return spawnSync('pgrep', ['-af', '--', text], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.trim() !== '')
}

async function console(port: number, sql: string): Promise<Array<Record<string, string | number>>> {
  const c = new pg.Client({ host: '127.0.0.1', port, database: 'pgbouncer', user: 'app', password: 'app' })
  c.on('error', () => {})
  await c.connect()
  try {
    return (await c.query(sql)).rows as Array<Record<string, string | number>>
  } finally {
    await c.end().catch(() => {})
  }
}

test('examples/fleet/up.sh: etcd, PostgreSQL, 3 nodes and HAProxy up; FLEET PAUSE/RESUME through HAProxy; down leaves nothing', { timeout: 300_000 }, async (t) => {
  requireBinaries(['/usr/bin/etcd', '/usr/sbin/haproxy'])
  const runDir = makeDir()
  const dir = join(runDir, 'fleet')
  let isDown = false
  t.after(async () => {
    if (!isDown) await run(['down', '--dir', dir], 60_000)
    await destroy([], [runDir])
  })
  const base = await freeBase()
  const up = await run(['--dir', dir, '--base-port', String(base)], 240_000)
  t.diagnostic(up.out)
  assert.equal(up.code, 0, up.out)
  assert.match(up.out, new RegExp(`postgresql://app:app@127\\.0\\.0\\.1:${base}/app`))
  assert.match(up.out, /FLEET PAUSE app/)

  const c = new pg.Client({ connectionString: `postgresql://app:app@127.0.0.1:${base}/app` })
  c.on('error', () => {})
  await c.connect()
  t.after(() => c.end().catch(() => {}))
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'app')

  const fleet = await console(base, 'SHOW FLEET')
  assert.deepEqual(fleet.map((r) => r.name).sort(), ['node1', 'node2', 'node3'])
  assert.ok(fleet.every((r) => r.state === 'up'), JSON.stringify(fleet))
  const paused = await console(base, 'FLEET PAUSE app')
  assert.deepEqual(paused.map((r) => [r.node, r.outcome]), [['node1', 'ok'], ['node2', 'ok'], ['node3', 'ok']])
  for (let i = 1; i <= 3; i++) {
    const dbs = await console(base + 30 + i, 'SHOW DATABASES')
    assert.equal(Number(dbs.find((r) => r.name === 'app')?.paused), 1, `node${i} paused app`)
  }
  const resumed = await console(base, 'FLEET RESUME app')
  assert.deepEqual(resumed.map((r) => r.outcome), ['ok', 'ok', 'ok'])
  assert.equal((await c.query('SELECT 2 AS two')).rows[0].two, 2, 'the client goes on after RESUME')
  await c.end()

  const down = await run(['down', '--dir', dir], 120_000)
  isDown = true
  assert.equal(down.code, 0, down.out)
  assert.deepEqual(processesNaming(dir), [], 'no process of the fleet left')
  assert.equal(existsSync(dir), false, 'the dir is gone')
  for (const o of OFFSETS) assert.equal(await isFree(base + o), true, `port ${base + o} free again`)
})
