// KILL [db] (drop the clients and servers of one database, or of every one, now; new clients
// wait until RESUME db) and KILL_CLIENT id.

import { adminError, knownDbOrAll, requireAdmin, type ConsoleRequest } from '../request.ts'
import { doneReply } from '../result-set.ts'

export async function runKill(req: ConsoleRequest, arg: string): Promise<Buffer> {
  requireAdmin(req)
  await req.view.kill(knownDbOrAll(req, arg))
  return doneReply('KILL')
}

/** The id is SHOW CLIENTS's numeric `id` column. */
export async function runKillClient(req: ConsoleRequest, arg: string): Promise<Buffer> {
  requireAdmin(req)
  const id = Number(arg)
  if (arg === '' || !Number.isInteger(id) || id < 0) throw adminError('bad arguments')
  if (!(await req.view.killClient(id))) throw adminError(`client ${arg} not found`)
  return doneReply('KILL_CLIENT')
}
