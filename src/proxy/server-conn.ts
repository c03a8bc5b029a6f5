// One connection from tidepool to a PostgreSQL server: login (server-startup.ts), internal queries
// (reset, check, parameter sync, connect_query), and the work phase where results stream to the
// linked client. What its session carries between clients is its ServerSession (server-session.ts).
//
// In the work phase only ReadyForQuery, ParameterStatus and the copy responses are read; every
// other message passes through as slices of the received chunk. The server is handed back to the
// pool only when it is *ready*: ReadyForQuery(idle), no ReadyForQuery still owed for a Query, Sync
// or FunctionCall it was sent, and no extended-protocol message sent since the last Sync.
// Anything else (client gone mid-query, failed reset, bytes from an idle server) closes it.
// An exception from tidepool's own code while reading is logged as server.internal_error with its
// stack; only a TidepoolError (bad bytes, failed login) is the server's protocol error.
// Must not: decide pool membership (pool.ts does) or read settings other than what it is given.

import { nextServerId } from './conn-ids.ts'
import type net from 'node:net'
import { Framer, INSPECT_ALL, inspectTable } from '../protocol/framer.ts'
import { BackendCode, TxStatus } from '../protocol/codes.ts'
import * as build from '../protocol/build.ts'
import { parseErrorFields, parseParameterStatus } from '../protocol/reader.ts'
import { TidepoolError } from '../util/errors.ts'
import { ServerState, type PooledClient, type PooledServer } from '../pool/states.ts'
import type { Pool } from '../pool/pool.ts'
import { ClientErrors, type ClientFailure } from '../protocol/client-errors.ts'
import type { ProxyContext } from './context.ts'
import { sendCancel, type CancelTarget } from './cancel.ts'
import { dial, isUnixHost } from '../net/dial.ts'
import { OUT } from './out-slices.ts'
import { nowUs } from '../pool/stats.ts'
import { Resp, ServerPrepared, isDropAllTag } from './prepared.ts'
import type { ProbeResult } from './session-state.ts'
import { ServerSession } from './server-session.ts'
import { ServerStartup, type ServerTarget, type StartingServer } from './server-startup.ts'
import { SqlState } from '../protocol/pg-error.ts'
import type { ServerInfo } from './server-info.ts'

export type { WatchedHost } from './context.ts'
export type { ServerTarget } from './server-startup.ts'

/** What a server connection needs of the client linked to it (ClientConn implements it). */
export interface LinkedClient extends PooledClient {
  readonly id: string
  /** The client's tracked parameters (application_name for SHOW SERVERS). */
  readonly params: ReadonlyMap<string, string>
  readonly socket: net.Socket
  /** NotificationResponse from the server reaches the client (session mode, or after LISTEN). */
  readonly isListening: boolean
  /** The server is at a ReadyForQuery that hands it back to the pool: what follows is nobody's answer. */
  willReleaseAtReady(server: ServerConn): boolean
  /** After a chunk with ReadyForQuery. */
  onServerReady(server: ServerConn): void
  /** A ParameterStatus from the server: the client's session now has this value. */
  onServerParameter(name: string, value: string): void
  /** The server ran DISCARD ALL or DEALLOCATE ALL for the client: its protocol-level statements are gone. */
  onStatementsDropped(): void
  /** The client socket's buffer is full: stop reading the server until it drains. */
  throttleServer(server: ServerConn): void
  onServerLost(server: PooledServer): void
}

/** Same as Node's default read size. */
const READ_BUFFER_SIZE = 64 * 1024

const WORK_CODES = [
  BackendCode.ReadyForQuery, BackendCode.ErrorResponse, BackendCode.ParameterStatus, BackendCode.CopyInResponse, BackendCode.CopyOutResponse,
  BackendCode.CopyBothResponse, BackendCode.NotificationResponse,
]
const WORK_INSPECT = inspectTable(WORK_CODES)
/**
 * With prepared statements tracked, also the response that ends each request (prepared.ts
 * RequestQueue). DataRow, the bulk of the traffic, still streams through uninspected.
 */
