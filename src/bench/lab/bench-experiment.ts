// The direct-versus-pooled demonstration of docs/bench.md, on this machine: an embedded PostgreSQL
// with max_connections raised, a tidepool (child process) in front of it with transaction pooling
// and a pool of 20, then the three commands a user would type: bench init, bench run with both
// targets, bench report.
//
//   npx tsx src/bench/lab/bench-experiment.ts [--workload flights] [--workers 4] [--connections 64]
//                                     [--duration 60] [--pool-size 20] [--out docs/bench-results]
//
// Invariants: PostgreSQL and tidepool are stopped on every exit path (and die with us on SIGKILL:
// the postmaster through the harness, tidepool through its parent-death signal).

import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { startPostgres, TEST_USERS, type PgInstance } from '../../../test/harness/postgres.ts'
import { freePort } from '../../../test/harness/ports.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const { values: v } = parseArgs({
  options: {
    workload: { type: 'string', default: 'flights' },
    workers: { type: 'string', default: '4' },
    connections: { type: 'string', default: '64' },
    duration: { type: 'string', default: '60' },
    'pool-size': { type: 'string', default: '20' },
    out: { type: 'string', default: join(root, 'src', 'bench', 'lab', 'results', 'bench-experiment') },
    seed: { type: 'string', default: '20240601' },
  },
})

function run(args: string[]): Promise<number> {
  process.stderr.write(`\n$ tidepool ${args.join(' ')}\n`)
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src', 'main.ts'), ...args], { cwd: root, stdio: 'inherit' })
  return new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 1)))
}

async function startTidepool(pgi: PgInstance, dir: string, poolSize: number): Promise<{ proc: ChildProcess; port: number }> {
  const port = await freePort()
  const { scram } = TEST_USERS
  fs.writeFileSync(join(dir, 'userlist.txt'), `"${scram.user}" "${scram.password}"\n`)
  fs.writeFileSync(join(dir, 'tidepool.ini'), [
    '[databases]', `app = host=127.0.0.1 port=${pgi.port} dbname=app`, '',
    '[pgbouncer]', 'listen_addr = 127.0.0.1', `listen_port = ${port}`, 'unix_socket_dir =',
    'auth_type = scram-sha-256', 'auth_file = userlist.txt', 'pool_mode = transaction',
    `default_pool_size = ${poolSize}`, 'max_client_conn = 2000', `admin_users = ${scram.user}`, '',
  ].join('\n'))
  // A raised descriptor limit for hundreds of clients; the parent-death signal so it dies with us.
  const proc = spawn('bash', ['-c', 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec setpriv --pdeathsig KILL "$@"', 'bash',
    process.execPath, '--import', 'tsx', join(root, 'src', 'main.ts'), '-q', join(dir, 'tidepool.ini')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })
  for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = new net.Socket()
      s.once('connect', () => { s.destroy(); resolve(true) }).once('error', () => resolve(false)).connect(port, '127.0.0.1')
    })
    if (ok) return { proc, port }
    if (proc.exitCode !== null) break
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error('tidepool did not start')
}

async function main(): Promise<number> {
  const connections = Number(v.connections) * Number(v.workers)
  process.stderr.write(`starting PostgreSQL (max_connections ${connections + 50}) ...\n`)
  const pgi = await startPostgres({ maxConnections: connections + 50 })
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-bench-experiment-'))
  fs.chmodSync(dir, 0o755)
  let tp: ChildProcess | null = null
  try {
    const started = await startTidepool(pgi, dir, Number(v['pool-size']))
    tp = started.proc
    const { scram } = TEST_USERS
    const direct = `postgres://${scram.user}:${scram.password}@127.0.0.1:${pgi.port}/app`
    const pooled = `postgres://${scram.user}:${scram.password}@127.0.0.1:${started.port}/app`
    const monitor = pgi.url('app')
    if (await run(['bench', 'init', v.workload!, '--url', direct]) !== 0) return 1
    const code = await run(['bench', 'run', v.workload!, '--target', `direct=${direct}`, '--target', `pooled=${pooled}`,
      '--workers', v.workers!, '--connections', v.connections!, '--duration', v.duration!, '--seed', v.seed!,
      '--monitor', monitor, '--pg-pid', pgi.dataDir, '--out', v.out!])
    if (code !== 0) return code
    return await run(['bench', 'report', v.out!])
  } finally {
    if (tp !== null && tp.exitCode === null) tp.kill('SIGKILL')
    await pgi.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().then((code) => { process.exitCode = code }, (err: unknown) => {
  process.stderr.write(`bench-experiment: ${(err as Error).message}\n`)
  process.exitCode = 1
})
