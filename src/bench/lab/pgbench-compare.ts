// Throughput of tidepool against PgBouncer and against PostgreSQL direct, measured by pgbench in
// one run on one machine, so the ratios compare like with like.
//
//   npx tsx src/bench/lab/pgbench-compare.ts [--duration 15] [--only select-simple,fanin]
//                                    [--targets direct,pgbouncer,tidepool] [--scale 10]
//
// One PostgreSQL (test/harness/postgres.ts), PgBouncer (the Debian binary, as user postgres) and
// tidepool (a child process) get the same pgbouncer.ini keys: transaction pooling, 20 server
// connections, trust for clients. Each scenario runs against each target for the same duration;
// the table shows tps, the ratios and the average latency; the JSON lands in src/bench/lab/results/.
// A target that fails to start is reported and skipped; the others still run.
// Invariants: every process we start is stopped on exit, on Ctrl-C and on failure (and dies with
// us even on SIGKILL, through its parent-death signal).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { startPostgres, type PgInstance } from '../../../test/harness/postgres.ts'
import { freePort } from '../../../test/harness/ports.ts'
import { hasBinary, parseTps, runCommand, runPsql, type RunResult } from '../../../test/harness/clients.ts'
import { tidepoolEntry } from './launch.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const PGBOUNCER = '/usr/sbin/pgbouncer'
// pgbench with 1000 clients and a pooler serving them need more than the usual 1024 descriptors.
// The hard limit caps what a process may ask for, so fall back to it where 65536 is refused.
const RAISE_FD_LIMIT = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"'

type Target = 'direct' | 'pgbouncer' | 'tidepool'
const TARGETS: readonly Target[] = ['direct', 'pgbouncer', 'tidepool']

interface Scenario { name: string; args: string[]; doc: string }
const SCENARIOS: readonly Scenario[] = [
  { name: 'select-simple', args: ['-S', '-M', 'simple', '-c', '50', '-j', '2'], doc: 'read-only, simple protocol, 50 clients' },
  { name: 'select-extended', args: ['-S', '-M', 'extended', '-c', '50', '-j', '2'], doc: 'read-only, extended protocol, 50 clients' },
  { name: 'select-prepared', args: ['-S', '-M', 'prepared', '-c', '50', '-j', '2'], doc: 'read-only, named prepared statements, 50 clients' },
  { name: 'tpcb', args: ['-c', '20', '-j', '2'], doc: 'TPC-B-like writes, 20 clients' },
  { name: 'fanin', args: ['-S', '-c', '1000', '-j', '2'], doc: '1000 clients onto 20 server connections' },
  { name: 'churn', args: ['-S', '-C', '-c', '20', '-j', '2'], doc: 'a new connection per transaction' },
]

interface Endpoint { port: number; db: string }

interface RunRecord {
  scenario: string
  target: Target
  code: number | null
  tps: number | null
  latencyMs: number | null
  transactions: number | null
  failedTransactions: number | null
  error: string | null
}

// --- child processes ----------------------------------------------------------------------------

interface Service {
  name: string
  child: ChildProcess
  /** the last lines it wrote, for the report when it fails */
  tail(): string
  exited: Promise<number | null>
  stop(): Promise<void>
}

const services = new Set<Service>()
const transient = new Set<ChildProcess>()
const tempDirs = new Set<string>()

