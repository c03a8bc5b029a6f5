// `tidepool demo` end to end, as `npm start` runs it (the compiled bin): the embedded PostgreSQL
// comes up, psql reads the sample table through tidepool, and SIGINT stops everything with exit
// code 0, leaving neither a postgres process nor the temp dir behind.
import { before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { runPsql, waitFor } from '../harness/clients.ts'
import { freePort } from '../harness/ports.ts'
import { BIN, buildDist } from '../harness/build.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))

function processesMentioning(text: string): string[] {
  const r = spawnSync('pgrep', ['-af', '--', text], { encoding: 'utf8' })
  return r.stdout.split('\n').filter((l) => l.trim() !== '')
}

before(buildDist, { timeout: 120_000 })

test('tidepool demo serves the sample database and SIGINT stops it cleanly', { timeout: 120_000 }, async (t) => {
  const port = await freePort()
  const child = spawn(process.execPath, [BIN, 'demo', '--port', String(port)], {
    cwd: root, stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  t.after(() => {
    // On failure: SIGKILL the demo; its PostgreSQL follows by the parent-death signal.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const output = (): string => `--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`

  await waitFor(() => stdout.includes('tidepool demo is running') || child.exitCode !== null, {
    timeoutMs: 90_000, what: 'the demo to start',
  })
  assert.match(stdout, /tidepool demo is running/, output())
  assert.match(stdout, new RegExp(`tidepool: 127\\.0\\.0\\.1:${port}\\b`), output())
  const dir = /config: (\S+)\/tidepool\.ini/.exec(stdout)?.[1]
  assert.ok(dir, output())
  t.after(() => {
    for (const line of processesMentioning(dir)) {
      try { process.kill(Number.parseInt(line, 10), 'SIGKILL') } catch { /* gone */ }
    }
    rmSync(dir, { recursive: true, force: true })
  })
  assert.equal(existsSync(dir), true)
  assert.ok(processesMentioning(dir).length > 0, 'the embedded PostgreSQL runs in the demo dir')

  const r = await runPsql({ port, user: 'app', password: 'app', db: 'app', sql: 'SELECT * FROM greetings ORDER BY id' })
  assert.deepEqual(r, { code: 0, stdout: '1|hello from tidepool\n2|pooled through transaction mode\n', stderr: '' }, output())
  const pools = await runPsql({ port, user: 'app', password: 'app', db: 'pgbouncer', sql: 'SHOW POOLS' })
  assert.equal(pools.code, 0, pools.stderr)
  assert.match(pools.stdout, /^app\|app\|/m, 'the admin console lists the demo pool')

  child.kill('SIGINT')
  const end = await exited
  assert.deepEqual(end, { code: 0, signal: null }, output())
  await waitFor(() => processesMentioning(dir).length === 0, { timeoutMs: 10_000, what: `no process in ${dir}` })
  assert.equal(existsSync(dir), false, 'the temp dir is removed')
})
