// One client connection: startup and login, then the work phase that forwards its messages to the
// server the pool links it to. Each phase has its handler: client-startup.ts (SSLRequest, TLS, the
// startup packet), client-login.ts (auth flows), client-console.ts (the admin console), and the
// work phase here; session-pin.ts probes session state, statement-map.ts rewrites statement names.
//
// Work phase, per received chunk: no server → ask the pool (synchronous); none free → keep the
// chunk, pause the socket, wait. Linked → bring the server's session in line with the client's
// (one internal SET, server-session.ts), then forward runs of frames as slices of the chunk. The
// server side (server-conn.ts) calls onServerReady after a ReadyForQuery; in transaction and
// statement mode a ready server goes back to the pool there.
//
// Every close goes through close(): it logs the one reason, sends the error if the protocol still
// allows, unregisters the cancel key, and releases the server only if it is ready — otherwise the
// server is closed, never reused in an unknown state.
// Must not: move pool lists itself (the pool does), assign a server's fields (its methods say what
// happened), or buffer more than one chunk while waiting.

import { nextClientId } from './conn-ids.ts'
import type net from 'node:net'
import { Framer, INSPECT_ALL } from '../protocol/framer.ts'
import { FrontendCode, TxStatus } from '../protocol/codes.ts'
import * as build from '../protocol/build.ts'
import { SqlState } from '../protocol/pg-error.ts'
import { clientInfo, type ClientInfo } from './client-info.ts'
import { ClientErrors, type ClientFailure } from '../protocol/client-errors.ts'
import { TidepoolError } from '../util/errors.ts'
import { ClientState, type PooledClient, type PooledServer } from '../pool/states.ts'
import type { Pool } from '../pool/pool.ts'
import type { ProxyContext } from './context.ts'
import type { CancelTarget } from './cancel.ts'
import type { LinkedClient, ServerConn } from './server-conn.ts'
import { OUT } from './out-slices.ts'
import { NO_PARAMS, canonicalParamName, shareParams, unreportedParams, withParam } from './server-params.ts'
import { ClientStatements } from './prepared.ts'
import { NO_GUCS, ScanFlag, SqlScanner, type GucMap } from './session-state.ts'
import { attachClientSocket, detachClientSocket, readOwnBuffer } from './client-socket.ts'
import { stopReadingNow } from '../net/socket-fd.ts'
import { statementsIn, statementsOut, type ClientHandoff } from './client-handoff.ts'
import { nextReadBuffer } from '../net/own-buffer-reads.ts'
import { ClientStartup, type StartupClient } from './client-startup.ts'
import { CLIENT_SLOTS_ALL, ClientLogin, admitToConsole, dbSlotKey, userSlotKey, admitToPool, isOverLoginLimit, uncountClient, welcomeMessage, welcomeParams, type LoginClient } from './client-login.ts'
import { CONSOLE_DB, ConsoleSession, consoleRole, consoleWelcome, describeCode, type ConsoleClient } from './client-console.ts'
import { NO_NAMES, leaveServer, probeSession, releaseServer, sessionProbeSql, trackedLowerNames } from './session-pin.ts'
import { REPL, RUNS_SQL, answerDeallocate, isTerminate, queueStreamed, rewriteWhole, wholeMessageCodes, workCodes, type ScanSink } from './statement-map.ts'

const enum Phase { Startup, Auth, Login, Work, Console, Closed }

