// `tidepool <file.ini>`: load the config, then run the pooler: one process (workers = 1), or a
// primary that starts the workers (src/workers/), or, in a process the primary started, one
// worker. Signals act as PgBouncer 1.23+'s (runtime/signals.ts); with workers the primary
// forwards them to every worker.

import cluster from 'node:cluster'
import os from 'node:os'
import { loadConfig } from '../config/load.ts'
import type { Config } from '../config/types.ts'
import { MAX_WORKERS } from '../config/setting-types.ts'
import { Runtime } from '../runtime.ts'
import { Logger, fileSink } from '../observe/log.ts'
import { HANDLED_SIGNALS, signalActions } from '../runtime/signals.ts'
import { ENV_INDEX } from '../workers/ipc.ts'
import { TakeoverControl, isTakeoverChild, receiveInheritance, runtimeAsOld, serveAsSuccessor } from '../runtime/takeover.ts'

export async function runStart(file: string, opts: { verbose: number; quiet: boolean; takeover?: boolean; takeoverTimeoutS?: number | null }): Promise<number> {
  const r = await loadConfig(file)
  const log = new Logger()
  for (const w of r.warnings) log.warn('config.warning', null, w)
  if (!r.ok) {
    for (const e of r.errors) log.error('config.rejected', null, e)
    return 2
  }
  if (opts.takeover === true) {
    const { runTakeover, DEFAULT_TAKEOVER_TIMEOUT_S } = await import('./takeover.ts')
    return runTakeover(r.config, opts.takeoverTimeoutS ?? DEFAULT_TAKEOVER_TIMEOUT_S)
  }
  try {
    setLogSink(log, r.config, opts.quiet)
  } catch (err) {
    log.error('runtime.failed', null, `cannot open logfile ${r.config.settings.logfile}: ${(err as Error).message}`)
    return 1
  }
  if (opts.verbose > 0) log.debugEnabled = true
  if (cluster.isWorker && process.env[ENV_INDEX] !== undefined) {
    const { runWorker } = await import('../workers/worker.ts')
    await runWorker(r.config, log)
    return 0
  }
  const count = workerCount(r.config)
  if (count > 1) {
    const { Primary } = await import('../workers/primary.ts')
    return new Primary(r.config, log, count).start()
  }
  const isSuccessor = isTakeoverChild()
  let rt: Runtime
  try {
    rt = await Runtime.start(r.config, { log, inherited: isSuccessor ? await receiveInheritance(r.config.settings) : undefined })
  } catch (err) {
    const e = err as Error & { code?: string }
    if (e.code === 'TP_CONFIG_INVALID') {
      for (const line of e.message.split('\n')) log.error('config.rejected', null, line)
      return 2
    }
    log.error('runtime.failed', null, `could not start: ${e.message}`)
    return 1
  }
  if (opts.verbose > 0) log.debugEnabled = true
  rt.onShutdownComplete = () => process.exit(0)
  const actions = signalActions(rt, () => process.exit(0))
  for (const sig of HANDLED_SIGNALS) process.on(sig, actions[sig])
  if (isSuccessor) serveAsSuccessor(rt, log)
  else await new TakeoverControl(runtimeAsOld(rt), log).start().catch((err: unknown) => log.warn('takeover.control_failed', null, `no online restart for this process: cannot open its control socket: ${(err as Error).message}`))
  return 0
}

/** `workers`: 0 means auto, one per CPU the process may use. */
export function workerCount(config: Config): number {
  const n = config.settings.workers
  return n === 0 ? Math.min(MAX_WORKERS, os.availableParallelism()) : n
}

function setLogSink(log: Logger, config: Config, isQuiet: boolean): void {
  if (config.settings.logfile !== '') {
    log.sink = fileSink(config.settings.logfile, !isQuiet)
  } else if (isQuiet) {
    log.sink = () => {}
  }
}
