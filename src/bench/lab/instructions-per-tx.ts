// User-space instructions of the pooler per transaction, counted by valgrind (callgrind), for builds of
// tidepool side by side:
//   npx tsx src/bench/lab/instructions-per-tx.ts [--transactions 100] [--clients 20] [--mode simple]
//     [--compare label=/path/to/other/dist/main.js ...] [--repeat 1] [--auth trust|scram-sha-256] [--top 30]
// CPU time on a shared 2-core machine moves by ±10% with the load; an instruction count does not, so
// a change of a few percent in tidepool's own work shows here when cpu-per-tx.ts cannot tell. Kernel
// time (the reads and writes) is not counted: this measures what tidepool's code and Node.js do.
// Each build runs under callgrind with instrumentation off; after a warm-up (JIT), it is on for
// exactly --transactions per client, and the count is divided by the transactions. --mode churn:
// pgbench -C, per login. Slow (valgrind runs Node.js some 50× slower): keep the counts small.
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { parseArgs } from 'node:util'
import { startPostgres } from '../../../test/harness/postgres.ts'
import { freePort } from '../../../test/harness/ports.ts'
import { runPgbench, runPsql, waitFor } from '../../../test/harness/clients.ts'
import { poolerIni, tidepoolEntry } from './launch.ts'

const { values } = parseArgs({
  options: {
    transactions: { type: 'string', default: '100' }, clients: { type: 'string', default: '20' }, mode: { type: 'string', default: 'simple' },
    warmup: { type: 'string', default: '300' }, repeat: { type: 'string', default: '1' }, auth: { type: 'string', default: 'trust' },
    compare: { type: 'string', multiple: true, default: [] }, top: { type: 'string', default: '0' },
  },
})
const builds: Array<[string, string[]]> = [['tidepool', tidepoolEntry()]]
for (const c of values.compare as string[]) {
  const [label, path] = c.split('=')
  builds.push([label, [path]])
}
const clients = Number(values.clients)
const perClient = Number(values.transactions)
const isChurn = values.mode === 'churn'
const authType = values.auth as string
const pgi = await startPostgres({ maxConnections: 300 })
const dir = fs.mkdtempSync(join(os.tmpdir(), 'tp-ir-'))
fs.chmodSync(dir, 0o755)
const results = new Map<string, number[]>()
try {
  await runPgbench({ port: pgi.port, user: pgi.user, password: pgi.password, db: 'postgres', args: ['-i', '-s', '2', '-q'] })
  const verifier = authType === 'trust' ? pgi.password : (await runPsql({ port: pgi.port, user: pgi.user, password: pgi.password, db: 'postgres', sql: 'SELECT rolpassword FROM pg_authid WHERE rolname = current_user' })).stdout.trim()
  const load = ['-S', '-n', ...(isChurn ? ['-C'] : ['-M', values.mode as string]), '-c', String(clients), '-j', '2']
  for (let rep = 0; rep < Number(values.repeat); rep++) {
    for (const [label, entry] of builds) {
      const port = await freePort()
      const ini = poolerIni(dir, pgi, port, 20, authType, verifier)
      const out = join(dir, `${label}.callgrind`)
      const child = spawn('valgrind', ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${out}`, process.execPath, ...entry, ini], { stdio: 'ignore' })
      const via = { port, user: pgi.user, password: pgi.password, db: 'bench', timeoutMs: 600_000 }
      try {
        await waitFor(async () => (await runPgbench({ ...via, args: ['-S', '-n', '-c', '1', '-t', '1'] })).code === 0, { timeoutMs: 300_000, intervalMs: 1000, what: `${label} to accept` })
        await runPgbench({ ...via, args: [...load, '-t', values.warmup as string] })
        control(child.pid as number, 'on')
        const r = await runPgbench({ ...via, args: [...load, '-t', String(perClient)] })
        control(child.pid as number, 'off')
        if (r.code !== 0) throw new Error(`${label}: pgbench exit ${r.code}: ${r.stderr}`)
        const dumped = spawnSync('callgrind_control', ['-d', String(child.pid)], { encoding: 'utf8' })
        if (dumped.status !== 0) throw new Error(`callgrind_control -d: ${dumped.stderr}`)
        const ir = summedInstructions(dir, label)
        const perTx = ir / (clients * perClient)
        results.set(label, [...(results.get(label) ?? []), perTx])
        console.log(`${label.padEnd(10)} ${Math.round(perTx)} instructions/${isChurn ? 'login' : 'tx'}`)
        // --top N: the functions with the most instructions (C++ and libc by name; JIT code shows as addresses).
        if (Number(values.top) > 0) {
          for (const f of fs.readdirSync(dir).filter((n) => n.startsWith(`${label}.callgrind.`))) {
            const a = spawnSync('callgrind_annotate', ['--threshold=90', join(dir, f)], { encoding: 'utf8', maxBuffer: 64 << 20 })
            const lines = a.stdout.split('\n').filter((l) => /^\s*[\d,]+ \(/.test(l))
            if (lines.length > 1) console.log(lines.slice(0, Number(values.top) + 1).join('\n'))
          }
        }
      } finally {
        const gone = new Promise((res) => child.once('exit', res))
        child.kill('SIGKILL')
        await gone
        for (const f of fs.readdirSync(dir)) if (f.startsWith(`${label}.callgrind`)) fs.rmSync(join(dir, f))
      }
    }
  }
  if (Number(values.repeat) > 1) {
    console.log(`\nmedians of ${values.repeat} runs:`)
    for (const [label, rows] of results) console.log(`${label.padEnd(10)} ${Math.round(rows.sort((a, b) => a - b)[Math.floor(rows.length / 2)])}`)
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
  await pgi.stop()
}

function control(pid: number, how: 'on' | 'off'): void {
  const r = spawnSync('callgrind_control', ['-i', how, String(pid)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`callgrind_control -i ${how}: ${r.stderr}`)
}

/** Instructions in every dump of one run (callgrind writes one file per dump and per thread). */
function summedInstructions(where: string, label: string): number {
  let sum = 0
  for (const f of fs.readdirSync(where)) {
    if (!f.startsWith(`${label}.callgrind`)) continue
    const m = /^totals: (\d+)/m.exec(fs.readFileSync(join(where, f), 'utf8'))
    if (m !== null) sum += Number(m[1])
  }
  return sum
}
