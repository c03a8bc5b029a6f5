// What each signal does to a running pooler, PgBouncer 1.23+'s meanings: SIGHUP reloads, SIGTERM
// waits for clients to leave (a second SIGTERM: at once), SIGINT waits for transactions to
// finish, SIGQUIT stops at once. One table, used by the single process (cli/start.ts, from the
// OS) and by every worker (src/workers/, from the primary, which forwards each signal it gets),
// so a signal does the same whichever process model runs.
// Must not: exit on its own; `exit` is the caller's.

import type { ShutdownMode } from '../admin/console.ts'

/** What a signal may ask of the runtime. */
export interface SignalTarget {
  reload(): Promise<unknown>
  shutdown(mode: ShutdownMode): Promise<void>
}

/** The signals tidepool acts on; the primary forwards exactly these. */
export const HANDLED_SIGNALS = ['SIGHUP', 'SIGTERM', 'SIGINT', 'SIGQUIT'] as const
export type HandledSignal = (typeof HANDLED_SIGNALS)[number]

/** Those that end the process: the primary stops replacing workers once one arrives. */
export const STOP_SIGNALS: ReadonlySet<HandledSignal> = new Set(['SIGTERM', 'SIGINT', 'SIGQUIT'])

/** The action of each signal on `rt`; `exit` runs once a shutdown has finished. */
export function signalActions(rt: SignalTarget, exit: () => void): Record<HandledSignal, () => void> {
  let isStopping = false
  const stop = (mode: ShutdownMode) => {
    const m = isStopping && mode !== 'transactions' ? 'immediate' : mode
    isStopping = true
    void rt.shutdown(m).then(exit)
  }
  return {
    SIGHUP: () => void rt.reload(),
    SIGTERM: () => stop('clients'),
    SIGINT: () => stop('transactions'),
    SIGQUIT: () => stop('immediate'),
  }
}
