// Profiles tidepool under a pgbench load: `npx tsx src/bench/lab/profile.ts [--clients 50] [--seconds 10] [--mode simple]`.
// --mode churn: pgbench -C (a login per transaction); --auth scram-sha-256 makes each login a SCRAM exchange.
// Writes a V8 .cpuprofile to src/bench/lab/results/ and prints the functions with the most self time.
// --perf: `perf record -e cpu-clock` of the process instead (node --perf-basic-prof names JIT code), and
// the symbols with the most samples, user and kernel. The V8 profiler samples wall time on the main
// thread: on a loaded machine a thread preempted inside a write shows as time in writeBuffer, and C++
// and libuv time is attributed to the JS function that called in. perf counts CPU time where it is spent.
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { parseArgs } from 'node:util'
import { startPostgres } from '../../../test/harness/postgres.ts'
import { freePort } from '../../../test/harness/ports.ts'
import { runPgbench, waitFor } from '../../../test/harness/clients.ts'
import { poolerIni, spawnTidepool } from './launch.ts'

const { values } = parseArgs({ options: { clients: { type: 'string', default: '50' }, seconds: { type: 'string', default: '10' }, mode: { type: 'string', default: 'simple' }, auth: { type: 'string', default: 'trust' }, perf: { type: 'boolean', default: false } } })
const pgi = await startPostgres({ maxConnections: 300 })
const outDir = join(import.meta.dirname, 'results')
fs.mkdirSync(outDir, { recursive: true })
try {
  const init = await runPgbench({ port: pgi.port, user: pgi.user, password: pgi.password, db: 'postgres', args: ['-i', '-s', '5', '-q'] })
  if (init.code !== 0) throw new Error(init.stderr)
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tp-prof-'))
  const port = await freePort()
  const ini = poolerIni(dir, pgi, port, 20, values.auth as string)
  const before = new Set(fs.readdirSync(outDir))
  const isPerf = values.perf as boolean
  const child = spawnTidepool(ini, isPerf ? ['--perf-basic-prof'] : ['--cpu-prof', `--cpu-prof-dir=${outDir}`], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr?.on('data', (d) => { err += String(d) })
  await waitFor(() => err.includes('[runtime.started]'), { timeoutMs: 20_000, what: 'tidepool' })
  const how = values.mode === 'churn' ? ['-C'] : ['-M', values.mode as string]
  const perfData = join(dir, 'perf.data')
  const perf = isPerf ? spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-p', String(child.pid), '-o', perfData], { stdio: 'ignore' }) : null
  const r = await runPgbench({ port, user: pgi.user, password: pgi.password, db: 'bench', args: ['-S', '-n', ...how, '-c', values.clients as string, '-j', '2', '-T', values.seconds as string] })
  console.log(`tps: ${r.tps}`)
  if (perf !== null) {
    const done = new Promise((res) => perf.once('exit', res))
    perf.kill('SIGINT')
    await done
    for (const sort of ['dso', 'dso,sym']) {
      const report = spawnSync('perf', ['report', '-i', perfData, '--stdio', '--sort', sort, '--percent-limit', '0.4'], { encoding: 'utf8', maxBuffer: 64 << 20 })
      console.log(report.stdout.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#')).slice(0, 45).join('\n'))
    }
    child.kill('SIGKILL')
    await new Promise((res) => child.on('exit', res))
    fs.rmSync(dir, { recursive: true, force: true })
    process.exitCode = 0
  } else {
  child.kill('SIGQUIT')
  await new Promise((res) => child.on('exit', res))
  // One profile per thread (under tsx a loader thread too); the pooler's is the biggest new one.
  const prof = fs.readdirSync(outDir).filter((f) => f.endsWith('.cpuprofile') && !before.has(f)).map((f) => join(outDir, f)).sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0]
  const p = JSON.parse(fs.readFileSync(prof, 'utf8')) as { nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>; samples: number[] }
  const self = new Map<number, number>()
  for (const s of p.samples) self.set(s, (self.get(s) ?? 0) + 1)
  const byFn = new Map<string, number>()
  for (const n of p.nodes) {
    const k = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`
    byFn.set(k, (byFn.get(k) ?? 0) + (self.get(n.id) ?? 0))
  }
  const total = p.samples.length
  console.log(`profile: ${prof} (${total} samples)`)
  for (const [k, v] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`)
  fs.rmSync(dir, { recursive: true, force: true })
  }
} finally {
  await pgi.stop()
}
