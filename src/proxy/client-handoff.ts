// What a logged-in client is, written down so that another tidepool process can go on with its
// session (an online restart, runtime/takeover.ts): who it is, the session its server connections
// must match (tracked parameters, other GUCs it set), its protocol-level prepared statements, and
// the cancel key it was given. Plain JSON: the two processes may run different Node.js versions,
// whose structured-clone formats need not agree.
// Must not: hold anything that lives in one process only (a server connection, a TLS session):
// a client that has such a thing is not handed over.

import { statementFromParse, type ClientStatements } from './prepared.ts'

export interface ClientHandoff {
  readonly database: string
  readonly user: string
  readonly isUnix: boolean
  readonly connectedAtMs: number
  readonly cancelPid: number
  readonly cancelSecret: number
  /** Tracked parameters as the client's session has them (canonical name, value). */
  readonly params: ReadonlyArray<readonly [string, string]>
  /** Other GUCs the client set, as its last session probe read them. */
  readonly gucs: ReadonlyArray<readonly [string, string]>
  /** Custom GUC and role names the client named in SET/RESET (the probe asks for them). */
  readonly gucNames: readonly string[]
  /** Prepared statements: client name, registry key (latin1), Parse message (base64), scan flags. */
  readonly statements: ReadonlyArray<readonly [string, string, string, number]>
  /** The pool's welcome parameters, for a new process whose pool has not logged a server in yet. */
  readonly welcome: ReadonlyArray<readonly [string, string]>
}

export function statementsOut(ps: ClientStatements | null): Array<[string, string, string, number]> {
  if (ps === null) return []
  const out: Array<[string, string, string, number]> = []
  for (const [name, s] of ps.entries()) out.push([name, s.key, s.parseMsg.toString('base64'), s.scanFlags])
  return out
}

export function statementsIn(ps: ClientStatements, rows: ClientHandoff['statements']): void {
  for (const [name, key, parse, flags] of rows) ps.add(name, statementFromParse(key, Buffer.from(parse, 'base64'), flags))
}
