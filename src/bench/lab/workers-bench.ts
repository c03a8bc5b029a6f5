// tidepool with workers = 1 and workers = N beside PgBouncer, in one run: tps and CPU µs per
// transaction of every pooler process together (tidepool's primary and its workers summed), for
// pgbench select-only simple and extended (50 clients), fan-in (1000 clients onto the pool) and
// churn (-C: a new connection per transaction). Each worker's share of the CPU is printed too, so
// an uneven spread of connections between workers shows.
//   npx tsx src/bench/lab/workers-bench.ts [--repeat 3] [--targets pgbouncer,w1,w2,w2-shared,w2-reuseport]
//     [--scenarios select-simple,select-extended,fanin,churn] [--node /path/to/node] [--scale 1]
// wN runs N workers with the listen mode this Node chooses; wN-rr, wN-shared and wN-reuseport force
// one (TIDEPOOL_WORKER_LISTEN). --node runs tidepool's compiled build under another Node (reuseport
// needs 22.12+). Runs are interleaved --repeat times, medians printed last. The machine is shared:
// compare figures from one run only.
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { spawn, type ChildProcess } from 'node:child_process'
import { parseArgs } from 'node:util'
import { startPostgres } from '../../../test/harness/postgres.ts'
import { freePort } from '../../../test/harness/ports.ts'
import { runCommand, parseTps, waitFor } from '../../../test/harness/clients.ts'
import { poolerIni } from './launch.ts'

const { values } = parseArgs({
  options: {
    repeat: { type: 'string', default: '1' },
    targets: { type: 'string', default: 'pgbouncer,w1,w2' },
    scenarios: { type: 'string', default: 'select-simple,select-extended,fanin,churn' },
    node: { type: 'string', default: process.execPath },
    scale: { type: 'string', default: '1' },
  },
})
const scale = Number(values.scale)
const SCENARIOS: Record<string, { args: string[]; clients: number; perClient: number }> = {
  'select-simple': { args: ['-S', '-M', 'simple', '-j', '2'], clients: 50, perClient: Math.round(1000 * scale) },
  'select-extended': { args: ['-S', '-M', 'extended', '-j', '2'], clients: 50, perClient: Math.round(1000 * scale) },
  fanin: { args: ['-S', '-j', '2'], clients: 1000, perClient: Math.round(50 * scale) },
  churn: { args: ['-S', '-C', '-j', '2'], clients: 20, perClient: Math.round(150 * scale) },
}
const compiled = join(import.meta.dirname, '..', '..', '..', 'dist', 'main.js')
if (!fs.existsSync(compiled)) throw new Error('run `npm run build` first: the bench measures the compiled build')

interface Row { tps: number; usPerTx: number; workerShares: number[] }
const results = new Map<string, Row[]>()

/** utime + stime (ms) of a process and its children (the workers), by pid. */
function cpuOfTree(root: number): Map<number, number> {
  const out = new Map<number, number>()
  const all = new Map<number, { ppid: number; ms: number }>()
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const f = fs.readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')
      all.set(Number(d), { ppid: Number(f[1]), ms: (Number(f[11]) + Number(f[12])) * 10 })
    } catch {
      // gone meanwhile
    }
  }
  for (const [pid, p] of all) if (pid === root || p.ppid === root) out.set(pid, p.ms)
  return out
}

function pgbench(port: number, user: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // 1000 clients need more than the usual 1024 descriptors.
  return runCommand('bash', ['-c', 'ulimit -n 20000 2>/dev/null; exec "$@"', 'bash', 'pgbench', '-h', '127.0.0.1', '-p', String(port), '-U', user, ...args, 'bench'], { PATH: process.env.PATH ?? '' }, 600_000)
}

