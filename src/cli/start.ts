// `tidepool <file.ini>`: load the config, start the runtime, and wire the signals the way PgBouncer
// 1.23+ does: SIGHUP reloads, SIGTERM waits for clients to leave (a second SIGTERM: at once),
// SIGINT waits for transactions to finish, SIGQUIT stops at once.

import fs from 'node:fs'
import { loadConfig } from '../config/load.ts'
import { Runtime } from '../runtime.ts'
import { Logger } from '../observe/log.ts'

export async function runStart(file: string, opts: { verbose: number; quiet: boolean }): Promise<number> {
  const r = await loadConfig(file)
  const log = new Logger()
  for (const w of r.warnings) log.warn('config.warning', null, w)
  if (!r.ok) {
    for (const e of r.errors) log.error('config.rejected', null, e)
    return 2
  }
  if (r.config.settings.logfile !== '') {
    const out = fs.createWriteStream(r.config.settings.logfile, { flags: 'a' })
    log.sink = opts.quiet ? (l) => out.write(l + '\n') : (l) => { out.write(l + '\n'); process.stderr.write(l + '\n') }
  } else if (opts.quiet) {
    log.sink = () => {}
  }
  let rt: Runtime
  try {
    rt = await Runtime.start(r.config, { log })
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
  let isStopping = false
  const stop = (mode: 'immediate' | 'transactions' | 'clients') => {
    const m = isStopping && mode !== 'transactions' ? 'immediate' : mode
    isStopping = true
    void rt.shutdown(m).then(() => process.exit(0))
  }
  rt.onShutdownComplete = () => process.exit(0)
  process.on('SIGHUP', () => void rt.reload())
  process.on('SIGTERM', () => stop('clients'))
  process.on('SIGINT', () => stop('transactions'))
  process.on('SIGQUIT', () => stop('immediate'))
  return 0
}