// Quick on purpose: under `npx tsx`, the CLI SIGKILLs us about 60 ms after relaying a Ctrl-C.
function killEverythingSync(): void {
  for (const s of services) { try { s.child.kill('SIGKILL') } catch { /* gone */ } }
  for (const c of transient) { try { c.kill('SIGKILL') } catch { /* gone */ } }
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true })
}
process.on('exit', killEverythingSync)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\n${signal}: stopping everything\n`)
    process.exit(130)
  })
}

// Spawns `setpriv --pdeathsig <deathSignal> ...setprivArgs` under a raised fd limit, keeping the
// last lines of output. setprivArgs hold any user switch, then `--` and the command: the switch
// must happen in the same setpriv, since changing uid clears a parent-death signal set before.
function startService(name: string, setprivArgs: string[], stopSignal: NodeJS.Signals, deathSignal: NodeJS.Signals, env?: NodeJS.ProcessEnv): Service {
  const child = spawn('bash', ['-c', `${RAISE_FD_LIMIT}; exec setpriv --pdeathsig ${deathSignal.replace('SIG', '')} "$@"`, 'bash', ...setprivArgs], {
    cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env,
  })
  const lines: string[] = []
  const onData = (b: Buffer): void => {
    lines.push(...b.toString('utf8').split('\n').filter((l) => l !== ''))
    if (lines.length > 400) lines.splice(0, lines.length - 200)
  }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const service: Service = {
    name,
    child,
    tail: () => lines.slice(-40).join('\n'),
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(stopSignal)
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
        await exited
        clearTimeout(timer)
      }
      services.delete(service)
    },
  }
  services.add(service)
  return service
}

async function waitAccepting(service: Service, port: number, db: string, user: string, password: string): Promise<string | null> {
  const deadline = Date.now() + 30_000
  let last = ''
  let gone = false
  void service.exited.then(() => { gone = true })
  while (Date.now() < deadline && !gone) {
    const r = await runPsql({ port, user, password, db, sql: 'SELECT 1', timeoutMs: 5_000 })
    if (r.code === 0 && r.stdout.trim() === '1') return null
    last = r.stderr.trim()
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return gone
    ? `${service.name} exited (code ${service.child.exitCode}) before accepting connections:\n${service.tail()}`
    : `${service.name} did not accept connections within 30 s (last psql error: ${last}):\n${service.tail()}`
}

// --- config -------------------------------------------------------------------------------------

function poolerIni(pgi: PgInstance, listenPort: number, userlist: string): string {
  return [
    '[databases]',
    `bench = host=127.0.0.1 port=${pgi.port} dbname=postgres user=${pgi.user} password=${pgi.password}`,
    '',
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${listenPort}`,
    'unix_socket_dir =',
    'auth_type = trust',
    // PgBouncer's trust still wants the user listed in auth_file.
    `auth_file = ${userlist}`,
    'pool_mode = transaction',
    'default_pool_size = 20',
    'max_client_conn = 2000',
    '',
  ].join('\n')
}

// --- pgbench ------------------------------------------------------------------------------------

function parseFloatLine(stdout: string, re: RegExp): number | null {
  const m = re.exec(stdout)
  return m ? Number.parseFloat(m[1]!) : null
}

async function pgbench(ep: Endpoint, pgi: PgInstance, args: string[], timeoutMs: number): Promise<RunResult> {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '', PGPASSWORD: pgi.password, PGCONNECT_TIMEOUT: '30' }
  const argv = ['-c', `${RAISE_FD_LIMIT}; exec "$@"`, 'bash', 'pgbench', '-h', '127.0.0.1', '-p', String(ep.port), '-U', pgi.user, ...args, ep.db]
  return runCommand('bash', argv, env, timeoutMs, (child) => {
    transient.add(child)
    child.once('exit', () => transient.delete(child))
  })
}

async function runScenario(s: Scenario, target: Target, ep: Endpoint, pgi: PgInstance, durationS: number): Promise<RunRecord> {
  // What pgbench's own pre-run vacuum does, once and outside the pooler, so every run starts alike.
  await pgi.query('VACUUM pgbench_branches, pgbench_tellers')
  await pgi.query('TRUNCATE pgbench_history')
  const r = await pgbench(ep, pgi, [...s.args, '-n', '-T', String(durationS)], (durationS + 90) * 1000)
  const tps = parseTps(r.stdout)
  const transactions = parseFloatLine(r.stdout, /^number of transactions actually processed: (\d+)/m)
  let error: string | null = null
  if (r.code !== 0) error = r.stderr.trim().split('\n').slice(-8).join('\n') || `pgbench exited ${r.code}`
  // pgbench's clock runs while it connects: 1000 scram logins can use up a short --duration.
  else if (tps === null) error = `no transactions completed in ${durationS} s (${transactions ?? '?'} processed); connecting took the whole run?`
  return {
    scenario: s.name,
    target,
    code: r.code,
    tps,
    latencyMs: parseFloatLine(r.stdout, /^latency average = ([0-9.]+) ms/m),
    transactions,
    failedTransactions: parseFloatLine(r.stdout, /^number of failed transactions: (\d+)/m),
    error,
  }
}