export class ClientConn implements LinkedClient, StartupClient, LoginClient, ConsoleClient, ScanSink {
  prev: PooledClient | null = null
  next: PooledClient | null = null
  list: object | null = null
  state: ClientState = ClientState.Login
  server: ServerConn | null = null
  waitSinceMs = 0
  connectedAtMs: number
  requestAtMs: number
  readonly id: string
  /** Tracked parameters (client_encoding, DateStyle, ...) as this client has set them, by canonical name. */
  params: ReadonlyMap<string, string> = NO_PARAMS
  cancelPid = 0
  cancelSecret = 0
  database = ''
  user = ''
  pool: Pool | null = null
  private phase = Phase.Startup
  /** The startup phase's state (client-startup.ts); null once the StartupMessage arrived. */
  private startup: ClientStartup | null
  /** The login's state while the client authenticates (client-login.ts). */
  private login: ClientLogin | null = null
  /** The admin console session; null for a pooled client. */
  private console: ConsoleSession | null = null
  readonly framer: Framer
  /** Chunks received while no server was linked (at most the one that asked for a server). */
  private pending: Buffer[] = []
  /** Work-phase reads land here once readOwnBuffer took over (null: stream 'data' events, new Buffers). */
  private readBuf: Buffer | null = null
  /** A slice of readBuf is still held (pending, or queued on the server socket): the next read needs another buffer. */
  private isReadBufLent = false
  lastReadLength = 0
  /** An internal query of this client's runs on its server (parameter sync or session probe): hold its messages. */
  private isSyncingParams = false
  /** The current Query or Sync batch may drop the client's statements (DISCARD ALL, DEALLOCATE ALL). */
  private isDropPending = false
  /**
   * Such a Query or batch went out: later messages wait for its ReadyForQuery, so that their names
   * are mapped knowing whether the drop happened (its CommandComplete tag says so).
   */
  private isAwaitingDrop = false
  /** Protocol-level prepared statements by client name; null when names pass through (session mode, max_prepared_statements 0). */
  private ps: ClientStatements | null = null
  /** Query and Parse texts are scanned for session state: not in session mode, where the session is the client's anyway. */
  private isTrackingState = false
  /** The scanner of a Query that arrives in parts (it keeps lexer state between them); made when first needed. */
  private partScanner: SqlScanner | null = null
  /** A streamed (not inspected) Query is being scanned part by part. */
  private isScanningQuery = false
  /** session_state_probe = always, as it was when the client logged in: every transaction that runs SQL is probed. */
  private isProbingAlways = false
  /** session_state_policy = error, as it was when the client logged in. */
  private isRefusingState = false
  /** Lower-case names of the parameters server-params.ts tracks, left out of the probe. */
  private trackedLower: readonly string[] = NO_NAMES
  /** The current transaction may have changed session state: probe the server when it ends. */
  private needsProbe = false
  /** GUC values this client set, as its last probe read them. */
  private gucs: GucMap = NO_GUCS
  /** Custom GUCs and role this client named in SET/RESET/set_config: pg_settings does not list them; made when first needed. */
  private gucNames: Set<string> | null = null
  /** Why the client keeps its server between transactions ('' = not pinned): LISTEN, advisory lock, ... */
  pinReason = ''
  /** NotificationResponse from the linked server reaches this client (session mode, or after LISTEN). */
  isListening = false
  private pausedServer: ServerConn | null = null
  private isWaitingServerDrain = false
  private isPaused = false
  private readonly peer: string
  private closed = false
  /** The socket is corked from a ReadyForQuery at which the client will be closed until the FATAL is written. */
  private isCorkedForClose = false
  isTls = false
  isConsole = false
  isOwnUser = false
  /** Message types this client may send in the work phase (disable_pqexec takes Query out). */
  private readonly workCodes: Uint8Array
  /** Counted in ctx.clientCounts (it reached a pool or the console); close() uncounts it. */
  private isCounted = false
  /** With workers: client slots held over all workers; close() gives them back. */
  readonly slotKeys: string[] = []
  /** query_wait_notify's notice went out for the current wait. */
  isWaitNoticeSent = false
  /** The client sent Terminate: it reads nothing more from us. */
  private isTerminated = false

  constructor(
    public socket: net.Socket,
    readonly ctx: ProxyContext,
    /** Came in on the unix socket: TLS is neither offered nor required there, as in PgBouncer. */
    readonly isUnix = false,
  ) {
    this.id = nextClientId()
    this.workCodes = workCodes(ctx.settings.disable_pqexec)
    this.connectedAtMs = Date.now()
    this.requestAtMs = this.connectedAtMs
    this.peer = socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix'
    this.framer = new Framer(ctx.settings.max_packet_size)
    this.startup = new ClientStartup(this)
    socket.setNoDelay(true)
    if (ctx.settings.tcp_keepalive && socket.remoteAddress !== undefined) {
      socket.setKeepAlive(true, Math.max(0, ctx.settings.tcp_keepidle) * 1000)
    }
    const isRefused = isOverLoginLimit(ctx, this)
    ctx.clients.add(this)
    ctx.loginClients.push(this)
    attachClientSocket(socket, this)
    if (isRefused) this.fail(ClientErrors.maxLoginClients)
  }

  describe(): string {
    return `${this.database || '(nodb)'}/${this.user || '(nouser)'}@${this.peer}`
  }

  get isClosed(): boolean {
    return this.closed
  }

  get isStarting(): boolean {
    return this.phase === Phase.Startup
  }

  onData(chunk: Buffer): void {
    try {
      switch (this.phase) {
        case Phase.Startup: (this.startup as ClientStartup).onData(chunk); break
        case Phase.Auth: (this.login as ClientLogin).onData(chunk); break
        case Phase.Login: this.fail(ClientErrors.protocolViolation('message received before login finished')); break
        case Phase.Work: this.onWorkData(chunk); break
        case Phase.Console: (this.console as ConsoleSession).onData(chunk); break
        case Phase.Closed: break
      }
    } catch (err) {
      this.onHandlerError(err)
    }
  }