const WORK_INSPECT_TRACKED = inspectTable([
  ...WORK_CODES, BackendCode.ParseComplete, BackendCode.BindComplete, BackendCode.CloseComplete, BackendCode.RowDescription,
  BackendCode.NoData, BackendCode.CommandComplete, BackendCode.EmptyQueryResponse, BackendCode.PortalSuspended,
])

export class ServerConn implements PooledServer, StartingServer {
  prev: PooledServer | null = null
  next: PooledServer | null = null
  list: object | null = null
  state: ServerState = ServerState.Login
  client: LinkedClient | null = null
  closeOnRelease = false
  cancelsInFlight = 0
  isCancelUnsure = false
  connectedAtMs: number
  idleSinceMs: number
  readyAtMs: number
  readonly id: string
  /** The TCP socket, or after a TLS upgrade the TLS socket over it. */
  socket: net.Socket
  readonly framer: Framer
  backendPid = 0
  backendSecret = 0
  txStatus: number = TxStatus.Idle
  /** ReadyForQuery messages the server still owes: one per Query, Sync (outside copy-in) or FunctionCall sent. */
  owedReady = 0
  /** Extended-protocol messages were sent since the last Sync: the server is mid-batch. */
  hasUnsyncedMessages = false
  isCopyIn = false
  /** Prepared statements this server holds and the requests it still answers (prepared.ts). */
  readonly ps = new ServerPrepared()
  /** What the session carries between clients: reported parameters, GUCs, the statement cache (the same `ps`). */
  readonly session = new ServerSession(this.ps)
  /** The linked client's statements are mapped: responses are matched to requests. */
  isTracking = false
  private internalOnRow: ((buf: Buffer, start: number, end: number) => void) | null = null
  /** Start of the query now running and of the transaction it is in (µs, monotonic); 0 = none. */
  private queryStartUs = 0
  private xactStartUs = 0
  private isLoggedIn = false
  /** The login's state until the first ReadyForQuery (server-startup.ts). */
  private startup: ServerStartup | null
  private internalDone: ((ok: boolean) => void) | null = null
  private internalOk = true
  private closeReason: string | null = null
  private readonly addr: string
  private readBuf: Buffer | null = null
  /** A slice of readBuf is queued on the client socket: the next read needs a fresh buffer. */
  private isReadBufLent = false
  private hasLeftHost = false
  lifetimeFactor = 1
  /** Set by the server factory when a host this server is not on became preferred (PooledServer.retireAtMs). */
  retireAtMs = 0

  constructor(
    readonly pool: Pool,
    readonly target: ServerTarget,
    private readonly ctx: ProxyContext,
  ) {
    this.id = nextServerId()
    const now = Date.now()
    this.connectedAtMs = now
    this.idleSinceMs = now
    this.readyAtMs = now
    this.framer = new Framer(ctx.settings.max_packet_size)
    // A user found through auth_query has no secret in the target: it logs in with the one it proved.
    this.startup = new ServerStartup(this, target.password ?? ctx.authQuery.serverSecret(pool.database, target.user), ctx)
    const isUnix = isUnixHost(target.host)
    this.addr = isUnix ? `unix:${target.host}` : `${target.host}:${target.port}`
    // Reads land in a buffer of our own (onread) instead of a new Buffer and a stream 'data'
    // event per read: measurably less CPU per transaction. The buffer is replaced only while a
    // slice of it still waits in the client socket's write queue.
    const onread = { buffer: () => this.nextReadBuffer(), callback: (n: number, buf: Uint8Array): boolean => { this.onData((buf as Buffer).subarray(0, n)); return true } }
    this.socket = dial(target.host, target.port, onread)
    if (target.watchedHost !== undefined) {
      target.watchedHost.servers++
      this.lifetimeFactor = 0.9 + 0.1 * Math.random()
    }
    this.socket.setNoDelay(true)
    if (ctx.settings.tcp_keepalive && !isUnix) {
      this.socket.setKeepAlive(true, Math.max(0, ctx.settings.tcp_keepidle) * 1000)
    }
    this.socket.on('connect', () => {
      if (ctx.settings.log_connections) {
        // PgBouncer's line, written once the TCP (or unix) connection is up.
        this.ctx.log.info('server.connected', this, isUnix ? 'new connection to server' : `new connection to server (from ${this.socket.localAddress}:${this.socket.localPort})`)
      }
      this.startup?.onConnect()
    })
    this.socket.on('error', (err) => this.close(`server socket error: ${err.message}`))
    this.socket.on('close', () => this.close('server closed the connection'))
  }

