// SET key = value. The parameters clients set by habit are acknowledged and ignored, as PgBouncer
// does; any other key changes the setting as the config file would (live settings only) and
// answers PgBouncer's tag `SET key=value`. Every refusal is PgBouncer's one text, "SET failed";
// the DETAIL (ours) says why, where PgBouncer only logs it. console.ts parses the statement.

import { SqlState } from '../../protocol/pg-error.ts'
import { adminError, requireAdmin, type ConsoleRequest } from '../request.ts'
import { doneReply } from '../result-set.ts'
import { FAKE_PARAMS } from '../show/help.ts'

export async function runSet(req: ConsoleRequest, key: string, value: string): Promise<Buffer> {
  if (FAKE_PARAMS.has(key.toLowerCase())) return doneReply('SET', [{ message: 'SET ignored' }])
  requireAdmin(req)
  const r = await req.view.set(key, value)
  if (!r.ok) throw adminError('SET failed', SqlState.ProtocolViolation, r.reason)
  return doneReply(`SET ${key}=${value}`, r.warnings.map((w) => ({ message: w })))
}
