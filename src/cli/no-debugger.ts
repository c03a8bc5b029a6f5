// No debugger in a pooler: an inspector port runs any code with tidepool's rights and reads every
// password and query that passes through. Node opens one on 127.0.0.1:9229 when the process gets
// SIGUSR1 and nothing listens for it, and at start with --inspect (or --debug) in its arguments or
// in NODE_OPTIONS. This module is evaluated first (bin/tidepool.mjs imports it before anything else,
// src/main.ts as its first import): a debugger flag or an inspector already open ends the process
// with exit code 2 and a message, and SIGUSR1/SIGUSR2 are taken at once, so that neither opens the
// inspector nor kills the process (SIGUSR2's default) before the runtime gives them PgBouncer's
// meanings (PAUSE, RESUME; runtime/signals.ts). --inspect-brk stops Node before any code runs and
// cannot be refused from here; it still needs someone to attach.
// Must not: import anything of tidepool's; it runs before the rest is loaded.

import inspector from 'node:inspector'

/** --inspect, --inspect-brk, --inspect-port=..., --inspect-wait, --debug, --debug-port=..., ... */
const DEBUGGER_FLAG = /^--(inspect|debug)(-[a-z-]+)?(=.*)?$/

/** The debugger flags among Node's own arguments and NODE_OPTIONS. */
function debuggerFlags(execArgv: readonly string[], nodeOptions: string): string[] {
  const options = nodeOptions.split(/\s+/).map((o) => o.replace(/^["']|["']$/g, ''))
  return [...execArgv, ...options].filter((a) => DEBUGGER_FLAG.test(a))
}

const found = debuggerFlags(process.execArgv, process.env.NODE_OPTIONS ?? '')
const openUrl = inspector.url()
if (found.length > 0 || openUrl !== undefined) {
  inspector.close()
  const what = found.length > 0 ? found.join(' ') : `an inspector open at ${openUrl}`
  process.stderr.write(`tidepool: refusing to run with a debugger (${what}): an inspector port would let anyone who reaches it run code in the pooler and read its passwords; start tidepool without --inspect/--debug in its arguments and NODE_OPTIONS\n`)
  process.exit(2)
}

const ignore = (): void => {}
process.on('SIGUSR1', ignore)
process.on('SIGUSR2', ignore)
