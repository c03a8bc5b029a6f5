// CPU time of the pooler process per transaction, tidepool, PgBouncer and a bare Node.js relay in one run:
//   npx tsx src/bench/lab/cpu-per-tx.ts [--transactions 2000] [--only tidepool|pgbouncer|relay|direct] [--mode simple|extended|prepared]
// The poolers get the same ini (transaction pooling, pool of 20); the relay (relay.ts beside it) passes
// bytes 1:1 and marks the floor of a Node.js proxy; direct gives PostgreSQL's own tps for the ratio.
// pgbench -S with 50 clients runs a warm-up, then a fixed number of transactions per client while the
// proxy's utime and stime are read from /proc/<pid>/stat. Prints tps and user and kernel µs per
// transaction for each. Noisy on a shared machine: compare figures from one run only.
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { parseArgs } from 'node:util'
import { startPostgres } from '../../../test/harness/postgres.ts'
import { freePort } from '../../../test/harness/ports.ts'
import { runPgbench, waitFor } from '../../../test/harness/clients.ts'

const { values } = parseArgs({ options: { transactions: { type: 'string', default: '2000' }, only: { type: 'string' }, mode: { type: 'string', default: 'simple' } } })
const perClient = Number(values.transactions)
const clients = 50
const pgi = await startPostgres({ maxConnections: 300 })
const dir = fs.mkdtempSync(join(os.tmpdir(), 'tp-cpu-'))
fs.chmodSync(dir, 0o755)
try {
  await runPgbench({ port: pgi.port, user: pgi.user, password: pgi.password, db: 'postgres', args: ['-i', '-s', '2', '-q'] })
  const port = await freePort()
  fs.writeFileSync(join(dir, 'ul.txt'), `"${pgi.user}" "${pgi.password}"\n`)
  fs.writeFileSync(join(dir, 'p.ini'), `[databases]\nbench = host=127.0.0.1 port=${pgi.port} dbname=postgres user=${pgi.user} password=${pgi.password}\n[pgbouncer]\nlisten_addr=127.0.0.1\nlisten_port=${port}\nunix_socket_dir=\nauth_type=trust\nauth_file=${join(dir, 'ul.txt')}\npool_mode=transaction\ndefault_pool_size=20\nmax_client_conn=2000\nlogfile=\npidfile=\n`)
  for (const which of values.only !== undefined ? [values.only] : ['direct', 'relay', 'tidepool', 'pgbouncer']) {
    if (which === 'direct') {
      const r = await runPgbench({ port: pgi.port, user: pgi.user, password: pgi.password, db: 'postgres', args: ['-S', '-n', '-M', values.mode, '-c', String(clients), '-j', '2', '-t', String(perClient)] })
      console.log(`${which.padEnd(9)} tps ${Math.round(r.tps ?? 0)}`)
      continue
    }
    const child = which === 'tidepool'
      ? spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '..', '..', 'main.ts'), join(dir, 'p.ini')], { stdio: ['ignore', 'ignore', 'ignore'] })
      : which === 'relay'
        ? spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'relay.ts'), String(port), String(pgi.port)], { stdio: ['ignore', 'ignore', 'ignore'] })
        : spawn('/usr/sbin/pgbouncer', ['-u', 'postgres', join(dir, 'p.ini')], { stdio: 'ignore' })
    // The relay reaches PostgreSQL as it is: its database name and a password.
    const via = which === 'relay' ? { port, user: pgi.user, password: pgi.password, db: 'postgres' } : { port, user: pgi.user, db: 'bench' }
    const stat = () => {
      const f = fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ')
      return { userMs: Number(f[11]) * 10, sysMs: Number(f[12]) * 10 }
    }
    try {
      await waitFor(async () => (await runPgbench({ ...via, args: ['-S', '-n', '-c', '1', '-t', '1'] })).code === 0, { timeoutMs: 20_000, intervalMs: 200, what: `${which} to accept` })
      await runPgbench({ ...via, args: ['-S', '-n', '-M', values.mode, '-c', String(clients), '-j', '2', '-t', '100'] })
      const a = stat()
      const r = await runPgbench({ ...via, args: ['-S', '-n', '-M', values.mode, '-c', String(clients), '-j', '2', '-t', String(perClient)] })
      const b = stat()
      const tx = clients * perClient
      const us = (ms: number) => ((ms * 1000) / tx).toFixed(1)
      if (r.code !== 0) {
        // PgBouncer 1.18 in transaction mode cannot run -M prepared: its figures would be of aborted clients.
        console.log(`${which.padEnd(9)} failed: ${r.stderr.split('\n').find((l) => l.includes('error')) ?? `pgbench exit ${r.code}`}`)
        continue
      }
      console.log(`${which.padEnd(9)} tps ${Math.round(r.tps ?? 0)}  user ${us(b.userMs - a.userMs)} µs/tx  kernel ${us(b.sysMs - a.sysMs)} µs/tx  total ${us(b.userMs - a.userMs + b.sysMs - a.sysMs)} µs/tx`)
    } finally {
      // The next proxy listens on the same port: wait until this one has let go of it.
      const gone = new Promise((res) => child.once('exit', res))
      child.kill('SIGKILL')
      await gone
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
  await pgi.stop()
}
