// RECONNECT [db] (close every server once released) and WAIT_CLOSE [db] (answer once the servers
// RECONNECT or RELOAD marked are gone); DISABLE db / ENABLE db (refuse or allow new logins).

import { knownDbOrAll, requireAdmin, requiredDb, type ConsoleRequest } from '../request.ts'
import { doneReply } from '../result-set.ts'

export async function runReconnect(req: ConsoleRequest, arg: string): Promise<Buffer> {
  requireAdmin(req)
  await req.view.reconnect(knownDbOrAll(req, arg))
  return doneReply('RECONNECT')
}

export async function runWaitClose(req: ConsoleRequest, arg: string): Promise<Buffer> {
  requireAdmin(req)
  await req.view.waitClose(knownDbOrAll(req, arg))
  return doneReply('WAIT_CLOSE')
}

export async function runDisable(req: ConsoleRequest, arg: string): Promise<Buffer> {
  requireAdmin(req)
  await req.view.setDisabled(requiredDb(req, arg), true)
  return doneReply('DISABLE')
}

export async function runEnable(req: ConsoleRequest, arg: string): Promise<Buffer> {
  requireAdmin(req)
  await req.view.setDisabled(requiredDb(req, arg), false)
  return doneReply('ENABLE')
}
