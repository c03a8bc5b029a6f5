// What each signal does to a running pooler, PgBouncer's meanings: SIGHUP reloads, SIGTERM waits
// for clients to leave, SIGINT waits for transactions to finish, SIGQUIT stops at once, SIGUSR1
// pauses and SIGUSR2 resumes (the console's PAUSE and RESUME, run as an admin would type them, so
// their refusals are the console's: already paused, not paused, shutting down). A stop signal while
// any shutdown runs (a second SIGINT or SIGTERM, or one after a console SHUTDOWN) or during a
// SUSPEND stops at once, as PgBouncer's.
// One table, used by the single process (cli/start.ts, from the OS) and by every worker
// (src/workers/, from the primary, which forwards each signal it gets), so a signal does the same
// whichever process model runs.
// Must not: exit on its own; `exit` is the caller's.

import type { ShutdownMode } from '../admin/console.ts'
import type { Logger } from '../observe/log.ts'
import { BackendCode } from '../protocol/codes.ts'
import { parseErrorFields } from '../protocol/reader.ts'

/** What a signal may ask of the runtime. */
export interface SignalTarget {
  readonly log: Logger
  readonly isShuttingDown: boolean
  readonly admin: { readonly isSuspended: boolean }
  reload(): Promise<unknown>
  shutdown(mode: ShutdownMode): Promise<void>
  /** The admin console: one query, its complete reply. */
  consoleQuery(sql: string, isAdmin: boolean): Promise<Buffer>
}

/** The signals tidepool acts on; the primary forwards exactly these. */
export const HANDLED_SIGNALS = ['SIGHUP', 'SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const
export type HandledSignal = (typeof HANDLED_SIGNALS)[number]

/** Those that end the process: the primary stops replacing workers once one arrives. */
export const STOP_SIGNALS: ReadonlySet<HandledSignal> = new Set(['SIGTERM', 'SIGINT', 'SIGQUIT'])

/** The action of each signal on `rt`; `exit` runs once a shutdown has finished. */
export function signalActions(rt: SignalTarget, exit: () => void): Record<HandledSignal, () => void> {
  const stop = (sig: HandledSignal, mode: ShutdownMode) => {
    const why = rt.isShuttingDown ? 'while shutting down' : rt.admin.isSuspended ? 'during SUSPEND' : null
    if (why !== null && mode !== 'immediate') rt.log.info('signal.received', null, `got ${sig} ${why}, stopping at once`)
    const m = why !== null ? 'immediate' : mode
    void rt.shutdown(m).then(exit)
  }
  return {
    SIGHUP: () => void rt.reload(),
    SIGTERM: () => stop('SIGTERM', 'clients'),
    SIGINT: () => stop('SIGINT', 'transactions'),
    SIGQUIT: () => stop('SIGQUIT', 'immediate'),
    SIGUSR1: () => consoleCommand(rt, 'SIGUSR1', 'PAUSE'),
    SIGUSR2: () => consoleCommand(rt, 'SIGUSR2', 'RESUME'),
  }
}

/** Runs a console command for a signal and logs how it ended: done, or the console's refusal. */
function consoleCommand(rt: SignalTarget, sig: HandledSignal, sql: string): void {
  rt.log.info('signal.received', null, `got ${sig}: ${sql}`)
  rt.consoleQuery(sql, true).then(
    (reply) => {
      if (reply[0] !== BackendCode.ErrorResponse) return rt.log.info('signal.handled', null, `${sig}: ${sql} done`)
      const e = parseErrorFields(reply, 5, 1 + reply.readInt32BE(1))
      rt.log.info('signal.refused', null, `${sig}: ${sql} not done: ${e.message}`)
    },
    (err: unknown) => rt.log.error('signal.failed', null, `${sig}: ${sql} failed: ${(err as Error).message}`),
  )
}
