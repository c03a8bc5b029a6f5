// `tidepool bench run`: every target in turn, with the same workload, sizes and seed. For each one:
// start the database sampler, fork the workers (worker.js from the build, or worker.ts through tsx
// when the CLI itself runs from the sources),
// wait until every connection is open, say go, stop after --duration (or when --iterations are
// done), and merge the workers' interval histograms into per-second series and run totals.
// Invariants: no worker outlives its target's run (killed in a finally, and they exit by themselves
// when our IPC channel closes); workers start together, so the series of all workers line up.

import { fork, type ChildProcess } from 'node:child_process'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { BenchError, redactUrl } from './errors.ts'
import { addEncoded, newHistogram, summarize, type Histogram } from './histogram.ts'
import type { FromWorker, IntervalReport, ToWorker, WorkerSpec } from './messages.ts'
import { CYCLE, type BenchResults, type Column, type LatencySeries, type OpSummary, type RunSettings, type TargetResult } from './results.ts'
import { Sampler, type DbSample } from './sampler.ts'
import { probeTarget, type ProbedTarget, type TargetSpec } from './target.ts'
import type { Params, Workload } from './workload.ts'

// The worker is this module's sibling with the same extension: dist/ holds no .ts, and tsx (a
// devDependency) is needed, and resolved, only when we run from src/.
const FROM_SOURCES = import.meta.url.endsWith('.ts')
const WORKER = fileURLToPath(new URL(FROM_SOURCES ? './worker.ts' : './worker.js', import.meta.url))
const WORKER_EXEC_ARGV = FROM_SOURCES ? ['--import', import.meta.resolve('tsx')] : []
const READY_TIMEOUT_MS = 120_000
const STOP_GRACE_MS = 15_000

export interface RunOptions extends RunSettings {
  workload: Workload
  file: string | null
  params: Params
  targets: TargetSpec[]
  monitorUrl: string | null
  pgPid: number | null
  /** seconds between two targets, for the database to settle */
  pauseS: number
  progress: (line: string, final: boolean) => void
}

export async function runBench(o: RunOptions): Promise<BenchResults> {
  const probed: ProbedTarget[] = []
  for (const t of o.targets) probed.push(await probeTarget(t, o.workload, o.params))
  const monitorUrl = o.monitorUrl ?? probed.find((t) => t.pooler === null)?.url ?? null
  const results: BenchResults = {
    format: 'tidepool-bench/1',
    createdAt: new Date().toISOString(),
    workload: { name: o.workload.name, file: o.file, params: probed[0].params },
    options: {
      workers: o.workers, connections: o.connections, durationS: o.durationS, iterations: o.iterations,
      prepare: o.prepare, thinkTimeMs: o.thinkTimeMs, seed: o.seed, intervalMs: o.intervalMs,
    } satisfies RunSettings,
    machine: { cpus: os.cpus().length, node: process.version, platform: `${os.platform()} ${os.release()}` },
    targets: [],
  }
  for (const [i, t] of probed.entries()) {
    if (i > 0 && o.pauseS > 0) await new Promise((r) => setTimeout(r, o.pauseS * 1000))
    results.targets.push(await runTarget(t, probed[0], o, monitorUrl))
  }
  return results
}

