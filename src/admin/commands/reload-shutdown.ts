// RELOAD (re-read the config file; rejected whole on any error) and SHUTDOWN [WAIT_FOR_SERVERS |
// WAIT_FOR_CLIENTS], both done by the runtime through the view.

import { SqlState } from '../../protocol/pg-error.ts'
import { adminError, requireAdmin, syntaxError, type ConsoleRequest } from '../request.ts'
import { doneReply } from '../result-set.ts'
import type { ShutdownMode } from '../view.ts'

export async function runReload(req: ConsoleRequest, arg: string): Promise<Buffer> {
  if (arg !== '') throw syntaxError(req)
  requireAdmin(req)
  let r: { ok: boolean; errors: string[] }
  try {
    r = await req.view.reload()
  } catch (err) {
    r = { ok: false, errors: [(err as Error).message] }
  }
  if (!r.ok) {
    // PgBouncer's text and SQLSTATE; the detail (ours) names what the log says.
    throw adminError('RELOAD failed, see logs for additional details', SqlState.ConfigFileError, r.errors.length > 0 ? r.errors.join('\n') : undefined)
  }
  return doneReply('RELOAD')
}

const SHUTDOWN_MODES: ReadonlyMap<string, ShutdownMode> = new Map([['', 'immediate'], ['WAIT_FOR_SERVERS', 'transactions'], ['WAIT_FOR_CLIENTS', 'clients']])

export function runShutdown(req: ConsoleRequest, arg: string): Buffer {
  const mode = SHUTDOWN_MODES.get(arg.toUpperCase())
  if (mode === undefined) throw syntaxError(req)
  requireAdmin(req)
  req.view.shutdown(mode)
  // PgBouncer answers an immediate SHUTDOWN with nothing: the connection ends with the process.
  return mode === 'immediate' ? Buffer.alloc(0) : doneReply('SHUTDOWN')
}