// --- report -------------------------------------------------------------------------------------

function fmt(n: number | null, digits = 0): string {
  return n === null ? '-' : n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function ratio(a: number | null, b: number | null): string {
  return a === null || b === null || b === 0 ? '-' : (a / b).toFixed(2)
}

function printTable(records: RunRecord[], scenarios: readonly Scenario[]): void {
  const get = (s: string, t: Target): RunRecord | undefined => records.find((r) => r.scenario === s && r.target === t)
  const header = ['scenario', 'direct tps', 'pgbouncer tps', 'tidepool tps', 'tp/pgb', 'tp/direct', 'lat ms direct', 'lat ms pgb', 'lat ms tp']
  const rows = scenarios.map((s) => {
    const [d, b, t] = TARGETS.map((x) => get(s.name, x))
    return [s.name, fmt(d?.tps ?? null), fmt(b?.tps ?? null), fmt(t?.tps ?? null),
      ratio(t?.tps ?? null, b?.tps ?? null), ratio(t?.tps ?? null, d?.tps ?? null),
      fmt(d?.latencyMs ?? null, 3), fmt(b?.latencyMs ?? null, 3), fmt(t?.latencyMs ?? null, 3)]
  })
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  console.log('\n' + line(header))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const r of rows) console.log(line(r))
  for (const r of records) if (r.error !== null) console.log(`\n${r.scenario} via ${r.target} failed:\n  ${r.error.replaceAll('\n', '\n  ')}`)
}