  private nextReadBuffer(): Buffer {
    if (this.readBuf === null || this.isReadBufLent) {
      this.readBuf = Buffer.allocUnsafe(READ_BUFFER_SIZE)
      this.isReadBufLent = false
    }
    return this.readBuf
  }

  /** Current values of the parameters the server reports (GUC_REPORT), by canonical name. */
  get params(): ReadonlyMap<string, string> {
    return this.session.params
  }

  /** A plain snapshot for the admin console: it reads this, never the pool's lists. */
  info(): ServerInfo {
    const client = this.client
    return {
      id: this.id,
      database: this.pool.database,
      poolUser: this.pool.user,
      user: this.target.user,
      host: this.target.host,
      port: this.target.port,
      state: this.state,
      linkedClientId: client?.id ?? null,
      applicationName: client?.params.get('application_name') ?? '',
      connectedAtMs: this.connectedAtMs,
      readyAtMs: this.readyAtMs,
      closeOnRelease: this.closeOnRelease,
      backendPid: this.backendPid,
      localAddr: this.socket.localAddress ?? '',
      localPort: this.socket.localPort ?? 0,
    }
  }

  describe(): string {
    return `${this.pool.database}/${this.pool.user}@${this.addr}`
  }

  get isReady(): boolean {
    return this.isLoggedIn && this.txStatus === TxStatus.Idle && this.owedReady === 0 && !this.hasUnsyncedMessages &&
      this.internalDone === null && this.framer.isAtBoundary
  }

  get transactionStartUs(): number {
    return this.xactStartUs
  }

  get isIdleInTransaction(): boolean {
    return this.txStatus !== TxStatus.Idle && this.owedReady === 0 && !this.hasUnsyncedMessages
  }

  get isClosed(): boolean {
    return this.closeReason !== null
  }

  /**
   * A cancel of the query `client` runs here now, or null when there is none. Checked again when
   * the cancel connection is up, since the query may have ended and the server moved on meanwhile;
   * from then until PostgreSQL closes that connection the server counts it in cancelsInFlight and
   * the pool holds it back from reuse (Pool.release, cancelsDone).
   */
  cancelTargetFor(client: PooledClient): CancelTarget | null {
    if (this.client !== client || this.isReady) return null
    const t = this.target
    return {
      host: t.host,
      port: t.port,
      pid: this.backendPid,
      secret: this.backendSecret,
      begin: () => {
        if (this.client !== client || this.isReady || this.isClosed) return false
        this.cancelsInFlight++
        return true
      },
      end: (isConfirmed) => {
        this.cancelsInFlight--
        if (!isConfirmed) this.isCancelUnsure = true
        if (this.state === ServerState.BeingCanceled) {
          // Unconfirmed, it may still stop whatever runs here next: never reused (retireReason).
          if (this.isCancelUnsure) this.close('a cancel request for it was not confirmed')
          else this.pool.cancelsDone(this, Date.now())
        }
      },
    }
  }

