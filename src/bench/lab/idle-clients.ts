// Memory per idle client: open N client connections that log in and then sit idle, and read the
// pooler's resident set size (VmRSS) before and after. Tidepool and PgBouncer get the same ini.
//
//   npx tsx src/bench/lab/idle-clients.ts [--clients 5000] [--targets tidepool,pgbouncer] [--settle 20]
//
// Each figure is read twice: 2 s after the logins, and settled: the lowest RSS over --settle idle
// seconds, sampled every 500 ms. A V8 process keeps the garbage of a login burst (and of its own
// start-up) until its memory reducer runs a few seconds into an idle spell; the settled figures,
// with the baseline settled the same way, are what idle clients cost while they stay idle.
//
// Clients are raw sockets that send a StartupMessage and read until ReadyForQuery: a pg.Client per
// connection would cost the bench more memory than the pooler it measures. Descriptors: the
// poolers start under a raised `ulimit -n`; this process re-executes itself under one when its
// own limit is too low for N sockets.
// Invariants: every process we start is stopped on exit, on Ctrl-C and on failure.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { tidepoolEntry } from './launch.ts'
import { startPostgres, type PgInstance } from '../../../test/harness/postgres.ts'
import { freePort } from '../../../test/harness/ports.ts'
import { hasBinary, runPsql } from '../../../test/harness/clients.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const PGBOUNCER = '/usr/sbin/pgbouncer'
const RAISE_FD_LIMIT = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"'
const REEXEC_ENV = 'TIDEPOOL_BENCH_FD_RAISED'
const BATCH = 200

type Target = 'tidepool' | 'pgbouncer'
const TARGETS: readonly Target[] = ['tidepool', 'pgbouncer']

interface Measurement {
  target: Target
  clients: number
  rssBeforeKb: number
  rssAfterKb: number
  /** (RSS at all clients − RSS at half) / (the second half's clients), both read 2 s after the logins. */
  kbPerClientMarginal: number
  kbPerClient: number
  /**
   * Before and after, each the lowest RSS over --settle idle seconds. No settled slope: whether the
   * memory reducer runs within a given idle spell varies, so a difference of two settled readings
   * over half the clients is mostly that variance.
   */
  settled: { rssBeforeKb: number; rssAfterKb: number; kbPerClient: number }
  loginSeconds: number
}

// --- processes ----------------------------------------------------------------------------------

