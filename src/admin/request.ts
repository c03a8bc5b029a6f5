// One console query being answered: its text, the view, who asks and when, plus the refusals every
// command shares (PgBouncer's admin_error texts) and the rules for a database named as argument.
// A ConsoleError thrown anywhere below runConsoleQuery becomes an ERROR reply; nothing else is sent.

import { SqlState } from '../protocol/pg-error.ts'
import type { ConsoleView } from './view.ts'

/** PgBouncer's admin database and the user its console pool is shown under. */
export const ADMIN_DB = 'pgbouncer'
export const ADMIN_USER = 'pgbouncer'

export interface ConsoleRequest {
  sql: string
  view: ConsoleView
  /** Listed in admin_users (or the console's own user); stats_users may only SHOW. */
  isAdmin: boolean
  /** The time every value of the reply is computed at (tests fix it). */
  nowMs: number
}

export class ConsoleError extends Error {
  constructor(readonly code: string, message: string, readonly detail?: string) {
    super(message)
  }
}

/** PgBouncer's admin_error: ERROR, 08P01 unless told otherwise. */
export function adminError(message: string, code: string = SqlState.ProtocolViolation, detail?: string): ConsoleError {
  return new ConsoleError(code, message, detail)
}

export function syntaxError(req: ConsoleRequest): ConsoleError {
  // PgBouncer formats into a 1024-byte buffer: the text is cut, never refused.
  return adminError(`invalid command '${req.sql}', use SHOW HELP;`.slice(0, 1023))
}

export function requireAdmin(req: ConsoleRequest): void {
  if (!req.isAdmin) throw adminError('admin access needed')
}

/** A database a command may name: configured, made on demand through '*', or the console's own. */
export function isKnownDatabase(req: ConsoleRequest, name: string): boolean {
  const dbs = req.view.config().databases
  return name === ADMIN_DB || dbs.has(name) || dbs.has('*')
}

/** The database a command names, which must exist (and not be the console's own). */
export function requiredDb(req: ConsoleRequest, arg: string): string {
  if (arg === '') throw adminError('bad arguments')
  if (!isKnownDatabase(req, arg)) throw adminError(`no such database: ${arg}`)
  if (arg === ADMIN_DB) throw adminError(`cannot use admin db: ${arg}`)
  return arg
}

/** No argument: every database (null); else requiredDb's. */
export function knownDbOrAll(req: ConsoleRequest, arg: string): string | null {
  return arg === '' ? null : requiredDb(req, arg)
}