  /** Every read, from the TCP socket or (after the TLS upgrade) the TLS one. */
  onData(chunk: Buffer): void {
    try {
      if (this.startup !== null) this.startup.onData(chunk)
      else if (this.internalDone !== null) this.onInternalData(chunk)
      else if (this.client !== null) this.onWorkData(chunk, this.client)
      else this.onIdleData(chunk)
    } catch (err) {
      if (err instanceof TidepoolError) {
        this.close(`server protocol error: ${err.message}`)
      } else {
        // Our bug, not the server's bytes: log it with the stack and close without blaming the host.
        this.ctx.log.error('server.internal_error', this, `internal error: ${(err as Error).stack ?? String(err)}`)
        this.close(`internal error: ${(err as Error).message}`, false)
      }
    }
  }

  // ---- login (server-startup.ts reads it) ----

  finishLogin(): void {
    this.startup = null
    this.framer.inspect = WORK_INSPECT
    this.isLoggedIn = true
    this.readyAtMs = Date.now()
    this.ctx.log.debug('server.logged_in', this, 'new server connection')
    const q = this.target.connectQuery
    if (q !== null && q !== '') {
      this.runInternal(q, (ok) => {
        if (!ok) this.close('connect_query failed')
        else this.pool.serverLoggedIn(this, new Map(this.session.params), Date.now())
      })
    } else {
      this.pool.serverLoggedIn(this, new Map(this.session.params), Date.now())
    }
  }

  failLogin(failure: ClientFailure): void {
    if (this.closeReason !== null) return
    this.ctx.log.warn('server.login_failed', this, failure.reason)
    this.closeReason = failure.reason
    // Refused credentials or a missing database are the pool's problem, not the host's.
    const isBanned = this.leaveHost(failure.code.startsWith('28') || failure.code === SqlState.InvalidCatalogName ? null : failure.reason)
    this.socket.destroy()
    this.pool.serverLoginFailed(this, failure, Date.now(), isBanned)
  }

  // ---- internal queries ----

  /**
   * Sends a query whose results are swallowed (or handed to `onRow`, DataRow bodies);
   * ParameterStatus still updates params (and the linked client's).
   */
  runInternal(sql: string, done: (ok: boolean) => void, onRow: ((buf: Buffer, start: number, end: number) => void) | null = null): void {
    if (this.internalDone !== null) throw new Error('server: internal query while one runs')
    this.internalDone = done
    this.internalOnRow = onRow
    this.internalOk = true
    this.framer.inspect = INSPECT_ALL
    this.socket.write(build.query(sql))
  }