  /** A throw while handling this client's bytes: its framing error, or our bug; either way only this client goes. */
  private onHandlerError(err: unknown): void {
    if (err instanceof TidepoolError && err.code === 'TP_PROTOCOL_VIOLATION') return this.fail(ClientErrors.protocolViolation(err.message))
    // Our bug, not the client's bytes: say so in the log with the stack, close only this client.
    this.ctx.log.error('client.internal_error', this, `internal error: ${(err as Error).stack ?? String(err)}`)
    this.fail(ClientErrors.internalError)
  }

  // ---- startup, login, console ----

  onStartupParams(params: Map<string, string>): void {
    this.startup = null
    this.phase = Phase.Auth
    this.login = new ClientLogin(this)
    this.login.start(params)
  }

  onAuthenticated(): void {
    this.login = null
    if (this.isConsole) this.startConsole()
    else this.joinPool()
  }

  /** The virtual database "pgbouncer": admin_users may run everything, stats_users only SHOW. */
  private startConsole(): void {
    const role = this.isOwnUser ? 'admin' : consoleRole(this.ctx.settings, this.user)
    if (role === null) return this.fail(ClientErrors.consoleNotAllowed)
    const failure = admitToConsole(this.ctx, this.user)
    if (failure !== null) return this.fail(failure)
    this.isCounted = true
    this.console = new ConsoleSession(this, role === 'admin')
    this.ctx.loginClients.remove(this)
    this.state = ClientState.Active
    this.socket.write(consoleWelcome(this.issueCancelKey()))
    this.framer.inspect = INSPECT_ALL
    this.phase = Phase.Console
    if (this.ctx.settings.log_connections) this.ctx.log.info('client.logged_in', this, `login attempt: db=${CONSOLE_DB} user=${this.user} (admin console)`)
  }

  /** What SHOW CLIENTS shows of this connection. */
  info(): ClientInfo {
    const state = this.isConsole ? 'active' : this.pool === null ? 'login' : this.state === ClientState.Login ? 'waiting' : this.state
    return clientInfo(this, state, this.ps?.size ?? 0)
  }

  private joinPool(): void {
    const now = Date.now()
    const admitted = admitToPool(this.ctx, this.database, this.user, now)
    if (admitted.failure !== null) return this.fail(admitted.failure)
    const pool = admitted.pool
    this.isCounted = true
    this.pool = pool
    this.phase = Phase.Login
    this.ctx.loginClients.remove(this)
    pool.addLoginClient(this, now)
    if (pool.isReady) this.onPoolReady()
  }

  /**
   * Issues and registers this client's cancel key; returns the BackendKeyData to send. Every key
   * handed out is registered: the registry keeps a secret for one client only while it is registered.
   */
  private issueCancelKey(): Buffer {
    const key = this.ctx.cancels.issue()
    this.cancelPid = key.pid
    this.cancelSecret = key.secret
    this.ctx.cancels.register(this)
    return build.backendKeyData(key.pid, key.secret)
  }

  /** The pool knows its server's parameters now: finish the login in one write. */
  onPoolReady(): void {
    if (this.phase !== Phase.Login) return
    const pool = this.pool as Pool
    const welcome = pool.welcome as Map<string, string>
    this.params = welcomeParams(this.params, welcome, this.ctx.settings.track_extra_parameters)
    this.socket.write(welcomeMessage(this.params, welcome, this.issueCancelKey()))
    this.phase = Phase.Work
    this.setUpWork(pool)
    // Not under TLS: the TLS layer reads the socket itself.
    if (!this.isTls) readOwnBuffer(this.socket, () => this.nextReadBuffer())
    pool.clientLoggedIn(this)
    if (this.ctx.settings.log_connections) this.ctx.log.info('client.logged_in', this, 'login attempt: db=' + this.database + ' user=' + this.user)
  }

  // ---- work ----

  private onWorkData(chunk: Buffer): void {
    this.requestAtMs = Date.now()
    ;(this.pool as Pool).stats.received += chunk.length
    if (this.server === null && this.pending.length === 0 && isTerminate(chunk)) {
      // A client that leaves between transactions needs no server to say goodbye to.
      this.isTerminated = true
      this.close('client close request', true)
      return
    }
    if (this.server === null || this.isSyncingParams || this.isAwaitingDrop || this.pending.length > 0) {
      this.pending.push(chunk)
      // The server the chunk went to: onLinked may release it again before returning.
      let taken = this.server
      if (taken === null && this.state !== ClientState.Waiting) {
        // PgBouncer: once SHUTDOWN WAIT_FOR_SERVERS runs, no new transaction starts.
        if (this.ctx.isWaitingForServers) return this.fail(ClientErrors.serverShuttingDown)
        const pool = this.pool as Pool
        if (pool.acquire(this, this.requestAtMs)) {
          taken = this.server as unknown as ServerConn
          this.onLinked(taken)
        }
      }
      this.updateFlow()
      // A server taken at once has already been sent the chunk: the read buffer is lent only if a
      // slice of it is still held, as below. Every transaction in transaction mode starts here, so
      // lending it unconditionally cost a new read buffer per transaction.
      this.noteLentAfterForward(taken)
      return
    }
    const server = this.server
    this.forward(chunk, server)
    this.noteLentAfterForward(server)
  }

