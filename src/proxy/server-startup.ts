// A server connection's login, from TCP connect to the first ReadyForQuery: SSLRequest and the TLS
// upgrade (server_tls_sslmode), the StartupMessage, the authentication exchange (auth/server-login.ts),
// and the ParameterStatus and BackendKeyData that come before ReadyForQuery. One ServerStartup per
// server connection, dropped once it is logged in (ServerConn.finishLogin).
// Must not: decide what a failed login means for the pool or the host (ServerConn.failLogin does).

import type net from 'node:net'
import { connectServerTls, type ServerTls } from '../net/tls.ts'
import { peerEndPoint } from '../net/channel-binding.ts'
import { isUnixHost } from '../net/dial.ts'
import { inspectTable, type Framer } from '../protocol/framer.ts'
import { AuthCode, BackendCode } from '../protocol/codes.ts'
import * as build from '../protocol/build.ts'
import { parseBackendKeyData, parseErrorFields, parseParameterStatus } from '../protocol/reader.ts'
import { SqlState } from '../protocol/pg-error.ts'
import type { ClientFailure } from '../protocol/client-errors.ts'
import { TidepoolError } from '../util/errors.ts'
import { ServerAuth, type ServerAuthPolicy } from '../auth/server-login.ts'
import { parseScramVerifier } from '../auth/scram-server.ts'
import type { ProxyContext, WatchedHost } from './context.ts'
import type { ServerSession } from './server-session.ts'

/** Where and as whom a pool's servers log in. */
export interface ServerTarget {
  host: string
  port: number
  database: string
  user: string
  password: string | null
  /** Extra startup parameters (client_encoding, datestyle, timezone from the [databases] entry). */
  startupParams: Record<string, string>
  connectQuery: string | null
  /** What the server may ask of the login: require_auth and the SCRAM iteration cap. */
  authPolicy: ServerAuthPolicy
  /** The monitored host this connection goes to (watched entries only): counted for leastconn, banned on failure. */
  watchedHost?: WatchedHost
}

/** What the login needs of its server connection (ServerConn implements it). */
export interface StartingServer {
  socket: net.Socket
  readonly target: ServerTarget
  readonly framer: Framer
  readonly session: ServerSession
  backendPid: number
  backendSecret: number
  readonly isClosed: boolean
  /** Bytes from the TLS socket, once it replaced the TCP one. */
  onData(chunk: Buffer): void
  close(reason: string): void
  /** The login failed: the clients waiting for the pool hear `failure`. */
  failLogin(failure: ClientFailure): void
  /** ReadyForQuery: the server is logged in. */
  finishLogin(): void
}

const SSL_REQUEST = build.sslRequest()
/** Handed to onData (by identity) to go on with the login once an asynchronous answer is sent. */
const RESUME = Buffer.alloc(0)

const LOGIN_INSPECT = inspectTable([
  BackendCode.Authentication, BackendCode.ParameterStatus, BackendCode.BackendKeyData, BackendCode.ErrorResponse,
  BackendCode.ReadyForQuery, BackendCode.NoticeResponse, BackendCode.NegotiateProtocolVersion,
])

export class ServerStartup {
  private auth: ServerAuth | null
  /** Set between our SSLRequest and the server's one-byte answer. */
  private tlsAnswerPending: ServerTls | null = null
  /** ReadyForQuery arrived: a later TLS error closes a logged-in connection instead of failing a login. */
  private isDone = false
  /**
   * While our answer to the server is being computed (SCRAM's PBKDF2 on the threadpool), what the
   * server sends waits here, so messages are still handled in order; null otherwise.
   */
  private queued: Buffer[] | null = null

  /** `secret`: the password or stored verifier the server login uses (null: none). */
  constructor(private readonly server: StartingServer, secret: string | null, private readonly ctx: ProxyContext) {
    const user = server.target.user
    this.auth = new ServerAuth(user, secret, undefined, scramKeysFor(user, secret, ctx), server.target.authPolicy)
    server.framer.inspect = LOGIN_INSPECT
  }

  onConnect(): void {
    const serverTls = this.ctx.serverTls
    if (serverTls !== null && !isUnixHost(this.server.target.host)) {
      this.tlsAnswerPending = serverTls
      this.server.socket.write(SSL_REQUEST)
      return
    }
    this.sendStartup()
  }

  onData(chunk: Buffer): void {
    if (chunk === RESUME) return this.resume()
    if (this.tlsAnswerPending !== null) this.onTlsAnswer(chunk, this.tlsAnswerPending)
    else if (this.queued !== null) this.queued.push(chunk)
    else this.onLoginData(chunk)
  }

  /** Sends the answer once computed, then handles what the server sent meanwhile (through the connection's onData, for its error handling). */
  private awaitReply(reply: Promise<Buffer>): void {
    const s = this.server
    this.queued = []
    reply.then((msg) => {
      if (s.isClosed) return
      s.socket.write(msg)
      s.onData(RESUME)
    }, (err: unknown) => {
      if (s.isClosed) return
      const reason = `server login failed: ${(err as Error).message}`
      s.failLogin({ severity: 'FATAL', code: SqlState.InternalError, message: reason, reason })
    })
  }