async function runTarget(t: ProbedTarget, first: ProbedTarget, o: RunOptions, monitorUrl: string | null): Promise<TargetResult> {
  const ids = [...o.workload.ops, CYCLE]
  const notes: string[] = []
  const differ = o.workload.params.filter((p) => p.size && t.params[p.name] !== first.params[p.name])
  if (differ.length > 0) notes.push(`its data differs from ${first.name}'s: ${differ.map((p) => `${p.name} ${t.params[p.name]} vs ${first.params[p.name]}`).join(', ')}`)
  const sampler = await Sampler.start({ monitorUrl, consoleUrl: t.consoleUrl, poolDatabase: t.database, pgPid: o.pgPid, intervalMs: o.intervalMs })
  const children: ChildProcess[] = []
  const startedAt = new Date().toISOString()
  let goAt = Date.now()
  let elapsedS = 0
  const agg = new Aggregator(ids, o.workers, o.intervalMs)
  const connectHist = newHistogram()
  let samplerStopped: Promise<void> | null = null
  try {
    const fleet = new Fleet(t.name, children)
    for (let w = 0; w < o.workers; w++) {
      const share = o.iterations === null ? null : Math.floor(o.iterations / o.workers) + (w < o.iterations % o.workers ? 1 : 0)
      const spec: WorkerSpec = {
        index: w, url: t.url, workload: o.workload.name, file: o.file, params: t.params, connections: o.connections,
        iterations: share, seed: o.seed, prepare: o.prepare, thinkTimeMs: o.thinkTimeMs, intervalMs: o.intervalMs,
      }
      fleet.add(spec, agg)
    }
    o.progress(`[${t.name}] opening ${o.workers * o.connections} connections ...`, false)
    for (const c of await fleet.ready()) addEncoded(connectHist, c)
    goAt = Date.now()
    const go0 = performance.now()
    agg.onInterval = (row) => o.progress(progressLine(t.name, row, o, sampler.samples.at(-1)), false)
    // Sampling ends when the workload does, before the workers' connections close: a sample taken
    // while hundreds of backends exit would read a moment nobody asked about (and PSS sums read
    // across exiting processes overcount).
    fleet.onEnding = () => { samplerStopped ??= sampler.stop() }
    fleet.send({ type: 'go' })
    const stopTimer = o.durationS === null ? null : setTimeout(() => fleet.stop(), o.durationS * 1000)
    try {
      await fleet.done()
    } finally {
      if (stopTimer !== null) clearTimeout(stopTimer)
      fleet.clearTimers()
    }
    elapsedS = (performance.now() - go0) / 1000
    agg.finish()
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await (samplerStopped ?? sampler.stop())
  }
  const summary = (id: string, h: Histogram, errors: number): OpSummary => {
    const s = summarize(h)
    return { id, ...s, errors, opsPerS: elapsedS > 0 ? Math.round((s.count / elapsedS) * 100) / 100 : 0 }
  }
  const result: TargetResult = {
    name: t.name,
    url: redactUrl(t.url),
    server: t.server,
    pooler: t.pooler,
    startedAt,
    elapsedS: Math.round(elapsedS * 1000) / 1000,
    threads: o.workers * o.connections,
    ops: ids.map((id, i) => summary(id, agg.totals[i], agg.errors[i])),
    connect: summary('connect', connectHist, 0),
    errors: agg.codes,
    client: agg.series(),
    db: dbSeries(sampler.samples, goAt),
    notes: [...notes, ...sampler.notes],
  }
  for (const h of [...agg.totals, connectHist]) h.destroy()
  return result
}

function progressLine(name: string, row: IntervalRow, o: RunOptions, last: DbSample | undefined): string {
  const of = o.durationS === null ? '' : `/${o.durationS}`
  const sessions = last?.sessions == null ? '' : `  db sessions ${last.sessions.total}`
  return `[${name}] ${row.t.toFixed(0)}${of} s  ${fmt(row.opsPerS)} ops/s  cycle p50 ${ms(row.cycleP50)} ms  p99 ${ms(row.cycleP99)} ms  errors ${row.errors}${sessions}`
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
const ms = (v: number): string => v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)

/** The worker processes of one target's run. */
class Fleet {
  private readonly procs: ChildProcess[]
  private readonly readyWaits: Array<Promise<string>> = []
  private readonly doneWaits: Array<Promise<void>> = []
  /** called when the workload starts to end: at stop, or when the first worker has done its iterations */
  onEnding: () => void = () => {}
  private failure: BenchError | null = null
  private graceTimer: NodeJS.Timeout | undefined
  private onFailure: (e: BenchError) => void = () => {}
  private readonly failed = new Promise<never>((_, reject) => { this.onFailure = reject })

  constructor(private readonly target: string, procs: ChildProcess[]) {
    this.procs = procs
    this.failed.catch(() => {})
  }