  /**
   * What forward kept (a waiting chunk, the rest of a chunk held for a DISCARD ALL's answer) or
   * could not write yet is a slice of the read buffer: the next read needs another.
   */
  private noteLentAfterForward(server: ServerConn | null): void {
    if (this.pending.length > 0 || (server !== null && server.socket.writableLength > 0)) this.isReadBufLent = true
  }

  private nextReadBuffer(): Buffer {
    const buf = nextReadBuffer(this.readBuf, this.isReadBufLent, this.lastReadLength)
    this.readBuf = buf
    this.isReadBufLent = false
    return buf
  }

  notice(message: string): void {
    if (this.socket.writable) this.socket.write(build.noticeResponse({ severity: 'NOTICE', code: SqlState.SuccessfulCompletion, message }))
  }

  /** The pool linked a waiting client to `server`. */
  onServerAssigned(server: PooledServer): void {
    this.onLinked(server as ServerConn)
  }

  private onLinked(server: ServerConn): void {
    if (this.isTrackingState) {
      this.followStatementMapping()
      server.setTracking(this.ps !== null)
    }
    const params = this.params
    const gucs = this.isTrackingState ? this.gucs : null
    const sql = server.session.syncSqlFor(params, gucs)
    if (sql === '') {
      server.session.agreed(params, null)
      this.flushPending()
      return
    }
    this.isSyncingParams = true
    this.updateFlow()
    const clientGucs = this.gucs
    server.runInternal(sql, (ok) => {
      this.isSyncingParams = false
      if (this.closed) return
      if (!ok) return this.fail(ClientErrors.protocolViolation('var change failed'))
      server.session.agreed(params, clientGucs)
      this.flushPending()
    })
  }

  /** Transaction and statement mode: statement mapping, session-state scanning, the policy. */
  private setUpWork(pool: Pool): void {
    const st = this.ctx.settings
    if (pool.settings.pool_mode === 'session') {
      this.isListening = true
      return
    }
    this.isTrackingState = true
    this.isRefusingState = st.session_state_policy === 'error'
    this.isProbingAlways = st.session_state_probe === 'always'
    const welcome = pool.welcome as Map<string, string>
    this.trackedLower = trackedLowerNames(st.track_extra_parameters, welcome)
    const unreported = unreportedParams(this.params, welcome)
    if (unreported !== null) {
      this.gucs = unreported
      this.params = shareParams(new Map([...this.params].filter(([name]) => welcome.has(name))))
    }
    this.followStatementMapping()
    this.framer.inspect = wholeMessageCodes(this.ps !== null, this.isRefusingState)
  }

  /**
   * Statement mapping on or off as max_prepared_statements now says (SET and RELOAD change it),
   * when the client takes a server: between transactions, so no request is in flight. Turned
   * off, the names mapped so far are forgotten, as PgBouncer forgets them: a Bind of one then
   * reaches the server under the client's own name.
   */
  private followStatementMapping(): void {
    const st = this.ctx.settings
    const isOn = st.max_prepared_statements > 0
    if (isOn === (this.ps !== null)) return
    if (isOn) {
      this.ps = new ClientStatements()
      // A Bind is read whole to rename its statement, like PgBouncer: allow it up to max_packet_size.
      this.framer.maxInspectLength = Math.max(this.framer.maxInspectLength, st.max_packet_size + 1)
    } else {
      ;(this.ps as ClientStatements).clear()
      this.ps = null
      this.isDropPending = false
    }
    this.framer.inspect = wholeMessageCodes(this.ps !== null, this.isRefusingState)
  }

  /** Also runs in an internal query's callback, inside the server's read handler: a throw here is the client's. */
  private flushPending(): void {
    try {
      while (this.pending.length > 0 && this.server !== null && !this.closed && !this.isAwaitingDrop) this.forward(this.pending.shift() as Buffer, this.server)
    } catch (err) {
      this.pending = [] // never sent: the server is as clean as before this chunk, and may go back to the pool
      return this.onHandlerError(err)
    }
    this.updateFlow()
  }

