// `tidepool bench init|run|report`: the direct-versus-pooled experiment as a command (the work is
// in src/bench/). This file reads the command line, including each workload's own --<param>
// options, and turns every failure into one line on stderr: exit 2 for bad usage or a bad
// workload file, 1 for a target that fails us, never a stack trace.

import { join } from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { BenchError, usageError } from '../bench/errors.ts'
import { initWorkload } from '../bench/init.ts'
import { runBench } from '../bench/runner.ts'
import { loadResults, saveResults, writeCsv } from '../bench/results.ts'
import { resolvePgPid } from '../bench/proc.ts'
import { writeReport } from '../bench/report.ts'
import { renderTables } from '../bench/tables.ts'
import type { TargetSpec } from '../bench/target.ts'
import type { Params, Workload } from '../bench/workload.ts'
import { getWorkload } from '../bench/workloads/index.ts'

const USAGE = `usage:
  tidepool bench init <workload> --url <postgres://...> [--file F] [--<param> N ...]
  tidepool bench run <workload> --target [name=]<postgres://...> [--target ...] [options] [--<param> N ...]
  tidepool bench report <results dir | results.json> [--html <file>]

run options:
  --workers N          worker processes (default 2)
  --connections N      connections per worker (default 8)
  --duration S         seconds per target (default 30)     --iterations N   cycles per target instead
  --prepare            named prepared statements           --think-time MS  pause after each cycle
  --seed N             random seed, the same for every target (default: a random one, saved)
  --out DIR            where results go (default bench-results/<workload>-<time>)
  --monitor URL        the database to sample (default: the first target that is not a pooler)
  --pg-pid PID|DIR     the postmaster's pid or data dir, for CPU and memory (default: found when local)
  --interval MS        client and database sampling interval (default 1000)
  --pause S            pause between targets (default 2)
workloads: flights, event-logs, train-events, custom (--file F); \`tidepool bench help <workload>\` lists its params`

const RUN_OPTIONS = {
  target: { type: 'string', multiple: true },
  workers: { type: 'string', default: '2' },
  connections: { type: 'string', default: '8' },
  duration: { type: 'string' },
  iterations: { type: 'string' },
  prepare: { type: 'boolean', default: false },
  'think-time': { type: 'string', default: '0' },
  seed: { type: 'string' },
  out: { type: 'string' },
  monitor: { type: 'string' },
  'pg-pid': { type: 'string' },
  interval: { type: 'string', default: '1000' },
  pause: { type: 'string', default: '2' },
  file: { type: 'string' },
} as const satisfies ParseArgsConfig['options']

const INIT_OPTIONS = { url: { type: 'string' }, file: { type: 'string' } } as const satisfies ParseArgsConfig['options']

export async function runBenchCommand(args: string[]): Promise<number> {
  try {
    const [sub, ...rest] = args
    if (sub === 'init') return await init(rest)
    if (sub === 'run') return await run(rest)
    if (sub === 'report') return report(rest)
    if (sub === 'help' && rest.length > 0) return help(rest)
    if (sub === undefined || sub === 'help' || sub === '-h' || sub === '--help') {
      process.stdout.write(USAGE + '\n')
      return sub === undefined ? 2 : 0
    }
    throw usageError(`unknown bench command ${sub}: expected init, run or report`)
  } catch (err) {
    if (err instanceof BenchError) {
      process.stderr.write(`tidepool bench: ${err.message}\n`)
      return err.exitCode
    }
    throw err
  }
}

/** The workload named first, with its params as options beside the command's own. */
function parseWithWorkload<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], own: O) {
  const [name, ...rest] = args
  if (name === undefined || name.startsWith('-')) throw usageError(`name the workload first: flights, event-logs, train-events or custom\n${USAGE}`)
  const fileAt = rest.findIndex((a) => a === '--file' || a.startsWith('--file='))
  const file = fileAt < 0 ? null : rest[fileAt].startsWith('--file=') ? rest[fileAt].slice(7) : rest[fileAt + 1] ?? null
  const workload = getWorkload(name, file)
  const options: NonNullable<ParseArgsConfig['options']> = { ...own }
  for (const p of workload.params) {
    if (p.name in own) throw usageError(`workload param ${p.name} has the name of an option of its own (--${p.name}); rename it`)
    options[p.name] = { type: 'string' }
  }
  let values: Record<string, unknown>
  let positionals: string[]
  try {
    ({ values, positionals } = parseArgs({ args: rest, options, allowPositionals: true, strict: true }))
  } catch (err) {
    throw usageError((err as Error).message.split('\n')[0])
  }
  if (positionals.length > 0) throw usageError(`unexpected argument ${positionals[0]}`)
  const params: Params = {}
  for (const p of workload.params) {
    const raw = values[p.name] as string | undefined
    params[p.name] = raw === undefined ? p.default : numberOption(`--${p.name}`, raw, { integer: p.integer ?? false, min: p.min ?? 0, max: p.max ?? Number.MAX_SAFE_INTEGER })
  }
  return { workload, file, params, values: values as unknown as { [K in keyof O]: O[K] extends { type: 'boolean' } ? boolean : O[K] extends { multiple: true } ? string[] | undefined : string | undefined } }
}