  add(spec: WorkerSpec, agg: Aggregator): void {
    const child = fork(WORKER, [], { execArgv: WORKER_EXEC_ARGV, stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'json' })
    this.procs.push(child)
    let stderr = ''
    child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-4000) })
    let resolveReady: (c: string) => void = () => {}
    let resolveDone: () => void = () => {}
    let finished = false
    this.readyWaits.push(new Promise<string>((r) => { resolveReady = r }))
    this.doneWaits.push(new Promise<void>((r) => { resolveDone = r }))
    child.on('message', (m: FromWorker) => {
      if (m.type === 'ready') resolveReady(m.connect)
      else if (m.type === 'interval') agg.add(m)
      else if (m.type === 'done') {
        this.onEnding()
        finished = true
        agg.workerDone(spec.index, m.lastK)
        resolveDone()
      } else if (m.type === 'fatal') this.fail(m.message)
    })
    child.on('exit', (code, signal) => {
      if (finished) return
      const why = stderr.trim().split('\n').filter((l) => l.trim() !== '').at(-1)
      this.fail(`worker ${spec.index} exited (${signal ?? `code ${code}`})${why === undefined ? '' : `: ${why}`}`)
    })
    child.send({ type: 'start', spec } satisfies ToWorker)
  }

  private fail(message: string): void {
    if (this.failure !== null) return
    this.failure = new BenchError(`target ${this.target}: ${message}`)
    this.onFailure(this.failure)
  }

  async ready(): Promise<string[]> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new BenchError(`target ${this.target}: connections not open after ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS)
    })
    try {
      return await Promise.race([Promise.all(this.readyWaits), this.failed, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  send(m: ToWorker): void {
    for (const c of this.procs) if (c.connected) c.send(m)
  }

  /** After stop a worker finishes the cycles in flight; one still busy after the grace has hung. */
  stop(): void {
    this.onEnding()
    this.send({ type: 'stop' })
    this.graceTimer = setTimeout(() => this.fail(`workers did not stop within ${STOP_GRACE_MS / 1000} s of the end`), STOP_GRACE_MS)
  }

  clearTimers(): void {
    clearTimeout(this.graceTimer)
  }

  async done(): Promise<void> {
    await Promise.race([Promise.all(this.doneWaits), this.failed])
  }
}

interface IntervalRow { t: number; opsPerS: number; errors: number; cycleP50: number; cycleP99: number }

interface Pending { reports: number; ms: number; hists: Array<Histogram | null>; errors: number[] }

/** Merges the workers' interval reports: run totals at once, an interval's series row once every
 *  worker still running has sent it. */
class Aggregator {
  readonly totals: Histogram[]
  readonly errors: number[]
  readonly codes: Record<string, number> = {}
  onInterval: (row: IntervalRow) => void = () => {}
  private readonly pending = new Map<number, Pending>()
  private readonly lastK = new Map<number, number>()
  private nextK = 1
  private readonly t: number[] = []
  private readonly opsPerS: Column = []
  private readonly errorsPerS: Column = []
  private readonly latency: LatencySeries[]

  constructor(private readonly ids: string[], private readonly workers: number, private readonly intervalMs: number) {
    this.totals = ids.map(() => newHistogram())
    this.errors = ids.map(() => 0)
    this.latency = ids.map(() => ({ count: [], mean: [], p50: [], p90: [], p95: [], p99: [], max: [] }))
  }

  add(m: IntervalReport): void {
    let p = this.pending.get(m.k)
    if (p === undefined) this.pending.set(m.k, (p = { reports: 0, ms: 0, hists: this.ids.map(() => null), errors: this.ids.map(() => 0) }))
    p.reports++
    p.ms = Math.max(p.ms, m.ms)
    m.hists.forEach((enc, i) => {
      if (enc === null) return
      addEncoded(this.totals[i], enc)
      addEncoded((p.hists[i] ??= newHistogram()), enc)
    })
    m.errors.forEach((n, i) => { p.errors[i] += n; this.errors[i] += n })
    for (const [code, n] of Object.entries(m.codes)) this.codes[code] = (this.codes[code] ?? 0) + n
    this.settle(false)
  }

  workerDone(worker: number, lastK: number): void {
    this.lastK.set(worker, lastK)
    this.settle(false)
  }

  finish(): void {
    this.settle(true)
  }

  private expected(k: number): number {
    let n = this.workers
    for (const last of this.lastK.values()) if (last < k) n--
    return n
  }

  private settle(all: boolean): void {
    for (;;) {
      const p = this.pending.get(this.nextK)
      if (p === undefined) {
        if (!all || this.pending.size === 0) return
        this.nextK = Math.min(...this.pending.keys())
        continue
      }
      if (!all && p.reports < this.expected(this.nextK)) return
      this.pending.delete(this.nextK)
      this.row(this.nextK, p)
      this.nextK++
    }
  }

  private row(k: number, p: Pending): void {
    // The stub after the last full interval (workers stopping) would chart as a dip or a spike;
    // its operations are in the totals already.
    if (p.ms < this.intervalMs / 2 && k > 1) {
      for (const h of p.hists) h?.destroy()
      return
    }
    const seconds = p.ms / 1000
    const t = Math.round(((k - 1) * this.intervalMs + p.ms)) / 1000
    const cycle = this.ids.length - 1
    let ops = 0
    let errors = 0
    let p50 = 0
    let p99 = 0
    p.hists.forEach((h, i) => {
      const s = h === null ? null : summarize(h)
      const l = this.latency[i]
      l.count.push(s?.count ?? 0)
      for (const key of ['mean', 'p50', 'p90', 'p95', 'p99', 'max'] as const) l[key].push(s === null ? null : s[key])
      if (i < cycle) ops += s?.count ?? 0
      else if (s !== null) ({ p50, p99 } = s)
      h?.destroy()
    })
    for (let i = 0; i < cycle; i++) errors += p.errors[i]
    const opsPerS = seconds > 0 ? ops / seconds : 0
    this.t.push(t)
    this.opsPerS.push(Math.round(opsPerS * 100) / 100)
    this.errorsPerS.push(seconds > 0 ? Math.round((errors / seconds) * 100) / 100 : 0)
    this.onInterval({ t, opsPerS, errors, cycleP50: p50, cycleP99: p99 })
  }

  series(): TargetResult['client'] {
    const latency: Record<string, LatencySeries> = {}
    this.ids.forEach((id, i) => { latency[id] = this.latency[i] })
    return { t: this.t, opsPerS: this.opsPerS, errorsPerS: this.errorsPerS, latency }
  }
}

/** Database samples as columns; counters become per-second rates between consecutive samples. */
function dbSeries(samples: DbSample[], goAt: number): TargetResult['db'] {
  const t = samples.map((s) => Math.round(s.at - goAt) / 1000)
  const col = (f: (s: DbSample) => number | null | undefined): Column => samples.map((s) => f(s) ?? null)
  const rate = (f: (s: DbSample) => number | null | undefined, scale = 1): Column => samples.map((s, i) => {
    if (i === 0) return null
    const a = f(samples[i - 1])
    const b = f(s)
    const dt = (s.at - samples[i - 1].at) / 1000
    return a == null || b == null || dt <= 0 ? null : Math.round(((b - a) / dt) * scale * 100) / 100
  })
  const columns: Record<string, Column> = {
    sessions: col((s) => s.sessions?.total),
    sessions_active: col((s) => s.sessions?.active),
    sessions_idle: col((s) => s.sessions?.idle),
    sessions_idle_in_tx: col((s) => s.sessions?.idleInTx),
    commits_per_s: rate((s) => s.xactCommit),
    rollbacks_per_s: rate((s) => s.xactRollback),
    connections_per_s: rate((s) => s.sessionsStarted),
    cpu_pct: rate((s) => s.cpuSeconds, 100),
    mem_mb: col((s) => (s.memBytes == null ? null : Math.round(s.memBytes / 1048576 * 10) / 10)),
  }
  if (samples.some((s) => s.pool !== null)) {
    Object.assign(columns, {
      pool_cl_active: col((s) => s.pool?.clActive),
      pool_cl_waiting: col((s) => s.pool?.clWaiting),
      pool_sv_active: col((s) => s.pool?.svActive),
      pool_sv_idle: col((s) => s.pool?.svIdle),
      pool_sv_used: col((s) => s.pool?.svUsed),
      pool_maxwait_ms: col((s) => s.pool?.maxwaitMs),
      pool_xact_per_s: rate((s) => s.pool?.xactCount),
      pool_wait_ms_per_s: rate((s) => s.pool?.waitTimeUs, 1 / 1000),
    })
  }
  return { t, columns }
}
