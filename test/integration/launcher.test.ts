// The `tidepool` command as a supervisor runs it: bin/tidepool.mjs is the process (the compiled
// dist/ in the same PID, no child), so SIGHUP to the started PID reloads and SIGTERM stops it with
// exit code 0 and nothing left behind; and it runs from any current directory.
import { before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { spawnTidepool, writeConfig } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import { freePort } from '../harness/ports.ts'
import { BIN, buildDist } from '../harness/build.ts'

let pgi: PgInstance
before(async () => {
  await buildDist()
  pgi = await sharedPostgres()
}, { timeout: 180_000 })

/** PIDs of the processes whose command line mentions text (pgrep would also see itself). */
function pidsMentioning(text: string): number[] {
  const found: number[] = []
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      if (fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(text)) found.push(Number(name))
    } catch { /* gone meanwhile */ }
  }
  return found
}

function childrenOf(pid: number): number[] {
  const r = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
  return r.stdout.split('\n').filter((l) => l.trim() !== '').map(Number)
}

async function selectOne(port: number): Promise<number> {
  const c = new pg.Client({ host: '127.0.0.1', port, database: 'app', user: pgi.user, password: pgi.password })
  c.on('error', () => {})
  await c.connect()
  try {
    return (await c.query('SELECT 1 AS one')).rows[0].one
  } finally {
    await c.end()
  }
}

test('the started PID is tidepool: SIGHUP reloads, SIGTERM exits 0 and leaves no process, from a cwd outside the repository', { timeout: 60_000 }, async (t) => {
  const elsewhere = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-cwd-'))
  t.after(() => fs.rmSync(elsewhere, { recursive: true, force: true }))
  const port = await freePort()
  const tp = await spawnTidepool(t, pgi, { port, bin: true, cwd: elsewhere, settings: { default_pool_size: 3 } })
  assert.deepEqual(childrenOf(tp.proc.pid ?? -1), [], 'the launcher starts no child process')
  assert.deepEqual(pidsMentioning(tp.iniPath), [tp.proc.pid], 'one process runs this config: the one started')
  assert.equal(await selectOne(port), 1)

  writeConfig(tp.dir, pgi, { settings: { listen_port: port, default_pool_size: 7 } })
  tp.proc.kill('SIGHUP')
  await waitFor(() => tp.output().includes('[config.reloaded]'), { timeoutMs: 10_000, what: 'the reload' })
  assert.match(tp.output(), /changed: [^\n]*default_pool_size[^\n]*\[config\.reloaded\]/)
  assert.equal(tp.proc.exitCode, null, 'SIGHUP did not stop it')
  assert.equal(await selectOne(port), 1, 'still serving after the reload')

  tp.proc.kill('SIGTERM')
  assert.equal(await tp.waitExit(10_000), 0)
  assert.equal(tp.proc.signalCode, null, 'it exited by itself, not by the signal')
  assert.deepEqual(pidsMentioning(tp.iniPath), [], 'no process of this config is left')
})

test('the bin reports tidepool\'s own exit codes, from any directory', { timeout: 60_000 }, async (t) => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-bin-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: dir, encoding: 'utf8' })
  const version = run('--version')
  assert.equal(version.status, 0, version.stderr)
  assert.match(version.stdout, /^tidepool \d+\.\d+\.\d+/)
  fs.writeFileSync(join(dir, 'bad.ini'), '[pgbouncer]\nlisten_port = many\n')
  const bad = run('check-config', join(dir, 'bad.ini'))
  assert.equal(bad.status, 2, bad.stderr)
  assert.equal(run('no-such.ini').status, 2, 'a missing config file is a usage error, as from the sources')
})

test('the bin refuses to run with a debugger flag, in its arguments or NODE_OPTIONS (exit 2)', { timeout: 60_000 }, async (t) => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-bin-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const ini = writeConfig(dir, pgi, { settings: { listen_port: await freePort() } })
  const runs: Array<{ nodeArgs: string[]; env: Record<string, string>; flag: string }> = [
    { nodeArgs: ['--inspect=127.0.0.1:0'], env: {}, flag: '--inspect=127.0.0.1:0' },
    { nodeArgs: [], env: { NODE_OPTIONS: '--inspect=127.0.0.1:0' }, flag: '--inspect=127.0.0.1:0' },
  ]
  for (const { nodeArgs, env, flag } of runs) {
    // A tidepool that starts anyway never exits by itself: the timeout ends it, and status is null.
    const r = spawnSync(process.execPath, [...nodeArgs, BIN, ini], { cwd: dir, encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } })
    assert.equal(r.status, 2, `${flag} (${nodeArgs.length > 0 ? 'argument' : 'NODE_OPTIONS'}): exit ${r.status}\n${r.stderr}`)
    assert.ok(r.stderr.includes(`tidepool: refusing to run with a debugger (${flag})`), r.stderr)
    assert.doesNotMatch(r.stderr, /runtime\.started/, 'the pooler never started')
  }
})