  private forward(chunk: Buffer, server: ServerConn): void {
    const f = this.framer
    const out = OUT
    REPL.length = 0 // what a throw in another client's forward may have left
    out.discard()
    f.push(chunk)
    let runStart = -1
    let runEnd = -1
    let badCode = -1
    let isTerminated = false
    let isAnsweredHere = false
    /** A Query or Sync that may drop statements went out: the rest of the chunk waits for its answer. */
    let isHolding = false
    const isScanning = this.isTrackingState
    while (f.next()) {
      if (f.isFirst) {
        if (f.code === FrontendCode.Terminate) {
          isTerminated = true
          break
        }
        if (this.workCodes[f.code] !== 1) {
          badCode = f.code
          break
        }
        if (f.code === FrontendCode.Query && this.ps !== null && this.ps.size > 0 && f.isLast && f.stashed === null &&
          runStart < 0 && server.ps.size === 0 && answerDeallocate(this.ps, server.ps, server.txStatus, f.buf, f.start, f.end)) {
          isAnsweredHere = true
          continue
        }
        server.noteFrontendMessage(f.code)
        if (this.isProbingAlways && RUNS_SQL[f.code] === 1) this.needsProbe = true
        if (isScanning) {
          if (f.inspect[f.code] === 1) {
            // Parse/Bind/Describe/Close (and Query under the error policy), whole: maybe rewritten.
            const isReplaced = rewriteWhole(f.buf, f.start, f.end, this.ps, server.ps, (this.pool as Pool).stats, this.ctx.settings.max_prepared_statements, this.isRefusingState, this)
            if (isReplaced || f.buf !== chunk) {
              if (runStart >= 0) out.add(chunk.subarray(runStart, runEnd))
              runStart = -1
              const repl = REPL
              if (isReplaced) {
                for (let i = 0; i < repl.length; i++) out.add(repl[i])
                repl.length = 0
              } else {
                out.add(f.buf.subarray(f.start, f.end))
                if (this.isDropPending && f.code === FrontendCode.Query) {
                  isHolding = true
                  break
                }
              }
              continue
            }
          } else {
            this.onStreamedMessage(f.code, server)
          }
        }
      }
      if (this.isScanningQuery) this.scanQueryPart(f.buf, f.stashed === null ? f.start : f.start - f.stashed.length, f.end, f.isFirst, f.isLast)
      if (f.stashed !== null) {
        if (runStart >= 0) out.add(chunk.subarray(runStart, runEnd))
        runStart = -1
        out.add(f.stashed)
      }
      if (runStart < 0) runStart = f.start
      runEnd = f.end
      if (this.isDropPending && f.isLast && (f.code === FrontendCode.Query || (f.code === FrontendCode.Sync && !server.isCopyIn))) {
        isHolding = true
        break
      }
    }
    if (runStart >= 0) out.add(chunk.subarray(runStart, runEnd))
    if (isHolding) this.holdForDrop(f.takeRest())
    out.flushTo(server.socket)
    const emit = server.ps.emit
    if (emit.length > 0) {
      // Replies tidepool makes itself (ParseComplete, CloseComplete) with nothing before them outstanding.
      for (let i = 0; i < emit.length; i++) this.socket.write(emit[i])
      emit.length = 0
    }
    // A DEALLOCATE answered here sent the server nothing: it may go back to the pool now.
    if (isAnsweredHere && server.isReady && this.server === server) this.onServerReady(server)
    if (badCode === FrontendCode.Query) {
      this.ctx.log.error('client.pqexec', this, 'client used "Query" packet type (disable_pqexec)')
      this.fail(ClientErrors.pqexecDisallowed)
      return
    }
    if (badCode >= 0) {
      this.fail(ClientErrors.protocolViolation(`invalid frontend message type ${describeCode(badCode)}`))
      return
    }
    if (isTerminated) {
      this.isTerminated = true
      this.close('client close request', true)
      return
    }
    if (server.socket.writableNeedDrain && !this.isWaitingServerDrain) {
      this.isWaitingServerDrain = true
      server.socket.once('drain', () => {
        this.isWaitingServerDrain = false
        this.updateFlow()
      })
      this.updateFlow()
    }
  }

  /**
   * A Query or Sync batch that may drop the client's statements went out: what follows waits (in
   * `pending`, `rest` first) until its ReadyForQuery, when onServerReady lets it go on.
   */
  private holdForDrop(rest: Buffer): void {
    this.isDropPending = false
    this.isAwaitingDrop = true
    if (rest.length > 0) this.pending.unshift(rest)
    this.updateFlow()
  }

