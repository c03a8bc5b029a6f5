// One query on a connection of its own: connect (TLS as server_tls_* says), log in, run one
// statement through the extended protocol with text parameters, close. For work that must never
// touch a client pool: auth_query lookups and host health checks. Small and slow by design;
// the hot path never comes here. It lives in auth/ because it logs in (server-login.ts): net/ stays
// below auth/ and knows nothing of logins.
// Must not: reject (every failure is a QueryOnceResult), outlive its timeout, or log secrets.

import type net from 'node:net'
import { connectServerTls, type ServerTls } from '../net/tls.ts'
import { peerEndPoint } from '../net/channel-binding.ts'
import { dial, isUnixHost } from '../net/dial.ts'
import { Framer, INSPECT_ALL } from '../protocol/framer.ts'
import { BackendCode } from '../protocol/codes.ts'
import * as build from '../protocol/build.ts'
import { BodyReader, parseDataRow, parseErrorFields } from '../protocol/reader.ts'
import { SqlState } from '../protocol/pg-error.ts'
import type { TidepoolError } from '../util/errors.ts'
import { ServerAuth, type ServerAuthPolicy } from './server-login.ts'

export interface QueryOnceTarget {
  host: string
  port: number
  database: string
  user: string
  password: string | null
  /** SCRAM keys for a user whose stored secret is a verifier (see ServerAuth). */
  keys: { clientKey: Buffer; serverKey: Buffer } | null
  /** What the server may ask of the login (require_auth, the SCRAM iteration cap); the defaults when left out. */
  authPolicy?: ServerAuthPolicy
}

export interface QueryOnceOptions {
  serverTls: ServerTls | null
  timeoutMs: number
  maxPacket: number
  /** Extra startup parameters (application_name, say); never the client's. */
  startupParams?: Record<string, string>
  /** Every socket opened is added while open, so a shutdown can destroy them all. */
  sockets?: Set<net.Socket>
}

/** Where it went wrong: refusals at login or a failing query will not fix themselves; the rest may. */
export type QueryOnceFailure = {
  ok: false
  phase: 'connect' | 'login' | 'query'
  /** SQLSTATE when the server sent an ErrorResponse. */
  code: string | null
  cause: string
}
export type QueryOnceResult = { ok: true; columns: number; rows: Array<Array<string | null>>; latencyMs: number } | QueryOnceFailure

const SSL_REQUEST = build.sslRequest()

