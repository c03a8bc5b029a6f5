// PAUSE [db], RESUME [db] and SUSPEND, with PgBouncer's refusals: one pause or suspend at a time,
// never the console's own database, RESUME only of what is paused and not during shutdown.

import { SqlState } from '../../protocol/pg-error.ts'
import { ADMIN_DB, adminError, isKnownDatabase, requireAdmin, syntaxError, type ConsoleRequest } from '../request.ts'
import { doneReply } from '../result-set.ts'

/** Answers once no server of the paused database(s) is active, as PgBouncer does. */
export async function runPause(req: ConsoleRequest, arg: string): Promise<Buffer> {
  requireAdmin(req)
  const view = req.view
  if (view.isPaused(null) || view.isSuspended) throw adminError('already suspended/paused')
  if (arg !== '') {
    if (!isKnownDatabase(req, arg)) throw adminError(`no such database: ${arg}`)
    if (arg === ADMIN_DB) throw adminError(`cannot pause admin db: ${arg}`)
  }
  try {
    await view.pause(arg === '' ? null : arg)
  } catch (err) {
    // pause_timeout_ms ran out: say what it waited for; the pause stays in effect.
    throw adminError((err as Error).message, SqlState.QueryCanceled)
  }
  return doneReply('PAUSE')
}

export async function runResume(req: ConsoleRequest, arg: string): Promise<Buffer> {
  requireAdmin(req)
  const view = req.view
  if (arg === '') {
    if (view.isShuttingDown) throw adminError('pooler is shutting down')
    if (!view.isPaused(null) && !view.isSuspended) throw adminError('pooler is not paused/suspended')
    await view.resume(null)
  } else {
    if (!isKnownDatabase(req, arg)) throw adminError(`no such database: ${arg}`)
    if (!view.isPaused(arg)) throw adminError(`database ${arg} is not paused`)
    await view.resume(arg)
  }
  return doneReply('RESUME')
}

/** SUSPEND: answers once every socket but the console's is flushed and no longer read. */
export async function runSuspend(req: ConsoleRequest, arg: string): Promise<Buffer> {
  if (arg !== '') throw syntaxError(req)
  requireAdmin(req)
  const view = req.view
  if (view.isPaused(null) || view.isSuspended) throw adminError('already suspended/paused')
  // PgBouncer: a paused database holds clients whose buffers could never be flushed.
  if (view.hasPausedDatabases()) throw adminError('cannot suspend with paused databases')
  await view.suspend()
  return doneReply('SUSPEND')
}