const pgi = await startPostgres({ maxConnections: 300 })
const dir = fs.mkdtempSync(join(os.tmpdir(), 'tp-workers-'))
fs.chmodSync(dir, 0o755)
const nodeVersion = (await runCommand(values.node as string, ['--version'], process.env, 10_000)).stdout.trim()
try {
  await runCommand('pgbench', ['-h', '127.0.0.1', '-p', String(pgi.port), '-U', pgi.user, '-i', '-s', '2', '-q', 'postgres'], { PATH: process.env.PATH ?? '', PGPASSWORD: pgi.password }, 120_000)
  console.log(`node ${nodeVersion}, ${os.cpus().length} cores, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`)
  for (let rep = 0; rep < Number(values.repeat); rep++) {
    for (const scenario of (values.scenarios as string).split(',')) {
      const sc = SCENARIOS[scenario]
      for (const target of (values.targets as string).split(',')) {
        const port = await freePort()
        const ini = poolerIni(dir, pgi, port, 20)
        let child: ChildProcess
        if (target === 'pgbouncer') {
          child = spawn('bash', ['-c', 'ulimit -n 20000 2>/dev/null; exec /usr/sbin/pgbouncer -u postgres "$1"', 'bash', ini], { stdio: 'ignore' })
        } else {
          const m = /^w(\d+)(?:-(rr|shared|reuseport))?$/.exec(target)
          if (m === null) throw new Error(`unknown target ${target}`)
          fs.appendFileSync(ini, `[tidepool]\nworkers = ${m[1]}\n`)
          const env = { ...process.env, ...(m[2] !== undefined ? { TIDEPOOL_WORKER_LISTEN: m[2] } : {}) }
          child = spawn('bash', ['-c', 'ulimit -n 20000 2>/dev/null; exec "$@"', 'bash', values.node as string, compiled, ini], { stdio: 'ignore', env })
        }
        try {
          await waitFor(async () => (await pgbench(port, pgi.user, ['-S', '-n', '-c', '1', '-t', '1'])).code === 0, { timeoutMs: 30_000, intervalMs: 200, what: `${target} to accept` })
          await pgbench(port, pgi.user, [...sc.args, '-n', '-c', String(Math.min(sc.clients, 50)), '-t', '50'])
          const pid = child.pid as number
          const a = cpuOfTree(pid)
          const r = await pgbench(port, pgi.user, [...sc.args, '-n', '-c', String(sc.clients), '-t', String(sc.perClient)])
          const b = cpuOfTree(pid)
          if (r.code !== 0) {
            console.log(`${scenario.padEnd(16)} ${target.padEnd(14)} failed: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`)
            continue
          }
          const tx = sc.clients * sc.perClient
          const per = [...b].map(([p, ms]) => ({ pid: p, ms: ms - (a.get(p) ?? 0) }))
          const total = per.reduce((s, x) => s + x.ms, 0)
          // The root is the primary with workers (or the one process): its share first, then each worker's.
          const shares = per.filter((x) => x.pid !== pid).map((x) => x.ms / Math.max(1, total))
          const row: Row = { tps: parseTps(r.stdout) ?? 0, usPerTx: (total * 1000) / tx, workerShares: shares }
          results.set(`${scenario}|${target}`, [...(results.get(`${scenario}|${target}`) ?? []), row])
          console.log(`${scenario.padEnd(16)} ${target.padEnd(14)} ${fmt(row)}`)
        } finally {
          const gone = new Promise((res) => child.once('exit', res))
          child.kill('SIGTERM')
          setTimeout(() => child.kill('SIGKILL'), 5000).unref()
          await gone
          // Workers die with their primary's channel; give the port a moment to be free again.
          await new Promise((res) => setTimeout(res, 300))
        }
      }
    }
  }
  console.log(`\nmedians of ${values.repeat} interleaved runs; node ${nodeVersion}; µs of CPU per transaction, all pooler processes:`)
  for (const [key, rows] of results) {
    const [scenario, target] = key.split('|')
    const med = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)]
    console.log(`${scenario.padEnd(16)} ${target.padEnd(14)} tps ${Math.round(med(rows.map((r) => r.tps)))}  cpu ${med(rows.map((r) => r.usPerTx)).toFixed(1)} µs/tx`)
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
  await pgi.stop()
}

function fmt(r: Row): string {
  const shares = r.workerShares.length > 1 ? `  worker shares ${r.workerShares.map((s) => `${Math.round(s * 100)}%`).join('/')}` : ''
  return `tps ${Math.round(r.tps)}  cpu ${r.usPerTx.toFixed(1)} µs/tx${shares}`
}
