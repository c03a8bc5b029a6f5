// The admin console session: a client of the virtual database "pgbouncer" after login. Each simple
// Query goes to ProxyContext.consoleQuery (Runtime runs it with admin/), one at a time so that the
// replies keep their order while PAUSE or WAIT_CLOSE wait. One ConsoleSession per console client;
// pooled clients have none.
// Must not: import admin/ (the context runs the queries), or accept the extended query protocol.

import type net from 'node:net'
import { FrontendCode, TxStatus } from '../protocol/codes.ts'
import * as build from '../protocol/build.ts'
import type { Framer } from '../protocol/framer.ts'
import { parseQueryText } from '../protocol/reader.ts'
import { ClientErrors, type ClientFailure } from '../protocol/client-errors.ts'
import { SqlState } from '../protocol/pg-error.ts'
import type { Settings } from '../config/settings.ts'
import type { LogSubject } from '../observe/log.ts'
import type { ProxyContext } from './context.ts'

export const CONSOLE_DB = 'pgbouncer'
/** The user name that, from tidepool's own OS user over the unix socket, is an admin without a password. */
export const CONSOLE_OWN_USER = 'pgbouncer'

/** What the console session needs of its client connection (ClientConn implements it). */
export interface ConsoleClient extends LogSubject {
  readonly socket: net.Socket
  readonly ctx: ProxyContext
  readonly framer: Framer
  readonly isClosed: boolean
  fail(err: ClientFailure): void
  close(reason: string, isQuiet?: boolean): void
}

/** The ParameterStatus set PgBouncer's console sends. */
const CONSOLE_WELCOME: ReadonlyArray<readonly [string, string]> = [
  ['server_version', '0.1.0/bouncer'], ['client_encoding', 'UTF8'], ['server_encoding', 'UTF8'], ['DateStyle', 'ISO'],
  ['TimeZone', 'GMT'], ['standard_conforming_strings', 'on'], ['is_superuser', 'on'],
]

/** admin_users may run everything, stats_users only SHOW; null: not let in. */
export function consoleRole(st: Settings, user: string): 'admin' | 'stats' | null {
  if (st.admin_users.includes(user)) return 'admin'
  return st.stats_users.includes(user) ? 'stats' : null
}

/** The end of a console login in one write: AuthenticationOk, PgBouncer's parameters, the cancel key, ReadyForQuery. */
export function consoleWelcome(backendKeyData: Buffer): Buffer {
  const parts: Buffer[] = [build.authenticationOk()]
  for (const [name, value] of CONSOLE_WELCOME) parts.push(build.parameterStatus(name, value))
  parts.push(backendKeyData, build.readyForQuery(TxStatus.Idle))
  return Buffer.concat(parts)
}

export class ConsoleSession {
  private isBusy = false
  private readonly queue: string[] = []

  constructor(private readonly client: ConsoleClient, private readonly isAdmin: boolean) {}

  onData(chunk: Buffer): void {
    const c = this.client
    const f = c.framer
    f.push(chunk)
    while (f.next()) {
      if (f.code === FrontendCode.Terminate) return c.close('client close request', true)
      if (f.code === FrontendCode.Parse || f.code === FrontendCode.Bind || f.code === FrontendCode.Execute) {
        return this.fail('extended query protocol not supported by admin console')
      }
      if (f.code !== FrontendCode.Query) return this.fail(`unsupported packet type for admin console: ${describeCode(f.code)}`)
      const sql = parseQueryText(f.buf, f.start + 5, f.end)
      // One query at a time: PAUSE may wait, and the replies must keep their order.
      this.queue.push(sql)
    }
    this.runQueue()
  }

  private runQueue(): void {
    const c = this.client
    if (this.isBusy || this.queue.length === 0 || c.isClosed) return
    const sql = this.queue.shift() as string
    this.isBusy = true
    c.ctx.readGate.setReading(c.socket, false)
    c.ctx.consoleQuery(sql, this.isAdmin).then(
      (reply) => {
        this.isBusy = false
        if (c.isClosed) return
        if (reply.length > 0) c.socket.write(reply)
        c.ctx.readGate.setReading(c.socket, true)
        this.runQueue()
      },
      (err: unknown) => {
        this.isBusy = false
        c.ctx.log.error('client.internal_error', c, `admin console failed: ${(err as Error).stack ?? String(err)}`)
        c.fail(ClientErrors.internalError)
      },
    )
  }

  private fail(message: string): void {
    // Not in the work phase: the client is closed after the ERROR, whose log lines come first.
    this.client.fail({ severity: 'ERROR', code: SqlState.ProtocolViolation, message, reason: message })
  }
}

/** A message type byte as an operator reads it: the letter, or hex for a non-printable byte. */
export function describeCode(code: number): string {
  return code >= 0x20 && code < 0x7f ? `'${String.fromCharCode(code)}'` : `0x${code.toString(16)}`
}
