// FLEET PAUSE|RESUME|RECONNECT|KILL|RELOAD|ENABLE|DISABLE [db] (tidepool's own): the command runs on
// every live node of the fleet (ha/fleet/commands.ts), each as its own console would run it. The
// answer is one row per node (node, outcome: 'ok' or that node's error, ms: from the issue until its
// acknowledgement reached this node), once every node answered; an ERROR naming the nodes that had
// not by fleet_command_timeout_ms otherwise, with the answers that came as DETAIL.
// FLEET SWITCHOVER db [TO host] [TIMEOUT s]: every live node holds, one promotes, all retarget and
// release (ha/fleet/commands.ts); one row per node (node, outcome, held_ms, phases, ms), or an ERROR
// naming the nodes that did not answer, or why it was aborted, with the rows as DETAIL.

import { FLEET_OPS, type FleetCommandResult, type FleetOp, type FleetSwitchoverResult } from '../../ha/fleet/commands.ts'
import { SqlState } from '../../protocol/pg-error.ts'
import { adminError, requireAdmin, syntaxError, type ConsoleRequest } from '../request.ts'
import { columns, resultReply } from '../result-set.ts'

const FLEET_COLUMNS = columns('ssi', ['node', 'outcome', 'ms'])

function describe(op: FleetOp, db: string | null): string {
  return `FLEET ${op.toUpperCase()}${db === null ? '' : ` ${db}`}`
}

/** The error of a fleet command some live node did not acknowledge in time. */
export function fleetMissingText(op: FleetOp, r: FleetCommandResult): string {
  return `${describe(op, null)}: no answer from ${r.missing.join(', ')} within ${r.timeoutMs} ms`
}

export async function runFleet(req: ConsoleRequest, cmd: string, arg: string): Promise<Buffer> {
  const op = cmd.toLowerCase()
  if (!(FLEET_OPS as readonly string[]).includes(op)) throw syntaxError(req)
  requireAdmin(req)
  const db = arg === '' ? null : arg
  let r: FleetCommandResult
  try {
    r = await req.view.fleetCommand(op as FleetOp, db)
  } catch (err) {
    throw adminError((err as Error).message)
  }
  if (r.missing.length > 0) {
    throw adminError(fleetMissingText(op as FleetOp, r), SqlState.QueryCanceled,
      r.rows.length === 0 ? 'no node answered' : `answered: ${r.rows.map((x) => `${x.node} ${x.outcome} in ${x.ms} ms`).join(', ')}`)
  }
  return resultReply({ columns: FLEET_COLUMNS, rows: r.rows.map((x) => [x.node, x.outcome, x.ms]) }, 'FLEET')
}

const FLEET_SWITCHOVER_COLUMNS = columns('ssiis', ['node', 'outcome', 'held_ms', 'ms', 'phases'])

/** Why a FLEET SWITCHOVER failed as a whole (aborted, a node missing or failed), or null when every node switched. */
export function fleetSwitchoverError(db: string, r: FleetSwitchoverResult): string | null {
  const what = `FLEET SWITCHOVER ${db}`
  if (r.missing.length > 0) return `${what}: no answer from ${r.missing.join(', ')} within ${r.timeoutMs} ms${r.error === null ? '' : ` (${r.error})`}`
  if (r.error !== null) return `${what} aborted, every node released: ${r.error}`
  const failed = r.rows.filter((x) => x.outcome !== 'ok')
  return failed.length === 0 ? null : `${what}: failed on ${failed.map((x) => `${x.node} (${x.outcome})`).join(', ')}`
}

export async function runFleetSwitchover(req: ConsoleRequest, db: string, to: string | null, timeoutS: number | null): Promise<Buffer> {
  requireAdmin(req)
  if (timeoutS !== null && !(timeoutS > 0)) throw adminError('bad arguments')
  let r: FleetSwitchoverResult
  try {
    r = await req.view.fleetSwitchover(db, to, timeoutS === null ? null : timeoutS * 1000)
  } catch (err) {
    throw adminError((err as Error).message)
  }
  const error = fleetSwitchoverError(db, r)
  if (error !== null) {
    throw adminError(error, SqlState.QueryCanceled,
      r.rows.length === 0 ? 'no node answered' : `answered: ${r.rows.map((x) => `${x.node} ${x.outcome} (held ${x.held_ms ?? 0} ms)`).join(', ')}`)
  }
  return resultReply({ columns: FLEET_SWITCHOVER_COLUMNS, rows: r.rows.map((x) => [x.node, x.outcome, x.held_ms ?? 0, x.ms, x.phases ?? '']) }, 'FLEET')
}