const children = new Set<ChildProcess>()
const tempDirs = new Set<string>()
// Quick on purpose: under `npx tsx`, the CLI SIGKILLs us about 60 ms after relaying a Ctrl-C.
process.on('exit', () => {
  for (const c of children) { try { c.kill('SIGKILL') } catch { /* gone */ } }
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true })
})
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\n${signal}: stopping everything\n`)
    process.exit(130)
  })
}

interface Service { name: string; child: ChildProcess; output: () => string; exited: Promise<void>; stop(signal: NodeJS.Signals): Promise<void> }

// setprivArgs: any user switch, then `--` and the command, all for one setpriv: changing uid
// clears a parent-death signal set earlier.
function startService(name: string, setprivArgs: string[], deathSignal: 'KILL' | 'TERM'): Service {
  const child = spawn('bash', ['-c', `${RAISE_FD_LIMIT}; exec setpriv --pdeathsig ${deathSignal} "$@"`, 'bash', ...setprivArgs], {
    cwd: root, stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  let out = ''
  const keep = (b: Buffer): void => { out = (out + b.toString('utf8')).slice(-20_000) }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  const exited = new Promise<void>((resolve) => child.once('exit', () => { children.delete(child); resolve() }))
  return {
    name, child, exited, output: () => out,
    stop: async (signal) => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill(signal)
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    },
  }
}

async function waitAccepting(svc: Service, port: number, pgi: PgInstance): Promise<void> {
  let gone = false
  void svc.exited.then(() => { gone = true })
  const deadline = Date.now() + 30_000
  let last = ''
  while (Date.now() < deadline && !gone) {
    const r = await runPsql({ port, user: pgi.user, password: pgi.password, db: 'bench', sql: 'SELECT 1', timeoutMs: 5_000 })
    if (r.code === 0) return
    last = r.stderr.trim()
    await sleep(200)
  }
  throw new Error(gone
    ? `${svc.name} exited (code ${svc.child.exitCode}) before accepting connections:\n${svc.output().slice(-3000)}`
    : `${svc.name} did not accept connections within 30 s (${last})`)
}

/** The lowest RSS over `ms` of idleness, sampled every 500 ms: the size just after the process's own GC. */
async function settledRssKb(pid: number, ms: number): Promise<number> {
  let min = rssKb(pid)
  for (let waited = 0; waited < ms; waited += 500) {
    await sleep(500)
    min = Math.min(min, rssKb(pid))
  }
  return min
}

function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!m) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(m[1])
}

function ownFdLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
  return m === null || m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1])
}

// --- raw clients --------------------------------------------------------------------------------

function startupMessage(user: string, database: string): Buffer {
  const params = Buffer.from(`user\0${user}\0database\0${database}\0application_name\0idle-bench\0\0`)
  const msg = Buffer.alloc(8 + params.length)
  msg.writeInt32BE(msg.length, 0)
  msg.writeInt32BE(196608, 4) // protocol 3.0
  params.copy(msg, 8)
  return msg
}

// Resolves once the pooler sent ReadyForQuery; the socket then stays open and idle.
function idleClient(port: number, startup: Buffer, sockets: Socket[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port })
    sockets.push(s)
    let buf: Buffer = Buffer.alloc(0)
    let done = false
    const fail = (why: string): void => { if (!done) { done = true; s.destroy(); reject(new Error(why)) } }
    s.setNoDelay(true)
    s.on('error', (e) => fail(`socket error: ${e.message}`))
    s.on('close', () => fail('closed before ReadyForQuery'))
    s.on('connect', () => s.write(startup))
    s.on('data', (chunk: Buffer) => {
      if (done) return // later ParameterStatus or NoticeResponse: an idle client ignores them
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      while (buf.length >= 5) {
        const type = buf[0]!
        const len = buf.readInt32BE(1)
        if (buf.length < 1 + len) return
        if (type === 0x45 /* E */) return fail(`ErrorResponse: ${buf.subarray(5, 1 + len).toString('utf8').replace(/\0/g, ' ')}`)
        if (type === 0x52 /* R */ && buf.readInt32BE(5) !== 0) return fail(`asked for authentication (code ${buf.readInt32BE(5)}); the bench expects auth_type=trust`)
        if (type === 0x5a /* Z */) {
          done = true
          buf = Buffer.alloc(0)
          resolve()
          return
        }
        buf = buf.subarray(1 + len)
      }
    })
  })
}

// --- one target ---------------------------------------------------------------------------------

function ini(pgi: PgInstance, port: number, userlist: string, maxClients: number): string {
  return [
    '[databases]',
    `bench = host=127.0.0.1 port=${pgi.port} dbname=postgres user=${pgi.user} password=${pgi.password}`,
    '', '[pgbouncer]',
    'listen_addr = 127.0.0.1', `listen_port = ${port}`, 'unix_socket_dir =',
    'auth_type = trust', `auth_file = ${userlist}`,
    'pool_mode = transaction', 'default_pool_size = 20', `max_client_conn = ${maxClients}`,
    // One log line per login would measure the log, not the client.
    'log_connections = 0', 'log_disconnections = 0',
    '',
  ].join('\n')
}

/** tidepool as production runs it (the compiled build), unless --entry names another build. */
let tidepoolBuild: string[] | null = null

async function measure(target: Target, pgi: PgInstance, workDir: string, clients: number, settleMs: number): Promise<Measurement> {
  const port = await freePort()
  const userlist = join(workDir, 'userlist.txt')
  const iniPath = join(workDir, `${target}.ini`)
  writeFileSync(iniPath, ini(pgi, port, userlist, Math.max(6000, clients + 100)))
  chownToPostgres([workDir, userlist, iniPath])
  const svc = target === 'tidepool'
    ? startService('tidepool', ['--', process.execPath, ...(tidepoolBuild ?? tidepoolEntry()), iniPath], 'KILL')
    : startService('pgbouncer', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', PGBOUNCER, iniPath], 'TERM')
  const sockets: Socket[] = []
  try {
    await waitAccepting(svc, port, pgi)
    const pid = svc.child.pid!
    const rssBeforeKb = rssKb(pid)
    const settledBeforeKb = await settledRssKb(pid, settleMs)
    const startup = startupMessage(pgi.user, 'bench')
    const t0 = performance.now()
    const half = Math.floor(clients / 2)
    let rssHalfKb = 0
    let pausedMs = 0
    for (let opened = 0; opened < clients; ) {
      const batch = Math.min(BATCH, (opened < half ? half : clients) - opened)
      await Promise.all(Array.from({ length: batch }, () => idleClient(port, startup, sockets)))
      opened += batch
      if (opened === half) {
        await sleep(2_000)
        rssHalfKb = rssKb(pid)
        pausedMs = 2_000
      }
    }
    const loginSeconds = (performance.now() - t0 - pausedMs) / 1000
    // Let allocations from the login burst settle before reading the figure that counts.
    await sleep(2_000)
    const rssAfterKb = rssKb(pid)
    const settledAfterKb = await settledRssKb(pid, settleMs)
    // The slope between half and all clients leaves out one-off growth (heap reservations,
    // young-generation expansion during the login burst) that the first clients trigger.
    const kbPerClientMarginal = (rssAfterKb - rssHalfKb) / (clients - half)
    const settled = {
      rssBeforeKb: settledBeforeKb,
      rssAfterKb: settledAfterKb,
      kbPerClient: (settledAfterKb - settledBeforeKb) / clients,
    }
    return { target, clients, rssBeforeKb, rssAfterKb, kbPerClient: (rssAfterKb - rssBeforeKb) / clients, kbPerClientMarginal, settled, loginSeconds }
  } finally {
    for (const s of sockets) s.destroy()
    // PgBouncer 1.18: SIGTERM is its immediate shutdown; tidepool: SIGINT waits only for transactions.
    await svc.stop(target === 'pgbouncer' ? 'SIGTERM' : 'SIGINT')
  }
}

function chownToPostgres(paths: string[]): void {
  if (process.getuid?.() !== 0) return
  const uid = Number.parseInt(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout, 10)
  const gid = Number.parseInt(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout, 10)
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('no postgres OS user')
  for (const p of paths) chownSync(p, uid, gid)
}

// --- main ---------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      clients: { type: 'string', default: '5000' },
      targets: { type: 'string', default: TARGETS.join(',') },
      settle: { type: 'string', default: '20' },
      // another build's dist/main.js in tidepool's place, to compare builds
      entry: { type: 'string' },
    },
  })
  if (values.entry !== undefined) tidepoolBuild = [values.entry]
  const settleMs = Number(values.settle) * 1000
  const clients = Number(values.clients)
  const targets = values.targets.split(',').map((s) => s.trim()) as Target[]
  if (!Number.isInteger(clients) || clients < 1 || targets.some((t) => !TARGETS.includes(t)) || !(settleMs >= 0)) {
    console.error(`usage: idle-clients.ts [--clients N] [--targets ${TARGETS.join(',')}] [--settle seconds]`)
    return 2
  }

  const needFds = clients + 256
  if (ownFdLimit() < needFds) {
    if (process.env[REEXEC_ENV] === '1') {
      console.error(`open-files limit ${ownFdLimit()} is below the ${needFds} this bench needs; raise the hard limit or use --clients`)
      return 1
    }
    const argv = [process.execPath, ...process.execArgv, process.argv[1]!, ...process.argv.slice(2)]
    const r = spawnSync('bash', ['-c', `${RAISE_FD_LIMIT}; exec "$@"`, 'bash', ...argv], {
      stdio: 'inherit', env: { ...process.env, [REEXEC_ENV]: '1' },
    })
    return r.status ?? 1
  }

  const pgi = await startPostgres()
  const workDir = mkdtempSync(join(tmpdir(), 'tidepool-idle-'))
  tempDirs.add(workDir)
  writeFileSync(join(workDir, 'userlist.txt'), `"${pgi.user}" "${pgi.password}"\n`)
  const results: Measurement[] = []
  let failed = false
  try {
    for (const target of targets) {
      if (target === 'pgbouncer' && !hasBinary(PGBOUNCER)) {
        console.error(`pgbouncer: ${PGBOUNCER} not found, skipped`)
        continue
      }
      process.stdout.write(`${target}: ${clients} idle clients ... `)
      try {
        const m = await measure(target, pgi, workDir, clients, settleMs)
        results.push(m)
        console.log(`logins took ${m.loginSeconds.toFixed(1)} s`)
        console.log(`  2 s after the logins: RSS ${m.rssBeforeKb} kB -> ${m.rssAfterKb} kB, ${m.kbPerClient.toFixed(2)} kB per idle client overall, ${m.kbPerClientMarginal.toFixed(2)} kB per additional client`)
        const st = m.settled
        console.log(`  settled (${values.settle} s idle): RSS ${st.rssBeforeKb} kB -> ${st.rssAfterKb} kB, ${st.kbPerClient.toFixed(2)} kB per idle client`)
      } catch (err) {
        failed = true
        console.log('FAILED')
        console.error(`  ${target} is left out: ${err instanceof Error ? err.message : String(err)}`)
      }
    }
  } finally {
    await pgi.stop()
    rmSync(workDir, { recursive: true, force: true })
  }
  const tp = results.find((r) => r.target === 'tidepool')
  const pgb = results.find((r) => r.target === 'pgbouncer')
  if (tp && pgb) console.log(`tidepool/pgbouncer memory per idle client: ${(tp.kbPerClient / pgb.kbPerClient).toFixed(1)}x right after the logins, ${(tp.settled.kbPerClient / pgb.settled.kbPerClient).toFixed(1)}x settled`)
  return failed ? 1 : 0
}

main().then(
  (code) => { process.exitCode = code },
  (err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? err.stack : String(err)}`)
    process.exitCode = 1
  },
)