  /** The server ran DISCARD ALL or DEALLOCATE ALL: the client's names are gone, as on PostgreSQL. */
  onStatementsDropped(): void {
    this.ps?.clear()
  }

  /** A message that is not read whole: queue it for response matching, start scanning a Query. */
  private onStreamedMessage(code: number, server: ServerConn): void {
    if (code === FrontendCode.Query) this.isScanningQuery = true
    if (this.ps !== null) queueStreamed(server.ps, code, server.isCopyIn)
  }

  /** One part of a streamed Query; `from` is where its bytes start (the header's first byte when isFirst). */
  private scanQueryPart(buf: Buffer, from: number, end: number, isFirst: boolean, isLast: boolean): void {
    const sc = this.partScanner ??= new SqlScanner()
    if (isFirst) {
      sc.begin()
      from += 5
    }
    if (end > from) sc.feed(buf, from, end)
    if (isLast) {
      sc.finish()
      this.isScanningQuery = false
      this.noteScan(sc.flags, sc.names)
    }
  }

  /** What a scanned text may have done to the session. */
  noteScan(flags: number, names: string[] | null): void {
    if (flags === 0) return
    if ((flags & ScanFlag.Probe) !== 0) this.needsProbe = true
    if ((flags & ScanFlag.Listen) !== 0) this.isListening = true
    // Only its CommandComplete tag drops the names (onStatementsDropped): it may fail.
    if ((flags & ScanFlag.DropStatements) !== 0 && this.ps !== null) this.isDropPending = true
    if (names !== null) for (const n of names) (this.gucNames ??= new Set()).add(n)
  }

  /**
   * Pause reading from the client while it waits for a server or the server cannot keep up. A
   * waiting client usually sent one query and waits for its answer, so the socket is paused only
   * once a second chunk is queued: pausing and resuming on every wait cost measurable CPU.
   */
  private updateFlow(): void {
    if (this.closed) return
    const hold = this.server === null ? this.pending.length > 1 : this.isSyncingParams || this.isAwaitingDrop || this.isWaitingServerDrain
    if (hold === this.isPaused) return
    this.isPaused = hold
    this.ctx.readGate.setReading(this.socket, !hold)
  }

  /** The server wrote more than the client reads: stop reading the server until the client drains. */
  throttleServer(server: ServerConn): void {
    if (this.pausedServer !== null) return
    this.pausedServer = server
    this.ctx.readGate.setReading(server.socket, false)
  }

  onClientDrain(): void {
    const s = this.pausedServer
    if (s === null) return
    this.pausedServer = null
    if (!s.isClosed) this.ctx.readGate.setReading(s.socket, true)
  }

  /**
   * The server just became ready and onServerReady will hand it back to the pool: nothing it sends
   * after this ReadyForQuery is an answer to this client (a FATAL of a dying backend, say).
   */
  willReleaseAtReady(server: ServerConn): boolean {
    const isReleasing = (this.pool as Pool).settings.pool_mode !== 'session' && this.server === server && server.isReady &&
      this.pending.length === 0 && !this.isSyncingParams && !this.needsProbe && this.pinReason === ''
    if (isReleasing && this.ctx.isClosingBetweenTransactions && !this.isCorkedForClose) {
      // The client is closed at this ReadyForQuery: it must get the FATAL in the same write, or it
      // may send its next query before the FATAL reaches it, and see that query fail.
      this.isCorkedForClose = true
      this.socket.cork()
    }
    return isReleasing
  }

  /** After a chunk with ReadyForQuery from the linked server. */
  onServerReady(server: ServerConn): void {
    if (!this.isCorkedForClose) return this.onReady(server)
    this.isCorkedForClose = false
    this.onReady(server)
    // Closed: socket.end() has written everything. Not closed (something arrived that keeps it), go on.
    if (!this.closed) this.socket.uncork()
  }

  private onReady(server: ServerConn): void {
    const pool = this.pool as Pool
    const mode = pool.settings.pool_mode
    if (mode === 'session' || this.server !== server) return
    if (this.isAwaitingDrop && server.owedReady === 0) {
      // The batch that could drop statements is answered: what waited behind it goes on now.
      this.isAwaitingDrop = false
      this.updateFlow()
      if (this.pending.length > 0) {
        this.flushPending()
        if (this.closed || this.server !== server) return
      }
    }
    if (!server.isReady || this.pending.length > 0 || this.isSyncingParams) return
    if (this.needsProbe) {
      this.probe(server)
      return
    }
    if (this.pinReason === '') {
      this.onClientDrain()
      releaseServer(pool, server)
    }
    if (this.ctx.isClosingBetweenTransactions) {
      this.fail(ClientErrors.shuttingDown)
      return
    }
    if (this.pinReason !== '') return
    const onFree = this.ctx.onClientFree
    if (onFree !== null) onFree(this)
  }

