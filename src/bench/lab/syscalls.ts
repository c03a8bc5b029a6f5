// Counts the pooler's system calls per transaction (strace -c), tidepool beside PgBouncer:
//   npx tsx src/bench/lab/syscalls.ts [--transactions 500] [--mode simple|extended|churn]
// --mode churn: pgbench -C, a login per transaction, so the figures are per connection; failed calls
// (strace's errors column) are printed too, since a setsockopt that fails on every accept costs a syscall each.
// CPU per transaction is mostly kernel time on loopback; this says whether tidepool makes more
// calls per transaction than PgBouncer (extra writes, reads, epoll changes) rather than costlier ones.
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { parseArgs } from 'node:util'
import { startPostgres } from '../../../test/harness/postgres.ts'
import { freePort } from '../../../test/harness/ports.ts'
import { runPgbench, waitFor } from '../../../test/harness/clients.ts'
import { poolerIni, spawnTidepool } from './launch.ts'

const { values } = parseArgs({ options: { transactions: { type: 'string', default: '500' }, mode: { type: 'string', default: 'simple' }, clients: { type: 'string', default: '50' } } })
const pgi = await startPostgres({ maxConnections: 300 })
const dir = fs.mkdtempSync(join(os.tmpdir(), 'tp-sys-'))
fs.chmodSync(dir, 0o755)
try {
  await runPgbench({ port: pgi.port, user: pgi.user, password: pgi.password, db: 'postgres', args: ['-i', '-s', '2', '-q'] })
  for (const which of ['tidepool', 'pgbouncer']) {
    const port = await freePort()
    const ini = poolerIni(dir, pgi, port)
    const child = which === 'tidepool' ? spawnTidepool(ini, [], { stdio: 'ignore' }) : spawn('/usr/sbin/pgbouncer', ['-u', 'postgres', ini], { stdio: 'ignore' })
    const via = { port, user: pgi.user, db: 'bench' }
    try {
      await waitFor(async () => (await runPgbench({ ...via, args: ['-S', '-n', '-c', '1', '-t', '1'] })).code === 0, { timeoutMs: 20_000, intervalMs: 200, what: `${which} to accept` })
      const how = values.mode === 'churn' ? ['-C'] : ['-M', values.mode as string]
      await runPgbench({ ...via, args: ['-S', '-n', ...how, '-c', values.clients as string, '-j', '2', '-t', '50'] })
      const out = join(dir, `${which}.strace`)
      const tracer = spawn('strace', ['-c', '-f', '-o', out, '-p', String(child.pid)], { stdio: 'ignore' })
      await new Promise((r) => setTimeout(r, 500))
      const r = await runPgbench({ ...via, args: ['-S', '-n', ...how, '-c', values.clients as string, '-j', '2', '-t', values.transactions as string] })
      const done = new Promise((res) => tracer.once('exit', res))
      tracer.kill('SIGINT')
      await done
      const tx = Number(values.clients) * Number(values.transactions)
      console.log(`${which}: ${tx} transactions, pgbench exit ${r.code}`)
      for (const line of fs.readFileSync(out, 'utf8').split('\n')) {
        const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+\s+)?(\w+)$/.exec(line)
        const errors = m?.[2] === undefined ? '' : `, ${(Number(m[2]) / tx).toFixed(2)} failed`
        if (m !== null && Number(m[1]) / tx >= 0.01) console.log(`  ${m[3].padEnd(16)} ${(Number(m[1]) / tx).toFixed(2)} per tx${errors}`)
      }
    } finally {
      const gone = new Promise((res) => child.once('exit', res))
      child.kill('SIGKILL')
      await gone
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
  await pgi.stop()
}