  private resume(): void {
    const waiting = this.queued ?? []
    this.queued = null
    this.drain()
    for (const chunk of waiting) {
      if (this.server.isClosed || this.isDone) return
      this.onData(chunk)
    }
  }

  private sendStartup(): void {
    const t = this.server.target
    const params: Record<string, string> = { user: t.user, database: t.database, ...t.startupParams }
    this.server.socket.write(build.startupMessage(params))
  }

  /** The server's one-byte answer to SSLRequest. Anything after it is refused: it would be plain text injected ahead of the TLS stream. */
  private onTlsAnswer(chunk: Buffer, conf: ServerTls): void {
    const s = this.server
    this.tlsAnswerPending = null
    if (chunk.length !== 1) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'server sent unexpected data after its answer to SSLRequest')
    if (chunk[0] === 0x4e) {
      if (conf.isRequired) {
        s.failLogin({ severity: 'FATAL', code: SqlState.ProtocolViolation, message: `server login failed: server does not support TLS (server_tls_sslmode ${conf.mode})`, reason: 'server does not support TLS' })
        return
      }
      this.sendStartup()
      return
    }
    if (chunk[0] !== 0x53) throw new TidepoolError('TP_PROTOCOL_VIOLATION', `unexpected answer to SSLRequest: 0x${chunk[0].toString(16)}`)
    const raw = s.socket
    const secure = connectServerTls(raw, conf, s.target.host)
    secure.on('data', (d: Buffer) => s.onData(d))
    secure.on('error', (err) => {
      const reason = `server TLS error: ${err.message}`
      if (!this.isDone) s.failLogin({ severity: 'FATAL', code: SqlState.ProtocolViolation, message: `server login failed: ${err.message}`, reason })
      else s.close(reason)
    })
    secure.on('close', () => s.close('server closed the connection'))
    secure.once('secureConnect', () => {
      this.auth?.setChannelBinding(peerEndPoint(secure))
      this.sendStartup()
    })
    s.socket = secure
  }

  private onLoginData(chunk: Buffer): void {
    this.server.framer.push(chunk)
    this.drain()
  }

  /** Handles the framer's messages until its chunk is used up, the login ends, or an answer must wait. */
  private drain(): void {
    const s = this.server
    const f = s.framer
    while (f.next()) {
      switch (f.code) {
        case BackendCode.Authentication: {
          let reply: Buffer | null | Promise<Buffer>
          try {
            reply = (this.auth as ServerAuth).onAuthRequest(f.buf, f.start + 5, f.end)
          } catch (err) {
            // Our side cannot log in (no usable secret, unsupported method, forged signature):
            // the clients waiting for this pool hear why, as with a server's own login error.
            const e = err as TidepoolError
            if (e.code !== 'TP_AUTH_FAILED' && e.code !== 'TP_AUTH_UNSUPPORTED') throw err
            s.failLogin({ severity: 'FATAL', code: SqlState.InvalidAuthorizationSpecification, message: `server login failed: ${e.message}`, reason: `server login failed: ${e.message}` })
            return
          }
          if (reply instanceof Promise) return this.awaitReply(reply)
          if (reply !== null) s.socket.write(reply)
          if (f.buf.readInt32BE(f.start + 5) === AuthCode.Ok) this.auth = null
          break
        }
        case BackendCode.ParameterStatus: {
          const [name, value] = parseParameterStatus(f.buf, f.start + 5, f.end)
          s.session.reported(name, value)
          break
        }
        case BackendCode.BackendKeyData: {
          const k = parseBackendKeyData(f.buf, f.start + 5, f.end)
          s.backendPid = k.pid
          s.backendSecret = k.secret
          break
        }
        case BackendCode.ErrorResponse: {
          const e = parseErrorFields(f.buf, f.start + 5, f.end)
          s.failLogin({ severity: 'FATAL', code: e.code, message: e.message, reason: `server login failed: ${e.message}` })
          return
        }
        case BackendCode.ReadyForQuery:
          this.isDone = true
          s.finishLogin()
          return
        case BackendCode.NoticeResponse:
        case BackendCode.NegotiateProtocolVersion:
          break
        default:
          throw new TidepoolError('TP_PROTOCOL_VIOLATION', `unexpected message '${String.fromCharCode(f.code)}' during login`)
      }
    }
  }
}

/** With a SCRAM verifier as the stored secret, the server login needs the ClientKey a client proved. */
function scramKeysFor(user: string, secret: string | null, ctx: ProxyContext): { clientKey: Buffer; serverKey: Buffer } | null {
  const v = secret === null ? null : parseScramVerifier(secret)
  if (v === null) return null
  const clientKey = ctx.scramClientKey(user)
  return clientKey === null ? null : { clientKey, serverKey: v.serverKey }
}