  private onInternalData(chunk: Buffer): void {
    const f = this.framer
    f.push(chunk)
    while (f.next()) {
      if (f.code === BackendCode.ParameterStatus) {
        const [name, value] = parseParameterStatus(f.buf, f.start + 5, f.end)
        this.session.reported(name, value)
        if (this.client !== null) this.client.onServerParameter(name, value)
      } else if (f.code === BackendCode.ErrorResponse) {
        const e = parseErrorFields(f.buf, f.start + 5, f.end)
        this.internalOk = false
        this.ctx.log.warn('server.internal_query_failed', this, `internal query failed: ${e.message}`, { sqlstate: e.code })
      } else if (f.code === BackendCode.CopyInResponse || f.code === BackendCode.CopyBothResponse) {
        throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'internal query started COPY')
      } else if (f.code === BackendCode.DataRow && this.internalOnRow !== null) {
        this.internalOnRow(f.buf, f.start + 5, f.end)
      } else if (f.code === BackendCode.NotificationResponse && this.client !== null && this.client.isListening) {
        // Delivered while tidepool probed the session right after the client's LISTEN: still the client's.
        this.client.socket.write(Buffer.from(f.buf.subarray(f.start, f.end)))
      } else if (f.code === BackendCode.ReadyForQuery) {
        this.txStatus = f.buf[f.start + 5]
        const done = this.internalDone as (ok: boolean) => void
        this.internalDone = null
        this.internalOnRow = null
        this.framer.inspect = this.workInspect()
        // An internal query that leaves a transaction open would leak it to the next client.
        const ok = this.internalOk && this.txStatus === TxStatus.Idle
        if (f.end < f.buf.length && f.buf === chunk) {
          throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'server sent data after internal ReadyForQuery')
        }
        done(ok)
        return
      }
    }
  }

  // ---- work ----

  private onWorkData(chunk: Buffer, client: LinkedClient): void {
    const f = this.framer
    const out = OUT
    const isStatementMode = this.pool.settings.pool_mode === 'statement'
    out.discard() // what a handler that threw left behind is nobody's to send
    f.push(chunk)
    let runStart = -1
    let runEnd = -1
    let sawReady = false
    let refusedTransaction = false
    // Set once a ReadyForQuery hands the server back to the pool: what follows in the same read
    // is nobody's answer and is read as an idle server's bytes (closeAfter: why to close it then).
    let isReleased = false
    let closeAfter: string | null = null
    while (f.next()) {
      if (isReleased) {
        if (f.isFirst) closeAfter ??= this.idleMessage(f, `${f.code === BackendCode.ErrorResponse ? 'an error' : 'a message'} from a server that was just released`)
        continue
      }
      // Statement mode: a ReadyForQuery that says "in a transaction" is not forwarded; the
      // client gets PgBouncer's error in its place, as the answer to its BEGIN.
      if (isStatementMode && f.code === BackendCode.ReadyForQuery && f.buf[f.start + 5] !== TxStatus.Idle) {
        refusedTransaction = true
        break
      }
      if (f.buf !== chunk || f.stashed !== null) {
        if (runStart >= 0) out.add(chunk.subarray(runStart, runEnd))
        runStart = -1
        if (f.stashed !== null) out.add(f.stashed)
        if (f.buf !== chunk) {
          // An inspected message assembled across chunks: it lives in its own buffer.
          if (!this.inspectWork(f.buf, f.start)) out.add(f.buf.subarray(f.start, f.end))
          this.addEmitted(out)
          sawReady ||= f.code === BackendCode.ReadyForQuery
          isReleased = f.code === BackendCode.ReadyForQuery && client.willReleaseAtReady(this)
          continue
        }
      }
      if (f.isFirst && f.inspect[f.code] === 1) {
        const isDropped = this.inspectWork(chunk, f.start)
        sawReady ||= f.code === BackendCode.ReadyForQuery
        if (isDropped || this.ps.emit.length > 0) {
          // A response tidepool swallows, or replies of its own that go right after this one.
          if (!isDropped) {
            if (runStart < 0) runStart = f.start
            runEnd = f.end
          }
          if (runStart >= 0) out.add(chunk.subarray(runStart, runEnd))
          runStart = -1
          this.addEmitted(out)
          isReleased = f.code === BackendCode.ReadyForQuery && client.willReleaseAtReady(this)
          continue
        }
      }
      if (runStart < 0) runStart = f.start
      runEnd = f.end
      if (f.code === BackendCode.ReadyForQuery && f.isFirst) isReleased = client.willReleaseAtReady(this)
    }
    if (runStart >= 0) out.add(chunk.subarray(runStart, runEnd))
    const sock = client.socket
    out.flushTo(sock)
    if (refusedTransaction) {
      this.txStatus = TxStatus.InTransaction
      client.fail(ClientErrors.statementModeTransaction)
      return
    }
    this.pool.stats.sent += chunk.length
    if (sock.writableLength > 0) this.isReadBufLent = true
    if (sock.writableNeedDrain) client.throttleServer(this)
    if (sawReady) client.onServerReady(this)
    if (closeAfter !== null) this.close(closeAfter)
  }

  /**
   * One message from a server that owes no client anything (idle in the pool, or past the
   * ReadyForQuery that released it): a ParameterStatus is kept, notices and notifications are
   * dropped; anything else is the reason to close it, `dirty` for an unexpected message (or one not
   * read whole).
   */
  private idleMessage(f: Framer, dirty: string): string | null {
    if (f.code === BackendCode.NoticeResponse || f.code === BackendCode.NotificationResponse) return null
    const isWhole = f.isLast && f.buf[f.start] === f.code
    if (isWhole && f.code === BackendCode.ErrorResponse) {
      const e = parseErrorFields(f.buf, f.start + 5, f.end)
      return `server sent ${e.severity}: ${e.message}`
    }
    if (isWhole && f.code === BackendCode.ParameterStatus) {
      const [name, value] = parseParameterStatus(f.buf, f.start + 5, f.end)
      this.session.reported(name, value)
      return null
    }
    return dirty
  }

  private addEmitted(out: typeof OUT): void {
    const emit = this.ps.emit
    if (emit.length === 0) return
    for (let i = 0; i < emit.length; i++) out.add(emit[i])
    emit.length = 0
  }

  /**
   * Reads the few backend messages that change what tidepool knows; `at` is the message start.
   * True when the client must not see the message (a reply to tidepool's own request, or a
   * notification for a client that does not listen).
   */
  private inspectWork(buf: Buffer, at: number): boolean {
    const code = buf[at]
    if (code === BackendCode.NotificationResponse) return this.client === null || !this.client.isListening
    const isDropped = this.isTracking && this.ps.onResponse(code) === Resp.Drop
    if (code === BackendCode.ReadyForQuery) {
      this.txStatus = buf[at + 5]
      const stats = this.pool.stats
      const now = nowUs()
      stats.queries++
      if (this.queryStartUs !== 0) {
        stats.queryTimeUs += now - this.queryStartUs
        stats.queryHist.observe(now - this.queryStartUs)
      }
      if (this.owedReady > 0) this.owedReady--
      this.queryStartUs = this.owedReady > 0 ? now : 0
      if (this.txStatus === TxStatus.Idle && this.xactStartUs !== 0) {
        stats.xacts++
        stats.xactTimeUs += now - this.xactStartUs
        stats.xactHist.observe(now - this.xactStartUs)
        this.xactStartUs = 0
      }
      this.isCopyIn = false
      this.readyAtMs = Date.now()
    } else if (code === BackendCode.ParameterStatus) {
      const [name, value] = parseParameterStatus(buf, at + 5, at + 1 + buf.readInt32BE(at + 1))
      this.session.reported(name, value)
      if (this.client !== null) this.client.onServerParameter(name, value)
    } else if (code === BackendCode.CopyInResponse || code === BackendCode.CopyBothResponse) {
      this.isCopyIn = true
    } else if (code === BackendCode.ErrorResponse) {
      this.pool.stats.countError('server', sqlstateOf(buf, at))
    } else if (code === BackendCode.CommandComplete && isDropAllTag(buf, at)) {
      this.ps.dropPrepared()
      if (this.client !== null) this.client.onStatementsDropped()
    }
    return isDropped
  }

  /** A session probe read what the last client left; a statement cache it cannot explain retires the server. */
  adoptProbe(r: ProbeResult): void {
    if (!this.session.adoptProbe(r, this.isTracking)) this.closeOnRelease = true
  }

  /** The client leaves without the pool (it retires the server, or closes it): nobody is linked now. */
  detachClient(): void {
    this.client = null
  }

  /** Linking to a client: map its statement names (or not), with the matching inspect table. */
  setTracking(on: boolean): void {
    if (this.ps.size > 0) this.ps.reset()
    this.isTracking = on
    this.framer.inspect = this.workInspect()
  }

  /**
   * What the work phase reads: the responses that end requests while a client's statements are
   * mapped, and while this server still holds statements of earlier clients (after
   * max_prepared_statements went to 0), so that a DISCARD ALL's tag keeps that cache true.
   */
  private workInspect(): Uint8Array {
    return this.isTracking || this.ps.cache.size > 0 ? WORK_INSPECT_TRACKED : WORK_INSPECT
  }

  /** Bytes from a server nobody is linked to: only asynchronous messages are acceptable. */
  private onIdleData(chunk: Buffer): void {
    const f = this.framer
    f.inspect = INSPECT_ALL
    f.push(chunk)
    try {
      while (f.next()) {
        const reason = this.idleMessage(f, `${this.state} server got dirty`)
        if (reason !== null) {
          this.close(reason)
          return
        }
      }
    } finally {
      f.inspect = this.workInspect()
    }
  }

  /** Called by the client side for every frontend message start it forwards. */
  noteFrontendMessage(code: number): void {
    switch (code) {
      case 0x51: // Query
      case 0x46: // FunctionCall
        this.startTiming()
        this.owedReady++
        break
      case 0x53: // Sync: ignored by the server while in copy-in mode
        if (!this.isCopyIn) {
          this.startTiming()
          this.owedReady++
          this.hasUnsyncedMessages = false
        }
        break
      case 0x63: // CopyDone
      case 0x66: // CopyFail
        this.isCopyIn = false
        break
      case 0x64: // CopyData
      case 0x48: // Flush
        break
      default: // Parse, Bind, Describe, Execute, Close: part of a batch until Sync
        this.hasUnsyncedMessages = true
    }
  }

  private startTiming(): void {
    if (this.owedReady !== 0) return
    const now = nowUs()
    this.queryStartUs = now
    if (this.xactStartUs === 0) this.xactStartUs = now
  }

  /** Once per connection: uncount it from its watched host, and report a failure to reach it (the passive check). */
  private leaveHost(failure: string | null): boolean {
    const h = this.target.watchedHost
    if (h === undefined || this.hasLeftHost) return false
    this.hasLeftHost = true
    h.servers--
    if (failure === null) return false
    this.ctx.hostFailed(h, failure)
    return true
  }

  // ---- close ----

  /** `isHostToBlame` false: tidepool itself retires the connection (its host lost its role), no ban. */
  close(reason: string, isHostToBlame = true): void {
    if (this.closeReason !== null) return
    this.closeReason = reason
    const wasLoggedIn = this.isLoggedIn
    if (wasLoggedIn && !this.isReady && this.backendPid !== 0) {
      // Closing the socket does not stop a running query (PostgreSQL notices a gone client only
      // when it next writes); a cancel does.
      const t = this.target
      sendCancel({ host: t.host, port: t.port, pid: this.backendPid, secret: this.backendSecret }, this.ctx.settings.server_connect_timeout * 1000)
    }
    if (this.socket.writable && wasLoggedIn) this.socket.end(build.terminate())
    this.socket.destroy()
    this.ps.reset()
    this.session.forgetStatements()
    const client = this.client
    const isLoginFailure = !wasLoggedIn && this.state === ServerState.Login && isHostToBlame
    const isBanned = this.leaveHost(isLoginFailure ? reason : null)
    if (isLoginFailure) {
      this.ctx.log.warn('server.connect_failed', this, `closing because: ${reason}`)
      this.pool.serverLoginFailed(this, null, Date.now(), isBanned)
    } else {
      this.ctx.log.info('server.closed', this, `closing because: ${reason}`, { age_s: Math.round((Date.now() - this.connectedAtMs) / 1000) })
      this.pool.serverClosed(this)
    }
    const done = this.internalDone
    this.internalDone = null
    if (client !== null) client.onServerLost(this)
    else if (done !== null) done(false)
    this.pool.kick(Date.now())
  }
}

/** The SQLSTATE ('C' field) of the ErrorResponse at `at`, without decoding the other fields. */
function sqlstateOf(buf: Buffer, at: number): string {
  const end = at + 1 + buf.readInt32BE(at + 1)
  for (let i = at + 5; i < end && buf[i] !== 0;) {
    const nul = buf.indexOf(0, i + 1)
    if (nul < 0 || nul >= end) break
    if (buf[i] === 0x43 && nul - i === 6) return buf.toString('latin1', i + 1, nul)
    i = nul + 1
  }
  return SqlState.InternalError
}
