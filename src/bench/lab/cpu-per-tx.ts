// CPU time of the pooler process per transaction, tidepool, PgBouncer and a bare Node.js relay in one run:
//   npx tsx src/bench/lab/cpu-per-tx.ts [--transactions 2000] [--clients 50] [--pool 20] [--repeat 3]
//     [--only direct,relay,tidepool,pgbouncer] [--mode simple|extended|prepared] [--relay onread|data]
//     [--compare label=/path/to/other/dist/main.js ...] [--auth trust|scram-sha-256]
// The poolers get the same ini (transaction pooling, pool of 20); the relay (relay.ts beside it) passes
// bytes 1:1 and marks the floor of a Node.js proxy; direct gives PostgreSQL's own tps for the ratio.
// tidepool is this checkout's compiled build (dist/, as production runs it); --compare adds other
// builds (e.g. main's) to the same run, for a before/after. pgbench -S runs a warm-up, then a fixed
// number of transactions per client while the proxy's utime and stime are read from /proc/<pid>/stat.
// The runs are interleaved --repeat times and the medians printed last. Noisy on a shared machine:
// compare figures from one run only.
// --mode churn: pgbench -S -C, a new connection (and login) for every transaction, so the figures
// are CPU per login; --auth scram-sha-256 makes each login a SCRAM exchange against the verifier
// PostgreSQL stores for the user (pg_authid), as a deployment's userlist holds it (a plain password
// would make PgBouncer run PBKDF2 per login); the relay is left out.
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { spawn, type ChildProcess } from 'node:child_process'
import { parseArgs } from 'node:util'
import { startPostgres } from '../../../test/harness/postgres.ts'
import { freePort } from '../../../test/harness/ports.ts'
import { runPgbench, runPsql, waitFor } from '../../../test/harness/clients.ts'
import { poolerIni, spawnTidepool } from './launch.ts'

const { values } = parseArgs({
  options: {
    transactions: { type: 'string', default: '2000' }, clients: { type: 'string', default: '50' }, pool: { type: 'string', default: '20' },
    repeat: { type: 'string', default: '1' }, only: { type: 'string' }, mode: { type: 'string', default: 'simple' },
    relay: { type: 'string', default: 'onread' }, auth: { type: 'string', default: 'trust' }, compare: { type: 'string', multiple: true, default: [] },
  },
})
const perClient = Number(values.transactions)
const clients = Number(values.clients)
const mode = values.mode as string
const isChurn = mode === 'churn'
const authType = values.auth as string
const builds = new Map<string, string | undefined>([['tidepool', undefined]])
for (const c of values.compare as string[]) {
  const [label, path] = c.split('=')
  builds.set(label, path)
}
const names = values.only !== undefined ? values.only.split(',') : [...(isChurn ? [] : ['direct', 'relay']), ...builds.keys(), 'pgbouncer']
const results = new Map<string, Array<{ tps: number; user: number; sys: number }>>()
const pgi = await startPostgres({ maxConnections: 300 })
const dir = fs.mkdtempSync(join(os.tmpdir(), 'tp-cpu-'))
fs.chmodSync(dir, 0o755)
try {
  await runPgbench({ port: pgi.port, user: pgi.user, password: pgi.password, db: 'postgres', args: ['-i', '-s', '2', '-q'] })
  const verifier = authType === 'trust' ? pgi.password : (await runPsql({ port: pgi.port, user: pgi.user, password: pgi.password, db: 'postgres', sql: 'SELECT rolpassword FROM pg_authid WHERE rolname = current_user' })).stdout.trim()
  if (!verifier.startsWith('SCRAM-SHA-256$') && authType !== 'trust') throw new Error(`no SCRAM verifier for ${pgi.user}: ${verifier}`)
  const load = ['-S', '-n', ...(isChurn ? ['-C'] : ['-M', mode]), '-c', String(clients), '-j', '2']
  for (let rep = 0; rep < Number(values.repeat); rep++) {
    for (const which of names) {
      if (which === 'direct') {
        const r = await runPgbench({ port: pgi.port, user: pgi.user, password: pgi.password, db: 'postgres', args: [...load, '-t', String(perClient)] })
        console.log(`${which.padEnd(9)} tps ${Math.round(r.tps ?? 0)}`)
        results.set(which, [...(results.get(which) ?? []), { tps: r.tps ?? 0, user: 0, sys: 0 }])
        continue
      }
      const port = await freePort()
      const ini = poolerIni(dir, pgi, port, Number(values.pool), authType, verifier)
      const child: ChildProcess = builds.has(which)
        ? spawnTidepool(ini, [], { stdio: 'ignore' }, builds.get(which))
        : which === 'relay'
          ? spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'relay.ts'), String(port), String(pgi.port), values.relay as string], { stdio: 'ignore' })
          : spawn('/usr/sbin/pgbouncer', ['-u', 'postgres', ini], { stdio: 'ignore' })
      // The relay reaches PostgreSQL as it is: its database name and a password.
      const via = which === 'relay' ? { port, user: pgi.user, password: pgi.password, db: 'postgres' } : { port, user: pgi.user, password: pgi.password, db: 'bench' }
      const stat = (): { userMs: number; sysMs: number } => {
        const f = fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ')
        return { userMs: Number(f[11]) * 10, sysMs: Number(f[12]) * 10 }
      }
      try {
        await waitFor(async () => (await runPgbench({ ...via, args: ['-S', '-n', '-c', '1', '-t', '1'] })).code === 0, { timeoutMs: 20_000, intervalMs: 200, what: `${which} to accept` })
        await runPgbench({ ...via, args: [...load, '-t', '100'] })
        const a = stat()
        const r = await runPgbench({ ...via, args: [...load, '-t', String(perClient)] })
        const b = stat()
        if (r.code !== 0) {
          // PgBouncer 1.18 in transaction mode cannot run -M prepared: its figures would be of aborted clients.
          console.log(`${which.padEnd(9)} failed: ${r.stderr.split('\n').find((l) => l.includes('error')) ?? `pgbench exit ${r.code}`}`)
          continue
        }
        const tx = clients * perClient
        const row = { tps: r.tps ?? 0, user: ((b.userMs - a.userMs) * 1000) / tx, sys: ((b.sysMs - a.sysMs) * 1000) / tx }
        results.set(which, [...(results.get(which) ?? []), row])
        console.log(`${which.padEnd(9)} ${line(row)}`)
      } finally {
        // The next proxy may get the same port: wait until this one has let go of it.
        const gone = new Promise((res) => child.once('exit', res))
        child.kill('SIGKILL')
        await gone
      }
    }
  }
  if (Number(values.repeat) > 1) {
    console.log(`\nmedians of ${values.repeat} interleaved runs (pgbench -S ${isChurn ? `-C, ${authType}` : `-M ${mode}`}, ${clients} clients, pool ${values.pool}, ${perClient} tx per client):`)
    for (const [which, rows] of results) {
      const med = (k: 'tps' | 'user' | 'sys'): number => rows.map((r) => r[k]).sort((x, y) => x - y)[Math.floor(rows.length / 2)]
      console.log(`${which.padEnd(9)} ${which === 'direct' ? `tps ${Math.round(med('tps'))}` : line({ tps: med('tps'), user: med('user'), sys: med('sys') })}`)
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
  await pgi.stop()
}

function line(r: { tps: number; user: number; sys: number }): string {
  return `tps ${Math.round(r.tps)}  user ${r.user.toFixed(1)} µs/tx  kernel ${r.sys.toFixed(1)} µs/tx  total ${(r.user + r.sys).toFixed(1)} µs/tx`
}