  /** During a shutdown with shutdown_close_between_transactions: a client in transaction or
   *  statement mode that has sent nothing since `idleSinceMs` and holds no server is closed. */
  closeIfIdle(idleSinceMs: number): void {
    if (this.phase !== Phase.Work || this.server !== null || this.pending.length > 0 || this.requestAtMs > idleSinceMs) return
    if ((this.pool as Pool).settings.pool_mode === 'session') return
    this.fail(ClientErrors.shuttingDown)
  }

  // ---- session state: probe and pinning (session-pin.ts) ----

  /**
   * The transaction that just ended may have changed session state: ask the server what is left
   * before it goes back to the pool. The client's next messages wait meanwhile.
   */
  private probe(server: ServerConn): void {
    this.needsProbe = false
    this.isSyncingParams = true
    this.updateFlow()
    probeSession(server, sessionProbeSql(this.trackedLower, this.gucNames, server), (r) => {
      this.isSyncingParams = false
      if (this.closed) return
      if (r === null) return this.fail(ClientErrors.protocolViolation('session state probe failed'))
      this.gucs = r.gucs
      server.adoptProbe(r)
      this.isListening = r.bound.includes('LISTEN')
      this.setPinned(r.bound)
      this.updateFlow()
      if (this.pending.length > 0) this.flushPending()
      else this.onServerReady(server)
    })
  }

  private setPinned(reason: string): void {
    const pool = this.pool as Pool
    if ((reason !== '') !== (this.pinReason !== '')) {
      pool.pinnedClients += reason !== '' ? 1 : -1
      if (this.ctx.log.debugEnabled) this.ctx.log.debug('client.pinned', this, reason !== '' ? `pinned to its server: ${reason}` : 'unpinned')
    }
    this.pinReason = reason
  }

  /** A ParameterStatus from the linked server: the client's session now has this value. */
  onServerParameter(name: string, value: string): void {
    if (canonicalParamName(name, this.ctx.settings.track_extra_parameters) !== null) this.params = withParam(this.params, name, value)
  }

  /** The linked server's connection died under the client. */
  onServerLost(_server: PooledServer): void {
    if (this.closed) return
    this.fail(ClientErrors.serverConnCrashed)
  }

  cancelTarget(): CancelTarget | null {
    return this.server?.cancelTargetFor(this) ?? null
  }

  // ---- online restart (runtime/takeover.ts) ----

  /**
   * This client's session, when it can go on in another process now: logged in to a pool in
   * transaction or statement mode, between transactions, with nothing in flight, half read or
   * unsent, and nothing that lives in this process only (TLS, a server pinned by session state).
   * Null otherwise: the caller asks again later.
   */
  handoff(): ClientHandoff | null {
    const pool = this.pool
    if (this.phase !== Phase.Work || this.closed || this.isTls || this.server !== null || pool === null || pool.welcome === null) return null
    if (pool.settings.pool_mode === 'session' || this.state !== ClientState.Active || this.pending.length > 0 ||
      this.isSyncingParams || this.isAwaitingDrop || this.isDropPending || this.needsProbe || this.pinReason !== '' ||
      this.isScanningQuery || this.pausedServer !== null || !this.framer.isAtBoundary || this.socket.writableLength > 0 ||
      this.ctx.readGate.isHolding) return null
    return {
      database: this.database,
      user: this.user,
      isUnix: this.isUnix,
      connectedAtMs: this.connectedAtMs,
      cancelPid: this.cancelPid,
      cancelSecret: this.cancelSecret,
      params: [...this.params],
      gucs: [...this.gucs],
      gucNames: this.gucNames === null ? [] : [...this.gucNames],
      statements: statementsOut(this.ps),
      welcome: [...pool.welcome],
    }
  }

  /**
   * The session goes on in another process (handoff() said it may): stop reading at once, so that
   * the client's next bytes stay in the kernel for the new owner, and leave every list here. The
   * socket is returned open, to be sent; nothing is written to the client.
   */
  handOff(): net.Socket {
    this.socket.pause()
    stopReadingNow(this.socket)
    detachClientSocket(this.socket)
    if (this.ctx.log.debugEnabled) this.ctx.log.debug('client.handed_over', this, 'handed over to the new process')
    this.teardown(true)
    return this.socket
  }