function numberOption(name: string, raw: string, o: { integer: boolean; min: number; max: number }): number {
  const v = Number(raw)
  const kind = o.integer ? 'a whole number' : 'a number'
  const range = o.max === Number.MAX_SAFE_INTEGER ? `>= ${o.min}` : `from ${o.min} to ${o.max}`
  if (raw.trim() === '' || !Number.isFinite(v) || (o.integer && !Number.isInteger(v)) || v < o.min || v > o.max) {
    throw usageError(`${name} must be ${kind} ${range}, got ${raw}`)
  }
  return v
}

async function init(args: string[]): Promise<number> {
  const { workload, params, values } = parseWithWorkload(args, INIT_OPTIONS)
  if (values.url === undefined) throw usageError('bench init needs --url <postgres://...>')
  const sizes = workload.params.filter((p) => p.size).map((p) => `${p.name}=${params[p.name]}`).join(' ')
  process.stderr.write(`initialising ${workload.name}${sizes === '' ? '' : ` (${sizes})`} ...\n`)
  const seconds = await initWorkload(values.url, workload, params)
  process.stdout.write(`${workload.name}: initialised in ${seconds.toFixed(1)} s\n`)
  return 0
}

function parseTargets(list: string[] | undefined): TargetSpec[] {
  if (list === undefined || list.length === 0) throw usageError('bench run needs at least one --target [name=]postgres://...')
  const targets = list.map((arg, i) => {
    const m = /^([A-Za-z0-9_-]+)=(.*)$/.exec(arg)
    const [name, url] = m === null ? [`target${i + 1}`, arg] : [m[1], m[2]]
    if (!/^postgres(ql)?:\/\//.test(url)) throw usageError(`--target ${arg}: expected [name=]postgres://user:password@host:port/database`)
    try {
      new URL(url)
    } catch {
      throw usageError(`--target ${name}: not a valid URL`)
    }
    return { name, url }
  })
  const seen = new Set<string>()
  for (const t of targets) {
    if (seen.has(t.name)) throw usageError(`two targets are named ${t.name}`)
    seen.add(t.name)
  }
  return targets
}

async function run(args: string[]): Promise<number> {
  const { workload, file, params, values: v } = parseWithWorkload(args, RUN_OPTIONS)
  const targets = parseTargets(v.target)
  const int = (name: string, raw: string, min: number, max: number) => numberOption(name, raw, { integer: true, min, max })
  const workers = int('--workers', v.workers!, 1, 1024)
  const connections = int('--connections', v.connections!, 1, 100_000)
  if (v.duration !== undefined && v.iterations !== undefined) throw usageError('give --duration or --iterations, not both')
  const iterations = v.iterations === undefined ? null : int('--iterations', v.iterations, 1, Number.MAX_SAFE_INTEGER)
  const durationS = iterations !== null ? null : v.duration === undefined ? 30 : numberOption('--duration', v.duration, { integer: false, min: 0.1, max: 7 * 86400 })
  const seed = v.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : int('--seed', v.seed, 0, 2 ** 32 - 1)
  let pgPid: number | null = null
  if (v['pg-pid'] !== undefined) {
    pgPid = resolvePgPid(v['pg-pid'])
    if (pgPid === null) throw usageError(`--pg-pid ${v['pg-pid']}: no such process, data directory or postmaster.pid here`)
  }
  if (v.monitor !== undefined && !/^postgres(ql)?:\/\//.test(v.monitor)) throw usageError('--monitor must be a postgres:// URL')
  const out = v.out ?? join('bench-results', `${workload.name}-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`)
  const tty = process.stderr.isTTY === true
  const results = await runBench({
    workload, file, params, targets, workers, connections, durationS, iterations,
    prepare: v.prepare, thinkTimeMs: numberOption('--think-time', v['think-time']!, { integer: false, min: 0, max: 3_600_000 }),
    seed, intervalMs: int('--interval', v.interval!, 100, 60_000), monitorUrl: v.monitor ?? null, pgPid,
    pauseS: numberOption('--pause', v.pause!, { integer: false, min: 0, max: 3600 }),
    progress: (line) => process.stderr.write(tty ? `\r\x1b[2K${line}` : `${line}\n`),
  })
  if (tty) process.stderr.write('\n')
  saveResults(out, results)
  process.stdout.write(renderTables(results))
  process.stdout.write(`\nresults: ${join(out, 'results.json')} (series as CSV beside it); HTML: tidepool bench report ${out}\n`)
  return 0
}

function report(args: string[]): number {
  let parsed
  try {
    parsed = parseArgs({ args, options: { html: { type: 'string' } }, allowPositionals: true })
  } catch (err) {
    throw usageError((err as Error).message.split('\n')[0])
  }
  if (parsed.positionals.length !== 1) throw usageError('usage: tidepool bench report <results dir | results.json> [--html <file>]')
  const { results, dir } = loadResults(parsed.positionals[0])
  const html = parsed.values.html ?? join(dir, 'report.html')
  writeCsv(dir, results)
  writeReport(results, html)
  process.stdout.write(renderTables(results))
  process.stdout.write(`\nreport: ${html}\n`)
  return 0
}

function help(args: string[]): number {
  const [name] = args
  const fileAt = args.indexOf('--file')
  const w: Workload = getWorkload(name, fileAt < 0 ? null : args[fileAt + 1] ?? null)
  process.stdout.write(`${w.name}: ${w.description}\noperations: ${w.ops.join(', ')}\nparams (options of init and run):\n`)
  for (const p of w.params) process.stdout.write(`  --${p.name.padEnd(16)} ${p.doc} (default ${p.default})\n`)
  return 0
}

