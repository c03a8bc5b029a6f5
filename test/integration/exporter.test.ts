// Debian's prometheus-pgbouncer-exporter, unchanged, scraping tidepool's admin console: the
// drop-in claim for existing monitoring. Version 1.7 (Debian 12) reads total_requests and
// reserve_pool, names PgBouncer dropped in 1.8 and 1.24; against Debian's own PgBouncer 1.18 it
// fails with KeyError. tidepool appends both as alias columns, so this exporter works with it.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { freePort } from '../harness/ports.ts'
import { hasBinary, waitFor } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

test('prometheus-pgbouncer-exporter reads tidepool\'s console and exports its pools', { timeout: 60_000 }, async (t) => {
  assert.ok(hasBinary('prometheus-pgbouncer-exporter'), 'prometheus-pgbouncer-exporter is installed (.ci/run installs it)')
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user } })
  const app = await tp.connect(t)
  await app.query('SELECT 1')
  const port = await freePort()
  const exp = spawn('prometheus-pgbouncer-exporter', ['--host', '127.0.0.1', '--port', String(port), '--pgbouncer-host', '127.0.0.1', '--pgbouncer-port', String(tp.port), '--pgbouncer-user', pgi.user],
    { env: { ...process.env, PGPASSWORD: pgi.password }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  exp.stdout?.on('data', (d) => { out += String(d) })
  exp.stderr?.on('data', (d) => { out += String(d) })
  t.after(() => { exp.kill('SIGKILL') })
  let body = ''
  await waitFor(async () => {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/metrics`)
      body = await r.text()
      return r.status === 200 && /pgbouncer_active_clients/.test(body)
    } catch {
      return false
    }
  }, { timeoutMs: 30_000, intervalMs: 500, what: `the exporter's metrics (output: ${out})` })
  assert.match(body, /^pgbouncer_active_clients\{database="app",user="[^"]+"\} 1\.0$/m, 'SHOW POOLS read')
  assert.match(body, /^pgbouncer_requests_total\{database="app"\} 1\.0$/m, 'SHOW STATS read (total_requests)')
  assert.match(body, /^pgbouncer_reserve_pool\{database="app"\} 0\.0$/m, 'SHOW DATABASES read (reserve_pool)')
  assert.match(body, /^pgbouncer_pools 2\.0$/m, 'SHOW LISTS read (app and the console pool)')
  assert.doesNotMatch(out, /Traceback|Error/, `the exporter logged no error:\n${out}`)
})
