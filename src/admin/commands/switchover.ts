// SWITCHOVER db [TO host] [TIMEOUT seconds] (tidepool's own): runs ha/switchover.ts through the
// view and answers one row per phase; a switchover that failed (traffic released anyway) is an
// ERROR naming why, with the phases it went through as DETAIL.

import type { SwitchoverReport } from '../../ha/switchover.ts'
import { SqlState } from '../../protocol/pg-error.ts'
import { adminError, requireAdmin, type ConsoleRequest } from '../request.ts'
import { columns, resultReply } from '../result-set.ts'

const SWITCHOVER_PHASE_COLUMNS = columns('sis', ['phase', 'ms', 'note'])

export async function runSwitchover(req: ConsoleRequest, db: string, to: string | null, timeoutS: number | null): Promise<Buffer> {
  requireAdmin(req)
  if (timeoutS !== null && !(timeoutS > 0)) throw adminError('bad arguments')
  let r: SwitchoverReport
  try {
    r = await req.view.switchover(db, to, timeoutS === null ? null : timeoutS * 1000)
  } catch (err) {
    throw adminError((err as Error).message)
  }
  if (!r.ok) {
    throw adminError(`switchover of ${db} failed: ${r.error ?? 'unknown reason'}`, SqlState.ProtocolViolation,
      `phases: ${r.phases.map((p) => `${p.name} ${p.ms} ms${p.note === '' ? '' : ` (${p.note})`}`).join(', ') || 'none (nothing was held)'}`)
  }
  return resultReply({ columns: SWITCHOVER_PHASE_COLUMNS, rows: r.phases.map((p) => [p.name, p.ms, p.note]) }, 'SWITCHOVER')
}