  /**
   * Goes on with a session another tidepool began (its handoff()): no startup, no login, no
   * welcome; the client just sends its next query here. Its cancel key stays the one it was given.
   */
  resumeSession(h: ClientHandoff): void {
    this.startup = null
    this.database = h.database
    this.user = h.user
    this.connectedAtMs = h.connectedAtMs
    const now = Date.now()
    const admitted = admitToPool(this.ctx, h.database, h.user, now)
    if (admitted.failure !== null) return this.fail(admitted.failure)
    const pool = admitted.pool
    this.isCounted = true
    // With workers, the client limits over all of them count it too (the old worker gave its slots back).
    const slots = this.ctx.clientSlots
    if (slots !== null) {
      for (const key of [CLIENT_SLOTS_ALL, dbSlotKey(h.database), userSlotKey(h.user)]) {
        slots.adopt(key)
        this.slotKeys.push(key)
      }
    }
    this.pool = pool
    this.phase = Phase.Work
    this.ctx.loginClients.remove(this)
    pool.addLoginClient(this, now)
    // A pool that has not logged a server in here yet welcomes with what the old process's did.
    pool.adoptWelcome(new Map(h.welcome))
    this.cancelPid = h.cancelPid
    this.cancelSecret = h.cancelSecret
    this.ctx.cancels.register(this)
    this.setUpWork(pool)
    this.params = shareParams(new Map(h.params))
    this.gucs = new Map(h.gucs)
    if (h.gucNames.length > 0) this.gucNames = new Set(h.gucNames)
    if (this.ps !== null) statementsIn(this.ps, h.statements)
    if (!this.isTls) readOwnBuffer(this.socket, () => this.nextReadBuffer())
    pool.clientLoggedIn(this)
  }

  // ---- close ----

  /**
   * Send `err` if the protocol still allows, then close with its reason (an ERROR in the work
   * phase leaves the client connected). The lines that explain it are written first, as
   * PgBouncer's: whoever reads the log after seeing the error finds them there.
   */
  fail(err: ClientFailure): void {
    if (this.closed) return
    this.pool?.stats.countError('pooler', err.code)
    const isClosing = err.severity !== 'ERROR' || this.phase !== Phase.Work
    if (isClosing) this.logClose(err.reason, false)
    if (this.ctx.settings.log_pooler_errors) this.ctx.log.warn('client.pooler_error', this, `pooler error: ${err.message}`)
    if (this.socket.writable) {
      const e = build.errorResponse({ severity: err.severity, code: err.code, message: err.message })
      this.socket.write(isClosing ? e : Buffer.concat([e, build.readyForQuery(TxStatus.Idle)]))
    }
    if (isClosing) this.teardown()
  }

  close(reason: string, isQuiet = false): void {
    if (this.closed) return
    this.logClose(reason, isQuiet)
    this.teardown()
  }

  /** `closing because: ...`, before anything else of the close (the server's line comes after, as in PgBouncer). */
  private logClose(reason: string, isQuiet: boolean): void {
    if ((!isQuiet && this.ctx.settings.log_disconnections) || this.ctx.log.debugEnabled) {
      const age = Math.round((Date.now() - this.connectedAtMs) / 1000)
      this.ctx.log.info('client.closed', this, `closing because: ${reason} (age=${age}s)`)
    }
  }

  /** `isHandedOff`: the socket went to another process, open; only this process's part ends. */
  private teardown(isHandedOff = false): void {
    const wasPinned = this.pinReason !== ''
    this.closed = true
    this.phase = Phase.Closed
    this.ctx.clients.delete(this)
    if (this.cancelPid !== 0) this.ctx.cancels.unregister(this)
    if (this.isCounted) uncountClient(this.ctx, this.database, this.user)
    for (const key of this.slotKeys) this.ctx.clientSlots?.give(key)
    const server = this.server
    const pool = this.pool
    if (this.pinReason !== '') this.setPinned('')
    if (server !== null && pool !== null) {
      // Unlinked first, so that the server's close or probe does not report back to this client.
      server.detachClient()
      this.server = null
      leaveServer(pool, server, this.pending.length === 0 && !this.isSyncingParams, this.needsProbe || wasPinned, this.trackedLower, this.gucNames)
    }
    if (this.pausedServer !== null) this.onClientDrain()
    if (pool !== null) {
      pool.removeClient(this)
      pool.kick(Date.now())
    } else if (this.list !== null && !this.isConsole) {
      this.ctx.loginClients.remove(this)
    }
    this.pending = []
    this.ps?.clear()
    if (isHandedOff) return
    const socket = this.socket
    if (this.isTerminated && !this.isTls && socket.writableLength === 0) {
      // The client said goodbye and everything written is in the kernel already: a close sends
      // it and the FIN, as shutdown() then close() would, without a shutdown request and its
      // 'finish' round per connection. After an error the socket is still ended first, so that
      // bytes the client sent meanwhile are read, not answered with a reset.
      socket.destroy()
      return
    }
    socket.end()
    socket.destroySoon()
  }
}
