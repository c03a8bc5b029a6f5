// A worker process of `tidepool bench run` (forked by runner.ts): opens its
// connections, waits for 'go', runs the workload's cycle on every connection until 'stop' or its
// share of the iterations, and reports one interval of histograms and error counts per second.
// Must not: outlive its parent (it exits when the IPC channel closes), or print to stdout.

import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { describeError, errorCode } from './errors.ts'
import { encodeHistogram, newHistogram, recordUs, type Histogram } from './histogram.ts'
import type { FromWorker, ToWorker, WorkerSpec } from './messages.ts'
import { Rng } from './rng.ts'
import type { CycleContext, OpRunner, Workload } from './workload.ts'
import { getWorkload } from './workloads/index.ts'

const CONNECT_CONCURRENCY = 16
const RECONNECT_PAUSE_MS = 1000

interface Conn {
  client: pg.Client
  broken: boolean
  /** operations this connection ran in its current cycle */
  ops: number
}

let spec: WorkerSpec
let workload: Workload
let hists: Histogram[] = []
let errors: number[] = []
let codes: Record<string, number> = {}
let stopping = false
let k = 0
let lastFlush = 0
const conns: Conn[] = []

function send(m: FromWorker): void {
  process.send?.(m)
}

function newClient(): pg.Client {
  return new pg.Client({ connectionString: spec.url, application_name: 'tidepool-bench', connectionTimeoutMillis: 30_000 })
}

async function connect(conn: Conn, connectHist: Histogram | null): Promise<void> {
  const c = newClient()
  const t0 = performance.now()
  await c.connect()
  if (connectHist !== null) recordUs(connectHist, (performance.now() - t0) * 1000)
  // A connection that dies (server restart, pooler gone) is replaced by the loop, not fatal.
  c.on('error', () => { conn.broken = true })
  conn.client = c
  conn.broken = false
}

async function openAll(connectHist: Histogram): Promise<void> {
  for (let i = 0; i < spec.connections; i++) conns.push({ client: null as unknown as pg.Client, broken: true, ops: 0 })
  let next = 0
  const opener = async () => {
    while (next < conns.length) {
      const i = next++
      try {
        await connect(conns[i], connectHist)
      } catch (err) {
        throw new Error(`worker ${spec.index}: connection ${i + 1} of ${spec.connections} failed: ${describeError(err)}`)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, conns.length) }, opener))
}

function opRunner(conn: Conn): OpRunner {
  return {
    async run(op, fn) {
      conn.ops++
      const t0 = performance.now()
      try {
        await fn()
        recordUs(hists[op], (performance.now() - t0) * 1000)
        return true
      } catch (err) {
        errors[op]++
        const code = errorCode(err)
        codes[code] = (codes[code] ?? 0) + 1
        return false
      }
    },
  }
}

function context(conn: Conn, index: number): CycleContext {
  const prefix = `tpb_${workload.name}_`
  return {
    get client() { return conn.client },
    rng: new Rng(spec.seed, spec.index, index),
    params: spec.params,
    op: opRunner(conn),
    query: (id, text, values) => (spec.prepare ? { name: prefix + id, text, values, rowMode: 'array' } : { text, values, rowMode: 'array' }),
    sleep: (ms) => sleep(ms),
  }
}

async function loop(conn: Conn, index: number, quota: number | null): Promise<void> {
  const cycle = workload.cycle(context(conn, index))
  const cycleHist = hists[hists.length - 1]
  const think = spec.thinkTimeMs
  for (let done = 0; !stopping && (quota === null || done < quota);) {
    if (conn.broken) {
      await conn.client?.end().catch(() => {})
      try {
        await connect(conn, null)
      } catch (err) {
        const code = errorCode(err)
        codes[code] = (codes[code] ?? 0) + 1
        await sleep(RECONNECT_PAUSE_MS)
      }
      continue
    }
    conn.ops = 0
    const t0 = performance.now()
    await cycle()
    // A cycle whose dice chose no operation (possible in flights) is not a cycle that took time.
    if (conn.ops > 0) recordUs(cycleHist, (performance.now() - t0) * 1000)
    done++
    if (think > 0 && !stopping) await sleep(think)
  }
}

function flush(): void {
  const now = performance.now()
  k++
  send({
    type: 'interval',
    k,
    ms: Math.round(now - lastFlush),
    hists: hists.map((h) => (h.totalCount === 0 ? null : encodeHistogram(h))),
    errors,
    codes,
  })
  lastFlush = now
  for (const h of hists) h.reset()
  errors = errors.map(() => 0)
  codes = {}
}

async function run(): Promise<void> {
  lastFlush = performance.now()
  const timer = setInterval(flush, spec.intervalMs)
  const per = spec.iterations === null ? null : Math.floor(spec.iterations / spec.connections)
  const extra = spec.iterations === null ? 0 : spec.iterations % spec.connections
  await Promise.all(conns.map((c, i) => loop(c, i, per === null ? null : per + (i < extra ? 1 : 0))))
  clearInterval(timer)
  flush()
  await Promise.all(conns.map((c) => c.client?.end().catch(() => {})))
  send({ type: 'done', lastK: k })
}

async function start(s: WorkerSpec): Promise<void> {
  spec = s
  workload = getWorkload(s.workload, s.file)
  hists = [...workload.ops, '__cycle__'].map(() => newHistogram())
  errors = hists.map(() => 0)
  const connectHist = newHistogram()
  await openAll(connectHist)
  send({ type: 'ready', connect: encodeHistogram(connectHist) })
}

function fatal(err: unknown): void {
  send({ type: 'fatal', message: err instanceof Error ? err.message : String(err) })
  for (const c of conns) c.client?.end().catch(() => {})
  // Let the message leave before the channel closes.
  setTimeout(() => process.exit(1), 100).unref()
}

process.on('disconnect', () => process.exit(0))
process.on('message', (m: ToWorker) => {
  if (m.type === 'start') start(m.spec).catch(fatal)
  else if (m.type === 'go') run().then(() => process.disconnect(), fatal)
  else if (m.type === 'stop') stopping = true
})