export function queryOnce(t: QueryOnceTarget, sql: string, params: readonly string[], o: QueryOnceOptions): Promise<QueryOnceResult> {
  return new Promise((resolve) => {
    const started = performance.now()
    const framer = new Framer(o.maxPacket)
    framer.inspect = INSPECT_ALL
    const auth = new ServerAuth(t.user, t.password, undefined, t.keys, t.authPolicy)
    let sock: net.Socket = dial(t.host, t.port)
    let isTlsAnswerDue = false
    let phase: QueryOnceFailure['phase'] = 'connect'
    let done = false
    /** Server bytes that arrive while our SCRAM answer is computed (PBKDF2 on the threadpool); null otherwise. */
    let queued: Buffer[] | null = null
    let columns = 0
    const rows: Array<Array<string | null>> = []

    const finish = (r: QueryOnceResult): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      o.sockets?.delete(sock)
      if (r.ok) sock.end(build.terminate())
      else sock.destroy()
      resolve(r)
    }
    const fail = (cause: string, code: string | null = null): void => finish({ ok: false, phase, code, cause })
    const timer = setTimeout(() => fail(`no answer within ${o.timeoutMs} ms`), o.timeoutMs)
    o.sockets?.add(sock)

    const watch = (s: net.Socket): void => {
      s.on('data', onData)
      s.on('error', (err) => fail(err.message))
      s.on('close', () => fail('server closed the connection'))
    }
    const sendStartup = (): void => {
      phase = 'login'
      sock.write(build.startupMessage({ ...o.startupParams, user: t.user, database: t.database }))
    }
    const onTlsAnswer = (chunk: Buffer): void => {
      isTlsAnswerDue = false
      const conf = o.serverTls as ServerTls
      if (chunk.length !== 1 || (chunk[0] !== 0x53 && chunk[0] !== 0x4e)) return fail('unexpected answer to SSLRequest')
      if (chunk[0] === 0x4e) {
        if (conf.isRequired) return fail(`server does not support TLS (server_tls_sslmode ${conf.mode})`)
        return sendStartup()
      }
      const raw = sock
      raw.removeListener('data', onData)
      o.sockets?.delete(raw)
      const secure = connectServerTls(raw, conf, t.host)
      sock = secure
      o.sockets?.add(sock)
      watch(sock)
      sock.once('secureConnect', () => {
        auth.setChannelBinding(peerEndPoint(secure))
        sendStartup()
      })
    }
    function onData(chunk: Buffer): void {
      if (done) return
      if (queued !== null) return void queued.push(chunk)
      guarded(() => {
        if (isTlsAnswerDue) return onTlsAnswer(chunk)
        framer.push(chunk)
        drain()
      })
    }
    function guarded(run: () => void): void {
      try {
        run()
      } catch (err) {
        const e = err as TidepoolError
        fail(e.code === 'TP_AUTH_FAILED' || e.code === 'TP_AUTH_UNSUPPORTED' ? `cannot log in: ${e.message}` : `server protocol error: ${e.message}`, e.code === 'TP_AUTH_FAILED' ? SqlState.InvalidPassword : null)
      }
    }
    /** Handles the framer's messages until its chunk is used up, the end, or an answer that must wait. */
    function drain(): void {
      while (!done && queued === null && framer.next()) onMessage(framer.code, framer.buf, framer.start + 5, framer.end)
    }
    const awaitReply = (reply: Promise<Buffer>): void => {
      queued = []
      reply.then((msg) => {
        if (done) return
        sock.write(msg)
        const waiting = queued ?? []
        queued = null
        guarded(drain)
        for (const chunk of waiting) onData(chunk)
      }, (err: unknown) => fail(`cannot log in: ${(err as Error).message}`))
    }
    const onMessage = (code: number, buf: Buffer, start: number, end: number): void => {
      switch (code) {
        case BackendCode.Authentication: {
          const reply = auth.onAuthRequest(buf, start, end)
          if (reply instanceof Promise) return awaitReply(reply)
          if (reply !== null) sock.write(reply)
          return
        }
        case BackendCode.ErrorResponse: {
          const e = parseErrorFields(buf, start, end)
          return fail(`${e.message} (SQLSTATE ${e.code})`, e.code)
        }
        case BackendCode.ReadyForQuery:
          if (phase !== 'query') {
            phase = 'query'
            sock.write(Buffer.concat([
              build.parse('', sql, []), build.bind('', '', params.map((p) => Buffer.from(p, 'utf8'))),
              build.describePortal(''), build.execute('', 0), build.sync(),
            ]))
            return
          }
          return finish({ ok: true, columns, rows, latencyMs: performance.now() - started })
        case BackendCode.RowDescription:
          columns = new BodyReader(buf, start, end).int16()
          return
        case BackendCode.DataRow:
          rows.push(parseDataRow(buf, start, end))
          return
        case BackendCode.ParameterStatus:
        case BackendCode.BackendKeyData:
        case BackendCode.NoticeResponse:
        case BackendCode.NegotiateProtocolVersion:
        case BackendCode.ParseComplete:
        case BackendCode.BindComplete:
        case BackendCode.NoData:
        case BackendCode.CommandComplete:
          return
        default:
          return fail(`unexpected message '${String.fromCharCode(code)}'`)
      }
    }

    watch(sock)
    sock.setNoDelay(true)
    sock.once('connect', () => {
      if (o.serverTls !== null && !isUnixHost(t.host)) {
        isTlsAnswerDue = true
        sock.write(SSL_REQUEST)
      } else sendStartup()
    })
  })
}