// --- main ---------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '15' },
      only: { type: 'string' },
      targets: { type: 'string', default: TARGETS.join(',') },
      scale: { type: 'string', default: '10' },
    },
  })
  const durationS = Number(values.duration)
  const scale = Number(values.scale)
  if (!Number.isInteger(durationS) || durationS < 1 || !Number.isInteger(scale) || scale < 1) {
    console.error('--duration and --scale take positive whole numbers')
    return 2
  }
  const only = values.only?.split(',').map((s) => s.trim()).filter((s) => s !== '')
  const unknown = only?.filter((n) => !SCENARIOS.some((s) => s.name === n)) ?? []
  const targets = values.targets.split(',').map((s) => s.trim()) as Target[]
  const badTargets = targets.filter((t) => !TARGETS.includes(t))
  if (unknown.length > 0 || badTargets.length > 0) {
    console.error(`unknown: ${[...unknown, ...badTargets].join(', ')}; scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}; targets: ${TARGETS.join(', ')}`)
    return 2
  }
  const scenarios = SCENARIOS.filter((s) => only === undefined || only.includes(s.name))
  if (!hasBinary('pgbench') || !hasBinary('psql')) {
    console.error('pgbench and psql are needed (apt-get install postgresql-client)')
    return 1
  }

  const startedAt = new Date()
  console.log(`starting PostgreSQL (max_connections 1100) ...`)
  const pgi = await startPostgres({ maxConnections: 1100, settings: { shared_buffers: '256MB', max_wal_size: '4GB' } })
  const workDir = mkdtempSync(join(tmpdir(), 'tidepool-bench-'))
  tempDirs.add(workDir)
  try {
    const [versionRow] = await pgi.query('SHOW server_version')
    console.log(`PostgreSQL ${versionRow.server_version} on port ${pgi.port}; pgbench -i -s ${scale} ...`)
    const init = await pgbench({ port: pgi.port, db: 'postgres' }, pgi, ['-i', '-s', String(scale), '-q'], 600_000)
    if (init.code !== 0) throw new Error(`pgbench -i failed:\n${init.stderr}`)

    // Readable by the postgres user, which PgBouncer runs as.
    const userlist = join(workDir, 'userlist.txt')
    writeFileSync(userlist, `"${pgi.user}" "${pgi.password}"\n`)
    const endpoints = new Map<Target, Endpoint>()
    const startErrors: Record<string, string> = {}
    const versions: Record<string, string> = { postgres: versionRow.server_version }
    if (targets.includes('direct')) endpoints.set('direct', { port: pgi.port, db: 'postgres' })

    if (targets.includes('pgbouncer')) {
      if (!hasBinary(PGBOUNCER)) {
        startErrors.pgbouncer = `${PGBOUNCER} not found (apt-get install pgbouncer)`
      } else {
        const port = await freePort()
        const ini = join(workDir, 'pgbouncer.ini')
        writeFileSync(ini, poolerIni(pgi, port, userlist))
        chownPostgres(workDir, [ini, userlist])
        const v = await runCommand(PGBOUNCER, ['--version'], process.env, 5_000)
        versions.pgbouncer = v.stdout.split('\n')[0] ?? ''
        console.log(`starting ${versions.pgbouncer} on port ${port} ...`)
        // PgBouncer refuses root, so it runs as postgres.
        const svc = startService('pgbouncer', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', PGBOUNCER, ini], 'SIGTERM', 'SIGTERM')
        const err = await waitAccepting(svc, port, 'bench', pgi.user, pgi.password)
        if (err === null) endpoints.set('pgbouncer', { port, db: 'bench' })
        else { startErrors.pgbouncer = err; await svc.stop() }
      }
    }

    if (targets.includes('tidepool')) {
      const port = await freePort()
      const ini = join(workDir, 'tidepool.ini')
      writeFileSync(ini, poolerIni(pgi, port, userlist))
      console.log(`starting tidepool on port ${port} ...`)
      // SIGKILL on our death: tidepool's SIGTERM would wait for clients that may never leave.
      const svc = startService('tidepool', ['--', process.execPath, ...tidepoolEntry(), ini], 'SIGINT', 'SIGKILL')
      const err = await waitAccepting(svc, port, 'bench', pgi.user, pgi.password)
      if (err === null) endpoints.set('tidepool', { port, db: 'bench' })
      else { startErrors.tidepool = err; await svc.stop() }
    }

    for (const [name, err] of Object.entries(startErrors)) console.error(`\n!! ${name} is left out: ${err}\n`)

    const records: RunRecord[] = []
    for (const s of scenarios) {
      for (const target of TARGETS) {
        const ep = endpoints.get(target)
        if (ep === undefined) continue
        process.stdout.write(`${s.name.padEnd(16)} ${target.padEnd(10)} ${durationS}s ... `)
        const rec = await runScenario(s, target, ep, pgi, durationS)
        records.push(rec)
        console.log(rec.error === null ? `${fmt(rec.tps)} tps, ${fmt(rec.latencyMs, 3)} ms` : `FAILED (${rec.error.split('\n')[0]})`)
      }
    }
    printTable(records, scenarios)

    const resultsDir = join(root, 'src', 'bench', 'lab', 'results')
    mkdirSync(resultsDir, { recursive: true })
    const file = join(resultsDir, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
    writeFileSync(file, JSON.stringify({
      at: startedAt.toISOString(),
      durationS,
      scale,
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', node: process.version },
      versions,
      pooler: { pool_mode: 'transaction', default_pool_size: 20, auth_type: 'trust' },
      scenarios: scenarios.map((s) => ({ name: s.name, pgbenchArgs: s.args, doc: s.doc })),
      startErrors,
      results: records,
    }, null, 2) + '\n')
    console.log(`\nresults: ${file}`)
    // The table is still printed when a target could not start or a run failed, but the run is not clean.
    return records.some((r) => r.error !== null) || Object.keys(startErrors).length > 0 ? 1 : 0
  } finally {
    for (const s of [...services]) await s.stop()
    await pgi.stop()
    rmSync(workDir, { recursive: true, force: true })
  }
}

function chownPostgres(dir: string, files: string[]): void {
  if (process.getuid?.() !== 0) return
  const id = (flag: string): number => {
    const n = Number.parseInt(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout, 10)
    if (!Number.isInteger(n)) throw new Error('no postgres OS user')
    return n
  }
  const uid = id('-u')
  const gid = id('-g')
  for (const p of [dir, ...files]) chownSync(p, uid, gid)
}

main().then(
  (code) => { process.exitCode = code },
  (err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? err.stack : String(err)}`)
    process.exitCode = 1
  },
)
