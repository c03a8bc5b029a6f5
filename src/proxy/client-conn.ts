// One client connection: startup and login, then the work phase that forwards its messages to the
// server the pool links it to. Login and work are separate handlers.
//
// Work phase, per received chunk: no server → ask the pool (synchronous); none free → keep the
// chunk, pause the socket, wait. Linked → bring the server's tracked parameters in line with the
// client's (one internal SET), then forward runs of frames as slices of the chunk. The server side
// (server-conn.ts) calls onServerReady after a ReadyForQuery; in transaction and statement mode a
// ready server goes back to the pool there.
//
// Every close goes through close(): it logs the one reason, sends the error if the protocol still
// allows, unregisters the cancel key, and releases the server only if it is ready — otherwise the
// server is closed, never reused in an unknown state.
// Must not: move pool lists itself (the pool does), or buffer more than one chunk while waiting.

import type net from 'node:net'
import tls from 'node:tls'
import { acceptClientTls, clientCertError, isAlpnPostgres, verifiedClientCn, type ClientTls } from '../net/tls.ts'
import { Framer, INSPECT_ALL, INSPECT_NONE, inspectTable } from '../protocol/framer.ts'
import { FrontendCode, MAX_STARTUP_PACKET_LENGTH, TxStatus } from '../protocol/codes.ts'
import * as build from '../protocol/build.ts'
import { parseStartupPacket, startupPacketLength } from '../protocol/startup.ts'
import { parseQueryText } from '../protocol/reader.ts'
import type { ClientInfo } from './client-info.ts'
import { ClientErrors, type ClientFailure } from '../protocol/client-errors.ts'
import { TidepoolError } from '../util/errors.ts'
import { ClientState, type PooledClient, type PooledServer } from '../pool/states.ts'
import type { Pool } from '../pool/pool.ts'
import type { ProxyContext } from './context.ts'
import type { ServerConn } from './server-conn.ts'
import { dbClientLimit, entryFor, userClientLimit } from '../config/effective.ts'
import { OUT } from './out-slices.ts'
import { NO_PARAMS, canonicalParamName, paramSyncQuery, shareParams, trackedNames, withParam } from './server-params.ts'
import { Act, ClientStatements, MISSING_NAME, RequestRef, duplicateError, missingError, parseMessage, renamed, statementFor, type Statement } from './prepared.ts'
import {
  NO_GUCS, ScanFlag, SqlScanner, gucSyncSql, newProbeResult, probeSql, readProbeRow, refusalSql, refusedMessage, type GucMap, type ProbeResult,
} from './session-state.ts'
import { clientAuthFlow, type ClientAuthFlow } from '../auth/client-auth.ts'
import { matchHba, type HbaRule } from '../auth/hba.ts'
import { identAllows } from '../auth/ident.ts'

let nextClientId = 1

/** Scans texts that arrived whole, for every client: scan() runs start to finish in one call, and its results are read at once. */
const WHOLE_TEXT_SCANNER = new SqlScanner()

const enum Phase { Startup, Auth, Login, Work, Console, Closed }

export class ClientConn implements PooledClient {
  prev: PooledClient | null = null
  next: PooledClient | null = null
  list: object | null = null
  state: ClientState = ClientState.Login
  server: ServerConn | null = null
  waitSinceMs = 0
  readonly connectedAtMs: number
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
  private startupBuf: Buffer | null = null
  private readonly framer: Framer
  /** Chunks received while no server was linked (at most the one that asked for a server). */
  private pending: Buffer[] = []
  /** An internal query of this client's runs on its server (parameter sync or session probe): hold its messages. */
  private isSyncingParams = false
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
  private authFlow: ClientAuthFlow | null = null
  private readonly peer: string
  private closed = false
  private isTls = false
  /** Nothing read from the socket yet: the first byte tells a direct TLS handshake from a startup packet. */
  private isFirstRead = true
  /** TLS began with the client's ClientHello (PostgreSQL 17 sslnegotiation=direct), not after SSLRequest. */
  private isDirectTls = false
  /** An hba clientcert=verify-full rule whose certificate name check waits until its method succeeds. */
  private certNameRule: HbaRule | null = null
  private isConsole = false
  private isConsoleAdmin = false
  private isConsoleBusy = false
  private consoleQueue: string[] = []
  /** Message types this client may send in the work phase (disable_pqexec takes Query out). */
  private readonly workCodes: Uint8Array
  /** Counted in ctx.clientCounts (it reached a pool); close() uncounts it. */
  private isCounted = false
  /** query_wait_notify's notice went out for the current wait. */
  isWaitNoticeSent = false
  /** Set while a startup chunk still has bytes after the packet being handled. */
  private hasBytesAfterStartupPacket = false

  constructor(
    public socket: net.Socket,
    private readonly ctx: ProxyContext,
  ) {
    this.id = `C-${nextClientId++}`
    this.workCodes = ctx.settings.disable_pqexec ? NO_PQEXEC_WORK_CODES : VALID_WORK_CODES
    this.connectedAtMs = Date.now()
    this.requestAtMs = this.connectedAtMs
    this.peer = socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix'
    this.framer = new Framer(ctx.settings.max_packet_size)
    socket.setNoDelay(true)
    if (ctx.settings.tcp_keepalive && socket.remoteAddress !== undefined) {
      socket.setKeepAlive(true, Math.max(0, ctx.settings.tcp_keepidle) * 1000)
    }
    ctx.clients.add(this)
    ctx.loginClients.push(this)
    // Shared handlers find their connection through a symbol: four closures per client cost
    // measurable memory with thousands of idle clients.
    ;(socket as OwnedSocket)[OWNER] = this
    socket.on('data', onSocketData)
    socket.on('error', onSocketError)
    socket.on('close', onSocketClose)
    socket.on('drain', onSocketDrain)
  }

  describe(): string {
    return `${this.database || '(nodb)'}/${this.user || '(nouser)'}@${this.peer}`
  }

  onData(chunk: Buffer): void {
    try {
      switch (this.phase) {
        case Phase.Startup: this.onStartupData(chunk); break
        case Phase.Auth: this.onAuthData(chunk); break
        case Phase.Login: this.fail(ClientErrors.protocolViolation('message received before login finished')); break
        case Phase.Work: this.onWorkData(chunk); break
        case Phase.Console: this.onConsoleData(chunk); break
        case Phase.Closed: break
      }
    } catch (err) {
      if (err instanceof TidepoolError && err.code === 'TP_PROTOCOL_VIOLATION') {
        this.fail(ClientErrors.protocolViolation(err.message))
      } else {
        // Our bug, not the client's bytes: say so in the log with the stack, close only this client.
        this.ctx.log.error('client.internal_error', this, `internal error: ${(err as Error).stack ?? String(err)}`)
        this.fail(ClientErrors.internalError)
      }
    }
  }

  // ---- startup ----

  private onStartupData(chunk: Buffer): void {
    if (this.isFirstRead) {
      this.isFirstRead = false
      // 0x16 opens a TLS handshake record; no startup packet can start with it (its length would
      // be hundreds of megabytes), so this is a client doing direct TLS.
      if (chunk[0] === TLS_HANDSHAKE_RECORD) return this.startDirectTls(chunk)
    }
    if (this.isDirectTls && !isAlpnPostgres(this.socket as tls.TLSSocket)) return this.refuseDirectTlsWithoutAlpn()
    let buf = this.startupBuf === null ? chunk : Buffer.concat([this.startupBuf, chunk])
    this.startupBuf = null
    while (this.phase === Phase.Startup) {
      const len = startupPacketLength(buf, 0)
      if (len === null) break
      if (len < 8 || len > MAX_STARTUP_PACKET_LENGTH) {
        this.fail(ClientErrors.protocolViolation(`invalid startup packet length ${len}`))
        return
      }
      if (buf.length < len) break
      const packet = buf.subarray(0, len)
      buf = buf.subarray(len)
      this.hasBytesAfterStartupPacket = buf.length > 0
      this.onStartupPacket(packet)
    }
    if (buf.length > 0 && this.phase === Phase.Startup) this.startupBuf = Buffer.from(buf)
    else if (buf.length > 0 && this.phase !== Phase.Closed) this.onData(buf)
  }

  private onStartupPacket(packet: Buffer): void {
    const p = parseStartupPacket(packet)
    switch (p.kind) {
      case 'ssl': {
        const tlsConf = this.ctx.clientTls
        if (tlsConf === null || this.isTls) {
          this.socket.write('N')
          return
        }
        if (this.startupBuf !== null || this.hasBytesAfterStartupPacket) {
          // Plain-text bytes sent before our answer would be read as part of the TLS stream.
          this.fail(ClientErrors.protocolViolation('received unencrypted data after SSL request'))
          return
        }
        this.socket.write('S')
        this.upgradeToTls(tlsConf)
        return
      }
      case 'gssenc':
        // No GSS encryption: 'N' tells the client to go on (it may ask for TLS next).
        this.socket.write('N')
        return
      case 'cancel': {
        const st = this.ctx.settings
        // cancel_wait_timeout bounds the whole forward; server_connect_timeout still bounds the connect.
        const limits = [st.server_connect_timeout, st.cancel_wait_timeout].filter((x) => x > 0)
        const what = this.ctx.cancels.cancel(p.pid, p.secret, limits.length === 0 ? 0 : Math.min(...limits) * 1000)
        this.ctx.log.debug('cancel.received', this, `cancel request: ${what}`)
        this.close('cancel request handled', true)
        return
      }
      case 'invalid':
        this.fail(ClientErrors.protocolViolation(p.reason))
        return
      case 'startup':
        // A client asking for a newer 3.x or for protocol options learns what we speak (3.0, no
        // options) and may go on, as PostgreSQL answers it.
        if (p.minor > 0 || p.unrecognized.length > 0) this.socket.write(build.negotiateProtocolVersion(0, p.unrecognized))
        this.onStartup(p.params)
        return
    }
  }

  /**
   * After 'S', or at once for direct TLS: the same TCP connection carries TLS from here on and the
   * client sends its startup packet inside it. `firstBytes`: a direct ClientHello already read.
   */
  private upgradeToTls(conf: ClientTls, firstBytes: Buffer | null = null): void {
    const raw = this.socket
    raw.removeListener('data', onSocketData)
    raw.removeListener('drain', onSocketDrain)
    const secure = acceptClientTls(raw, conf, firstBytes)
    ;(secure as unknown as OwnedSocket)[OWNER] = this
    secure.on('data', onSocketData)
    secure.on('error', onSocketError)
    secure.on('close', onSocketClose)
    secure.on('drain', onSocketDrain)
    secure.once('secure', () => {
      // tls.Server rejects unverified client certificates in its own 'secure' handler; a
      // TLSSocket made by hand gets no such check, so do the same one here.
      const certError = conf.requireClientCert ? clientCertError(secure) : null
      if (certError !== null) this.fail(ClientErrors.protocolViolation(`client certificate rejected: ${certError}`))
      else if (this.isDirectTls && !isAlpnPostgres(secure)) this.refuseDirectTlsWithoutAlpn()
    })
    this.socket = secure
    this.isTls = true
  }

  private startDirectTls(chunk: Buffer): void {
    const conf = this.ctx.clientTls
    if (conf === null) {
      // Nothing we could say would reach a client that expects TLS records: just close.
      this.ctx.log.warn('client.tls_refused', this, 'direct TLS handshake refused: client TLS is not configured (client_tls_sslmode disable)')
      return this.close('direct TLS without client TLS configured', true)
    }
    this.isDirectTls = true
    this.upgradeToTls(conf, chunk)
  }

  /** PostgreSQL 17 takes direct TLS only with ALPN "postgresql", so a generic TLS client cannot pass for one. */
  private refuseDirectTlsWithoutAlpn(): void {
    if (this.closed) return
    this.ctx.log.warn('client.tls_refused', this, 'direct TLS handshake without the ALPN protocol "postgresql" refused')
    this.close('direct TLS without ALPN', true)
  }

  private onStartup(params: Map<string, string>): void {
    const st = this.ctx.settings
    this.user = params.get('user') ?? ''
    this.database = params.get('database') || this.user
    if (this.ctx.isShuttingDown) return this.fail(ClientErrors.shuttingDown)
    if (this.ctx.clientTls?.isRequired === true && !this.isTls) return this.fail(ClientErrors.sslRequired)
    if (this.ctx.clients.size > st.max_client_conn) return this.fail(ClientErrors.maxClientConn)
    const ignored = new Set(st.ignore_startup_parameters.map((s) => s.toLowerCase()))
    const tracked = new Map<string, string>()
    for (const [name, value] of params) {
      if (name === 'user' || name === 'database') continue
      const canonical = canonicalParamName(name, st.track_extra_parameters)
      if (canonical !== null) tracked.set(canonical, value)
      else if (!ignored.has(name.toLowerCase())) return this.fail(ClientErrors.unsupportedStartupParameter(name))
    }
    if (st.application_name_add_host) {
      // PgBouncer's format, so log parsers and pg_stat_activity queries written for it still match.
      tracked.set('application_name', `${tracked.get('application_name') ?? 'app'} - ${peerDetails(this.socket, this.ctx.settings.listen_port)}`)
    }
    this.params = tracked
    this.isConsole = this.database === CONSOLE_DB
    if (!this.isConsole) {
      const db = entryFor(this.ctx.config, this.database)
      if (db === undefined) return this.fail(ClientErrors.noSuchDatabase(this.database))
    }

    const authType = st.auth_type
    if (authType === 'trust' || authType === 'any') return this.afterAuth()
    if (authType === 'plain' || authType === 'md5' || authType === 'scram-sha-256') return this.startPasswordFlow(authType)
    if (authType === 'cert') return this.authByCert()
    if (authType === 'hba') return this.authByHba()
    this.fail(ClientErrors.authTypeNotSupported(authType))
  }

  private startPasswordFlow(method: 'plain' | 'md5' | 'scram-sha-256'): void {
    const entry = this.ctx.config.userlist.get(this.user)
    const lookup = entry === undefined ? this.ctx.authQuery.flowFor(this.ctx, method, this.isConsole ? null : this.database, this.user) : null
    if (lookup === null) return this.beginAuth(clientAuthFlow(method, this.user, entry?.password ?? null, this.ctx.settings.scram_iterations))
    // auth_query runs on a server meanwhile. The client has nothing to send until asked for a
    // password; bytes it sends anyway (a second startup packet, say) end its login (Phase.Login).
    this.phase = Phase.Login
    this.ctx.readGate.setReading(this.socket, false)
    lookup.then((r) => {
      if (this.closed) return
      this.ctx.readGate.setReading(this.socket, true)
      if (r.ok) this.beginAuth(r.flow)
      else this.fail(r.failure)
    }, (err: unknown) => {
      this.ctx.log.error('client.internal_error', this, `auth_query lookup failed: ${(err as Error).stack ?? String(err)}`)
      this.fail(ClientErrors.internalError)
    })
  }

  private beginAuth(flow: ClientAuthFlow): void {
    this.authFlow = flow
    this.phase = Phase.Auth
    this.framer.inspect = INSPECT_ALL
    this.socket.write(flow.start())
  }

  /** auth_type hba: the first matching line of auth_hba_file decides, as in PostgreSQL. */
  private authByHba(): void {
    const hba = this.ctx.hba
    const addr = this.socket.remoteAddress
    const conn = { type: addr === undefined ? 'local' as const : 'host' as const, isTls: this.isTls, database: this.database, user: this.user, address: addr ?? '' }
    const rule = hba === null ? null : matchHba(hba, conn)
    const what = `host "${addr ?? '[local]'}", user "${this.user}", database "${this.database}", ${this.isTls ? 'SSL encryption' : 'no encryption'}`
    if (rule === null) return this.fail(ClientErrors.hbaNoEntry(what))
    // As PostgreSQL: a line that wants a client certificate is refused without a verified one
    // before its method runs; cert lines want one by their nature.
    if ((rule.options.clientcert !== undefined || rule.method === 'cert') && this.verifiedCn() === null) return this.fail(ClientErrors.clientCertRequired)
    if (rule.options.clientcert === 'verify-full' && rule.method !== 'cert') this.certNameRule = rule
    switch (rule.method) {
      case 'trust': return this.afterAuth()
      case 'reject': return this.fail(ClientErrors.hbaRejects(what))
      case 'cert': return this.authByCert(rule.options.map ?? null)
      case 'password': return this.startPasswordFlow('plain')
      default: return this.startPasswordFlow(rule.method)
    }
  }

  /**
   * cert: a client certificate verified against client_tls_ca_file whose CN is the user name, or
   * with an hba map=, a CN that auth_ident_file's map lets in as this user.
   */
  private authByCert(map: string | null = null): void {
    const cn = this.verifiedCn()
    const ident = this.ctx.hba?.ident
    const isAllowed = cn !== null && (map === null ? cn === this.user : ident !== undefined && identAllows(ident, map, cn, this.user))
    if (!isAllowed) return this.fail(ClientErrors.certAuthFailed(this.user))
    this.afterAuth()
  }

  private verifiedCn(): string | null {
    return this.isTls ? verifiedClientCn(this.socket as tls.TLSSocket) : null
  }

  // ---- authentication ----

  private onAuthData(chunk: Buffer): void {
    const f = this.framer
    f.push(chunk)
    while (f.next()) {
      if (f.code !== FrontendCode.Password) {
        return this.fail(ClientErrors.protocolViolation(`expected password response, got message type '${String.fromCharCode(f.code)}'`))
      }
      const step = (this.authFlow as ClientAuthFlow).onMessage(f.buf, f.start + 5, f.end)
      if (step.kind === 'continue') {
        this.socket.write(step.send)
        continue
      }
      if (step.kind === 'fail') {
        return this.fail({ severity: 'FATAL', code: '28P01', message: `password authentication failed for user "${this.user}"`, reason: 'password authentication failed' })
      }
      if (step.send !== null) this.socket.write(step.send)
      if (step.scramClientKey !== null) this.ctx.rememberScramClientKey(this.user, step.scramClientKey)
      this.authFlow = null
      this.framer.inspect = INSPECT_NONE
      this.afterAuth()
      if (f.end < chunk.length) return this.fail(ClientErrors.protocolViolation('data after password before login finished'))
      return
    }
  }

  private afterAuth(): void {
    const rule = this.certNameRule
    if (rule !== null && this.verifiedCn() !== this.user) {
      return this.fail(ClientErrors.certNameMismatch(this.user, rule.method === 'trust' ? 'trust' : 'password'))
    }
    if (this.isConsole) this.startConsole()
    else this.joinPool()
  }

  // ---- admin console ----

  /** The virtual database "pgbouncer": admin_users may run everything, stats_users only SHOW. */
  private startConsole(): void {
    const st = this.ctx.settings
    const isAdmin = st.admin_users.includes(this.user)
    if (!isAdmin && !st.stats_users.includes(this.user)) return this.fail(ClientErrors.consoleNotAllowed)
    this.isConsoleAdmin = isAdmin
    this.ctx.loginClients.remove(this)
    this.state = ClientState.Active
    const parts: Buffer[] = [build.authenticationOk()]
    for (const [name, value] of CONSOLE_WELCOME) parts.push(build.parameterStatus(name, value))
    parts.push(this.issueCancelKey(), build.readyForQuery(TxStatus.Idle))
    this.socket.write(Buffer.concat(parts))
    this.framer.inspect = INSPECT_ALL
    this.phase = Phase.Console
    if (this.ctx.settings.log_connections) this.ctx.log.info('client.logged_in', this, `login attempt: db=${CONSOLE_DB} user=${this.user} (admin console)`)
  }

  private onConsoleData(chunk: Buffer): void {
    const f = this.framer
    f.push(chunk)
    while (f.next()) {
      if (f.code === FrontendCode.Terminate) return this.close('client close request', true)
      if (f.code === FrontendCode.Parse || f.code === FrontendCode.Bind || f.code === FrontendCode.Execute) {
        return this.failConsole('extended query protocol not supported by admin console')
      }
      if (f.code !== FrontendCode.Query) return this.failConsole(`unsupported packet type for admin console: ${describeCode(f.code)}`)
      const sql = parseQueryText(f.buf, f.start + 5, f.end)
      // One query at a time: PAUSE may wait, and the replies must keep their order.
      this.consoleQueue.push(sql)
    }
    this.runConsoleQueue()
  }

  private runConsoleQueue(): void {
    if (this.isConsoleBusy || this.consoleQueue.length === 0 || this.closed) return
    const sql = this.consoleQueue.shift() as string
    this.isConsoleBusy = true
    this.ctx.readGate.setReading(this.socket, false)
    this.ctx.consoleQuery(sql, this.isConsoleAdmin).then(
      (reply) => {
        this.isConsoleBusy = false
        if (this.closed) return
        if (reply.length > 0) this.socket.write(reply)
        this.ctx.readGate.setReading(this.socket, true)
        this.runConsoleQueue()
      },
      (err: unknown) => {
        this.isConsoleBusy = false
        this.ctx.log.error('client.internal_error', this, `admin console failed: ${(err as Error).stack ?? String(err)}`)
        this.fail(ClientErrors.internalError)
      },
    )
  }

  private failConsole(message: string): void {
    if (this.socket.writable) this.socket.write(build.errorResponse({ severity: 'ERROR', code: '08P01', message }))
    this.close(message)
  }

  /** What SHOW CLIENTS shows of this connection. */
  info(): ClientInfo {
    return {
      id: this.id,
      database: this.database,
      user: this.user,
      addr: this.socket.remoteAddress ?? 'unix',
      port: this.socket.remotePort ?? 0,
      state: this.isConsole ? 'active' : this.pool === null ? 'login' : this.state === ClientState.Login ? 'waiting' : this.state,
      connectedAtMs: this.connectedAtMs,
      requestAtMs: this.requestAtMs,
      linkedServerId: this.server?.id ?? null,
      applicationName: this.params.get('application_name') ?? '',
      waitSinceMs: this.waitSinceMs,
      localAddr: this.socket.localAddress,
      localPort: this.socket.localPort,
      tls: this.isTls ? (this.socket as tls.TLSSocket).getProtocol?.() ?? 'TLS' : '',
      preparedStatements: this.ps?.size ?? 0,
      pinned: this.pinReason,
    }
  }

  private joinPool(): void {
    if (this.ctx.disabledDbs.has(this.database)) return this.fail(ClientErrors.databaseDisabled(this.database))
    const db = entryFor(this.ctx.config, this.database)
    const poolUser = db?.user ?? this.user
    if (this.ctx.settings.auth_type === 'any' && (db?.user ?? null) === null) {
      return this.fail(ClientErrors.protocolViolation(`auth_type any needs a user= in the [databases] entry for "${this.database}"`))
    }
    const pool = this.ctx.poolFor(this.database, poolUser)
    if (pool === null) return this.fail(ClientErrors.noSuchDatabase(this.database))
    const now = Date.now()
    if (!pool.isReady && pool.lastLoginError !== null && now - pool.lastLoginFailMs < pool.settings.server_login_retry * 1000) {
      return this.fail(ClientErrors.serverLoginRetry)
    }
    if (!this.countClient()) return
    this.pool = pool
    this.phase = Phase.Login
    this.ctx.loginClients.remove(this)
    pool.addLoginClient(this, now)
    if (pool.isReady) this.onPoolReady()
  }

  /**
   * Applies max_db_client_connections and max_user_client_connections, counted as PgBouncer counts
   * them: per database entry and per login user (not the pool's server-side user). A per-entry
   * value of 0 falls back to the global one, as in PgBouncer.
   */
  private countClient(): boolean {
    const db = entryFor(this.ctx.config, this.database)
    const dbLimit = dbClientLimit(this.ctx.config, db)
    const userLimit = userClientLimit(this.ctx.config, this.user)
    const { byDb, byUser } = this.ctx.clientCounts
    const dbCount = (byDb.get(this.database) ?? 0) + 1
    const userCount = (byUser.get(this.user) ?? 0) + 1
    if (dbLimit > 0 && dbCount > dbLimit) {
      this.fail(ClientErrors.maxDbClientConnections)
      return false
    }
    if (userLimit > 0 && userCount > userLimit) {
      this.fail(ClientErrors.maxUserClientConnections)
      return false
    }
    byDb.set(this.database, dbCount)
    byUser.set(this.user, userCount)
    this.isCounted = true
    return true
  }

  /**
   * Issues and registers this client's cancel key; returns the BackendKeyData to send. Every key
   * handed out is registered: close() unregisters by pid, and an unregistered pid could have been
   * issued again to another client, whose key the close would then remove.
   */
  private issueCancelKey(): Buffer {
    const key = this.ctx.cancels.issue()
    this.cancelPid = key.pid
    this.cancelSecret = key.secret
    this.ctx.cancels.register(key.pid, this)
    return build.backendKeyData(key.pid, key.secret)
  }

  /** The pool knows its server's parameters now: finish the login in one write. */
  onPoolReady(): void {
    if (this.phase !== Phase.Login) return
    const pool = this.pool as Pool
    const welcome = pool.welcome as Map<string, string>
    const tracked = new Map(this.params)
    for (const name of trackedNames(this.ctx.settings.track_extra_parameters)) {
      if (!tracked.has(name) && welcome.has(name)) tracked.set(name, welcome.get(name) as string)
    }
    this.params = shareParams(tracked)
    const parts: Buffer[] = [build.authenticationOk()]
    for (const [name, value] of welcome) parts.push(build.parameterStatus(name, this.params.get(name) ?? value))
    for (const [name, value] of this.params) if (!welcome.has(name)) parts.push(build.parameterStatus(name, value))
    parts.push(this.issueCancelKey(), build.readyForQuery(TxStatus.Idle))
    this.socket.write(Buffer.concat(parts))
    this.phase = Phase.Work
    this.setUpWork(pool)
    pool.clientLoggedIn(this)
    if (this.ctx.settings.log_connections) this.ctx.log.info('client.logged_in', this, 'login attempt: db=' + this.database + ' user=' + this.user)
  }

  // ---- work ----

  private onWorkData(chunk: Buffer): void {
    this.requestAtMs = Date.now()
    ;(this.pool as Pool).stats.received += chunk.length
    if (this.server === null && this.pending.length === 0 && isTerminate(chunk)) {
      // A client that leaves between transactions needs no server to say goodbye to.
      this.close('client close request', true)
      return
    }
    if (this.server === null || this.isSyncingParams || this.pending.length > 0) {
      this.pending.push(chunk)
      if (this.server === null && this.state !== ClientState.Waiting) {
        const pool = this.pool as Pool
        if (pool.acquire(this, this.requestAtMs)) this.onLinked(this.server as unknown as ServerConn)
      }
      this.updateFlow()
      return
    }
    this.forward(chunk, this.server)
  }

  notice(message: string): void {
    if (this.socket.writable) this.socket.write(build.noticeResponse({ severity: 'NOTICE', code: '00000', message }))
  }

  /** The pool linked a waiting client to `server`. */
  onServerAssigned(server: PooledServer): void {
    this.onLinked(server as ServerConn)
  }

  private onLinked(server: ServerConn): void {
    if (this.isTrackingState) server.setTracking(this.ps !== null)
    const params = this.params
    const paramSql = server.agreedParams === params ? null : paramSyncQuery(params, server.params)
    const sql = (paramSql ?? '') + (this.isTrackingState ? gucSyncSql(this.gucs, server.gucs) : '')
    if (sql === '') {
      server.agreedParams = params
      this.flushPending()
      return
    }
    this.isSyncingParams = true
    this.updateFlow()
    const gucs = this.gucs
    server.runInternal(sql, (ok) => {
      this.isSyncingParams = false
      if (this.closed) return
      if (!ok) {
        this.fail(ClientErrors.protocolViolation('var change failed'))
        return
      }
      server.agreedParams = params
      server.gucs = gucs
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
    this.trackedLower = trackedLowerNames(st.track_extra_parameters)
    if (st.max_prepared_statements > 0) {
      this.ps = new ClientStatements()
      // A Bind is read whole to rename its statement, like PgBouncer: allow it up to max_packet_size.
      this.framer.maxInspectLength = Math.max(this.framer.maxInspectLength, st.max_packet_size + 1)
    }
    this.framer.inspect = this.ps !== null
      ? (this.isRefusingState ? TRACKED_REFUSING_CODES : TRACKED_CODES)
      : (this.isRefusingState ? SCANNED_REFUSING_CODES : SCANNED_CODES)
  }

  private flushPending(): void {
    while (this.pending.length > 0 && this.server !== null && !this.closed) {
      const chunk = this.pending.shift() as Buffer
      this.forward(chunk, this.server)
    }
    this.updateFlow()
  }

  private forward(chunk: Buffer, server: ServerConn): void {
    const f = this.framer
    const out = OUT
    REPL.length = 0 // what a throw in another client's forward may have left
    f.push(chunk)
    let runStart = -1
    let runEnd = -1
    let badCode = -1
    let isTerminated = false
    let isAnsweredHere = false
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
          runStart < 0 && server.ps.size === 0 && this.answerDeallocate(f.buf, f.start, f.end, server)) {
          isAnsweredHere = true
          continue
        }
        server.noteFrontendMessage(f.code)
        if (this.isProbingAlways && RUNS_SQL[f.code] === 1) this.needsProbe = true
        if (isScanning) {
          if (f.inspect[f.code] === 1) {
            // Parse/Bind/Describe/Close (and Query under the error policy), whole: maybe rewritten.
            const isReplaced = this.onWholeMessage(f.buf, f.start, f.end, server)
            if (isReplaced || f.buf !== chunk) {
              if (runStart >= 0) out.add(chunk.subarray(runStart, runEnd))
              runStart = -1
              const repl = REPL
              if (isReplaced) {
                for (let i = 0; i < repl.length; i++) out.add(repl[i])
                repl.length = 0
              } else {
                out.add(f.buf.subarray(f.start, f.end))
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
    }
    if (runStart >= 0) out.add(chunk.subarray(runStart, runEnd))
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
   * SQL `DEALLOCATE [PREPARE] name` of a statement this client prepared at protocol level: on the
   * server it lives under tidepool's name, so the server would answer 26000 and, inside a
   * transaction, abort it (DBD::Pg and ruby-pg free their statements this way). Answered here
   * instead, as PostgreSQL would: the name is dropped and DEALLOCATE completes, or in a failed
   * transaction 25P02 comes back and the name stays. Only with nothing outstanding on the server,
   * so the reply cannot overtake another. True when answered.
   */
  private answerDeallocate(buf: Buffer, start: number, end: number, server: ServerConn): boolean {
    const m = DEALLOCATE_RX.exec(buf.toString('utf8', start + 5, end - 1))
    if (m === null) return false
    const name = m[1].startsWith('"') ? m[1].slice(1, -1).replaceAll('""', '"') : m[1].toLowerCase()
    const ps = this.ps as ClientStatements
    const stmt = ps.get(name)
    if (stmt === undefined) return false // an SQL-level PREPARE: the server has it under that name
    const status = server.txStatus
    let reply: Buffer
    if (status === TxStatus.Failed) {
      reply = build.errorResponse({ severity: 'ERROR', code: '25P02', message: 'current transaction is aborted, commands ignored until end of transaction block' })
    } else {
      ps.undoAdd(name, stmt)
      reply = build.commandComplete('DEALLOCATE')
    }
    server.ps.emit.push(Buffer.concat([reply, build.readyForQuery(status)]))
    return true
  }

  /** A message that is not read whole: queue it for response matching, start scanning a Query. */
  private onStreamedMessage(code: number, server: ServerConn): void {
    if (code === FrontendCode.Query) this.isScanningQuery = true
    if (this.ps === null) return
    switch (code) {
      case FrontendCode.Sync:
        if (!server.isCopyIn) server.ps.push(code, Act.Forward, null)
        break
      case FrontendCode.Execute:
      case FrontendCode.Query:
      case FrontendCode.FunctionCall:
        server.ps.push(code, Act.Forward, null)
        break
    }
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
  private noteScan(flags: number, names: string[] | null): void {
    if (flags === 0) return
    if ((flags & ScanFlag.Probe) !== 0) this.needsProbe = true
    if ((flags & ScanFlag.Listen) !== 0) this.isListening = true
    if ((flags & ScanFlag.DropStatements) !== 0) this.ps?.clear()
    if (names !== null) for (const n of names) (this.gucNames ??= new Set()).add(n)
  }

  /**
   * A Parse, Bind, Describe or Close (or a Query under the error policy), read whole. Returns true
   * when `repl` holds what goes to the server instead (possibly nothing).
   */
  private onWholeMessage(buf: Buffer, start: number, end: number, server: ServerConn): boolean {
    const code = buf[start]
    const body = start + 5
    const ps = this.ps
    const sp = server.ps
    switch (code) {
      case FrontendCode.Query: {
        const sc = WHOLE_TEXT_SCANNER
        sc.scan(buf, body, end)
        if (ps !== null) sp.push(code, Act.Forward, null)
        if (sc.creator !== '') {
          REPL.push(build.query(refusalSql(refusedMessage(sc.creator))))
          return true
        }
        this.noteScan(sc.flags, sc.names)
        return false
      }
      case FrontendCode.Parse: {
        const nameEnd = cstringEnd(buf, body, end)
        const qStart = nameEnd + 1
        const qEnd = cstringEnd(buf, qStart, end)
        const sc = WHOLE_TEXT_SCANNER
        const flags = sc.scan(buf, qStart, qEnd)
        const isRefused = this.isRefusingState && sc.creator !== ''
        if (isRefused && ps !== null) {
          // Refused at Parse, as a statement PostgreSQL cannot parse would be: no name is created.
          this.failRequest(sp, build.errorResponse({ severity: 'ERROR', code: '0A000', message: refusedMessage(sc.creator) }))
          return true
        }
        const replacement = isRefused ? Buffer.from(refusalSql(refusedMessage(sc.creator)), 'utf8') : null
        if (!isRefused) this.noteScan(flags, sc.names)
        if (nameEnd === body || ps === null) {
          if (ps !== null) sp.push(code, Act.Forward, null)
          if (replacement === null) return false
          REPL.push(parseMessage(buf.toString('utf8', body, nameEnd), replacement, buf.subarray(qEnd + 1, end)))
          return true
        }
        const name = buf.toString('utf8', body, nameEnd)
        if (ps.get(name) !== undefined) {
          this.failRequest(sp, duplicateError(name))
          return true
        }
        const stmt = statementFor(buf, qStart, qEnd, end, isRefused ? 0 : flags, replacement)
        ps.add(name, stmt)
        const stats = (this.pool as Pool).stats
        stats.clientParses++
        if (sp.touch(stmt)) {
          sp.push(code, Act.FakeParse, new RequestRef(stmt, ps, name, null))
          sp.drain()
          return true
        }
        sp.addPending(stmt, this.ctx.settings.max_prepared_statements, REPL)
        REPL.push(stmt.parseMsg)
        stats.serverParses++
        sp.push(code, Act.ClientParse, new RequestRef(stmt, ps, name, null))
        return true
      }
      case FrontendCode.Bind: {
        const portalEnd = cstringEnd(buf, body, end)
        const sStart = portalEnd + 1
        const sEnd = cstringEnd(buf, sStart, end)
        if (sEnd === sStart || ps === null) {
          if (ps !== null) sp.push(code, Act.Forward, null)
          return false
        }
        ;(this.pool as Pool).stats.binds++
        return this.forwardRenamed(ps, server, code, buf, body, sStart, sEnd, end)
      }
      case FrontendCode.Describe:
      case FrontendCode.Close: {
        const nStart = body + 1
        const nEnd = cstringEnd(buf, nStart, end)
        if (buf[body] !== STATEMENT || nEnd === nStart || ps === null) {
          if (ps !== null) sp.push(code, Act.Forward, null)
          return false
        }
        if (code === FrontendCode.Close) {
          // PostgreSQL answers a Close of a name it does not know with CloseComplete too.
          const name = buf.toString('utf8', nStart, nEnd)
          const stmt = ps.get(name) ?? null
          if (stmt !== null) ps.forget(name) // the request keeps the reference until answered
          sp.push(code, Act.FakeClose, new RequestRef(stmt, ps, name, null))
          sp.drain()
          return true
        }
        return this.forwardRenamed(ps, server, code, buf, body, nStart, nEnd, end)
      }
    }
    return false
  }

  /**
   * A Bind or Describe naming the client's statement buf[from, to) goes out under the statement's
   * server name, after a Parse when this server lacks it; an unknown name queues PostgreSQL's
   * 26000 error in its place. Always true: the message is replaced either way.
   */
  private forwardRenamed(ps: ClientStatements, server: ServerConn, code: number, buf: Buffer, body: number, from: number, to: number, end: number): true {
    const sp = server.ps
    const name = buf.toString('utf8', from, to)
    const stmt = ps.get(name)
    if (stmt === undefined) {
      this.failRequest(sp, missingError(name))
      return true
    }
    const flags = stmt.scanFlags
    if (flags !== 0) this.noteScan(flags, null)
    this.ensurePrepared(stmt, server)
    REPL.push(renamed(code, buf, body, from, stmt.serverName, to, end))
    sp.push(code, Act.Forward, null)
    return true
  }

  /**
   * The server fails a harmless request in place of the client's (a Describe of a name nobody
   * uses), so that it aborts the transaction and skips to Sync exactly as for the real error;
   * the error it sends is replaced by `error`.
   */
  private failRequest(sp: ServerConn['ps'], error: Buffer): void {
    REPL.push(build.describeStatement(MISSING_NAME))
    sp.push(FrontendCode.Describe, Act.Replace, new RequestRef(null, null, '', error))
  }

  /** A Parse goes ahead of a Bind/Describe on a server that lacks the statement. */
  private ensurePrepared(stmt: Statement, server: ServerConn): void {
    const sp = server.ps
    if (sp.touch(stmt)) return
    sp.addPending(stmt, this.ctx.settings.max_prepared_statements, REPL)
    REPL.push(stmt.parseMsg)
    ;(this.pool as Pool).stats.serverParses++
    sp.push(FrontendCode.Parse, Act.InjectedParse, stmt)
  }

  /**
   * Pause reading from the client while it waits for a server or the server cannot keep up. A
   * waiting client usually sent one query and waits for its answer, so the socket is paused only
   * once a second chunk is queued: pausing and resuming on every wait cost measurable CPU.
   */
  private updateFlow(): void {
    if (this.closed) return
    const hold = this.server === null ? this.pending.length > 1 : this.isSyncingParams || this.isWaitingServerDrain
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
    return (this.pool as Pool).settings.pool_mode !== 'session' && this.server === server && server.isReady &&
      this.pending.length === 0 && !this.isSyncingParams && !this.needsProbe && this.pinReason === ''
  }

  /** After a chunk with ReadyForQuery from the linked server. */
  onServerReady(server: ServerConn): void {
    const pool = this.pool as Pool
    const mode = pool.settings.pool_mode
    if (mode === 'session' || this.server !== server) return
    if (!server.isReady || this.pending.length > 0 || this.isSyncingParams) return
    if (this.needsProbe) {
      this.probe(server)
      return
    }
    if (this.pinReason !== '') return
    this.onClientDrain()
    releaseServer(pool, server)
  }

  /**
   * The transaction that just ended may have changed session state: ask the server what is left
   * before it goes back to the pool. The client's next messages wait meanwhile.
   */
  private probe(server: ServerConn): void {
    this.needsProbe = false
    this.isSyncingParams = true
    this.updateFlow()
    const result = newProbeResult()
    server.runInternal(this.probeSqlFor(server), (ok) => {
      this.isSyncingParams = false
      if (this.closed) return
      if (!ok) {
        this.fail(ClientErrors.protocolViolation('session state probe failed'))
        return
      }
      this.applyProbe(server, result)
      this.updateFlow()
      if (this.pending.length > 0) this.flushPending()
      else this.onServerReady(server)
    }, (buf, start, end) => readProbeRow(result, buf, start, end))
  }

  /** The probe for this client's session on `server`: its named GUCs, and the server's login user. */
  private probeSqlFor(server: ServerConn): string {
    return probeSql(this.trackedLower, this.gucNames ?? NO_NAME_SET, server.target.user)
  }

  private applyProbe(server: ServerConn, r: ProbeResult): void {
    this.gucs = r.gucs
    server.gucs = r.gucs
    this.isListening = r.bound.includes('LISTEN')
    if (server.isTracking) {
      // DISCARD ALL / DEALLOCATE ALL took tidepool's statements too; any other mismatch is unknown state.
      if (r.protocolStatements === 0) server.ps.clearCache()
      else if (r.protocolStatements !== server.ps.cache.size) server.closeOnRelease = true
    }
    this.setPinned(r.bound)
  }

  /**
   * The client leaves a ready server that has (or may have) session state: probe it unlinked and
   * put it back in the pool only if nothing session-bound is left; its GUCs are then what the
   * next client's link resets or replaces.
   */
  private retire(server: ServerConn, pool: Pool): void {
    server.client = null
    this.server = null
    const result = newProbeResult()
    server.runInternal(this.probeSqlFor(server), (ok) => {
      if (server.isClosed) return
      if (!ok || result.bound !== '') {
        server.close(ok ? `client left session state behind (${result.bound})` : 'session state probe failed')
        return
      }
      server.gucs = result.gucs
      if (server.isTracking && result.protocolStatements !== server.ps.cache.size) {
        if (result.protocolStatements === 0) server.ps.clearCache()
        else server.closeOnRelease = true
      }
      releaseServer(pool, server)
    }, (buf, start, end) => readProbeRow(result, buf, start, end))
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

  cancelTarget(): { host: string; port: number; pid: number; secret: number } | null {
    const s = this.server
    if (s === null || s.isReady) return null
    return { host: s.target.host, port: s.target.port, pid: s.backendPid, secret: s.backendSecret }
  }

  // ---- close ----

  /** Send `err` if the protocol still allows, then close with its reason. */
  fail(err: ClientFailure): void {
    if (this.closed) return
    this.pool?.stats.countError('pooler', err.code)
    if (this.socket.writable) {
      const e = build.errorResponse({ severity: err.severity, code: err.code, message: err.message })
      if (err.severity === 'ERROR' && this.phase === Phase.Work) {
        this.socket.write(Buffer.concat([e, build.readyForQuery(TxStatus.Idle)]))
        return
      }
      this.socket.write(e)
    }
    this.close(err.reason)
  }

  close(reason: string, isQuiet = false): void {
    if (this.closed) return
    const wasPinned = this.pinReason !== ''
    this.closed = true
    this.phase = Phase.Closed
    this.ctx.clients.delete(this)
    if (this.cancelPid !== 0) this.ctx.cancels.unregister(this.cancelPid)
    if (this.isCounted) {
      decrement(this.ctx.clientCounts.byDb, this.database)
      decrement(this.ctx.clientCounts.byUser, this.user)
    }
    const server = this.server
    const pool = this.pool
    if (this.pinReason !== '') this.setPinned('')
    if (server !== null && pool !== null) {
      if (server.isReady && this.pending.length === 0 && !this.isSyncingParams) {
        if (this.needsProbe || this.pinReason !== '' || wasPinned) this.retire(server, pool)
        else releaseServer(pool, server)
      } else {
        // Unlink first so the server's close does not report back to this client.
        server.client = null
        this.server = null
        server.close('client disconnected while server was not ready')
      }
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
    this.socket.end()
    this.socket.destroySoon()
    if ((!isQuiet && this.ctx.settings.log_disconnections) || this.ctx.log.debugEnabled) {
      const age = Math.round((Date.now() - this.connectedAtMs) / 1000)
      this.ctx.log.info('client.closed', this, `closing because: ${reason} (age=${age}s)`)
    }
  }
}

/**
 * Back to the pool. With server_reset_query_always the pool runs server_reset_query on it first:
 * what that query wipes (DISCARD ALL, DEALLOCATE ALL, RESET ALL) is no longer on the server.
 */
function releaseServer(pool: Pool, server: ServerConn): void {
  const st = pool.settings
  if (st.server_reset_query_always && st.server_reset_query !== '' && st.pool_mode !== 'session') {
    const q = st.server_reset_query
    const isDiscardAll = /\bdiscard\s+all\b/i.test(q)
    if (isDiscardAll || /\bdeallocate\s+(prepare\s+)?all\b/i.test(q)) server.ps.clearCache()
    if (isDiscardAll || /\breset\s+all\b/i.test(q)) server.gucs = NO_GUCS
  }
  pool.release(server, Date.now())
}

/** Work-phase messages read whole: those that name prepared statements, and Query when refusing session state. */
const TRACKED_CODES = inspectTable([FrontendCode.Parse, FrontendCode.Bind, FrontendCode.Describe, FrontendCode.Close])
const TRACKED_REFUSING_CODES = inspectTable([FrontendCode.Parse, FrontendCode.Bind, FrontendCode.Describe, FrontendCode.Close, FrontendCode.Query])
/** Without statement mapping only Parse texts are read whole (a Query is scanned as it streams). */
const SCANNED_CODES = inspectTable([FrontendCode.Parse])
const SCANNED_REFUSING_CODES = inspectTable([FrontendCode.Parse, FrontendCode.Query])
/** Describe/Close target byte for a prepared statement ('P' is a portal). */
const STATEMENT = 0x53

/** Where the NUL that ends the string at `from` is; a string running past `end` is a protocol violation. */
function cstringEnd(buf: Buffer, from: number, end: number): number {
  const nul = buf.indexOf(0, from)
  if (nul < 0 || nul >= end) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'string without terminating NUL')
  return nul
}

/** Message types a client may send after login (PostgreSQL's frontend messages, less the auth ones). */
const VALID_WORK_CODES = new Uint8Array(256)
for (const c of [FrontendCode.Bind, FrontendCode.Close, FrontendCode.CopyData, FrontendCode.CopyDone, FrontendCode.CopyFail,
  FrontendCode.Describe, FrontendCode.Execute, FrontendCode.Flush, FrontendCode.FunctionCall, FrontendCode.Parse,
  FrontendCode.Query, FrontendCode.Sync, FrontendCode.Terminate]) VALID_WORK_CODES[c] = 1

/**
 * Replacement messages for the one being forwarded: filled and drained within one forward() call,
 * so one array serves every client.
 */
const REPL: Buffer[] = []
const NO_NAMES: readonly string[] = []
const NO_NAME_SET: ReadonlySet<string> = new Set()
let trackedLowerCache: { from: readonly string[]; names: readonly string[] } | null = null

/** The lower-case tracked names, computed once per track_extra_parameters value (settings are frozen). */
function trackedLowerNames(extra: readonly string[]): readonly string[] {
  if (trackedLowerCache === null || trackedLowerCache.from !== extra) {
    trackedLowerCache = { from: extra, names: trackedNames(extra).map((n) => n.toLowerCase()) }
  }
  return trackedLowerCache.names
}

/** `DEALLOCATE [PREPARE] name` alone in a Query (PostgreSQL folds an unquoted name to lower case). */
const DEALLOCATE_RX = /^\s*deallocate\s+(?:prepare\s+)?("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s*;?\s*$/i

/** Messages that run SQL, which may make session state inside a function: Query, Execute, FunctionCall. */
const RUNS_SQL = new Uint8Array(256)
RUNS_SQL[FrontendCode.Query] = 1
RUNS_SQL[FrontendCode.Execute] = 1
RUNS_SQL[FrontendCode.FunctionCall] = 1

/** disable_pqexec: the extended protocol only, since a simple Query may carry several statements. */
const NO_PQEXEC_WORK_CODES = VALID_WORK_CODES.slice()
NO_PQEXEC_WORK_CODES[FrontendCode.Query] = 0

function decrement(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 1) - 1
  if (n <= 0) counts.delete(key)
  else counts.set(key, n)
}

/** The client's address as PgBouncer writes it for application_name_add_host. */
function peerDetails(socket: net.Socket, listenPort: number): string {
  const addr = socket.remoteAddress
  if (addr === undefined) return `unix:${listenPort}`
  return socket.remoteFamily === 'IPv6' ? `[${addr}]:${socket.remotePort}` : `${addr}:${socket.remotePort}`
}

function isTerminate(chunk: Buffer): boolean {
  return chunk.length === 5 && chunk[0] === FrontendCode.Terminate && chunk.readInt32BE(1) === 4
}

function describeCode(code: number): string {
  return code >= 0x20 && code < 0x7f ? `'${String.fromCharCode(code)}'` : `0x${code.toString(16)}`
}

const OWNER = Symbol('tidepool.client')
type OwnedSocket = net.Socket & { [OWNER]: ClientConn }

function onSocketData(this: OwnedSocket, chunk: Buffer): void {
  this[OWNER].onData(chunk)
}
function onSocketError(this: OwnedSocket, err: Error): void {
  this[OWNER].close(`client socket error: ${err.message}`)
}
function onSocketClose(this: OwnedSocket): void {
  this[OWNER].close('client close request')
}
function onSocketDrain(this: OwnedSocket): void {
  this[OWNER].onClientDrain()
}

const CONSOLE_DB = 'pgbouncer'
/** The content type byte of a TLS handshake record, the first byte a ClientHello sends. */
const TLS_HANDSHAKE_RECORD = 0x16

/** The ParameterStatus set PgBouncer's console sends. */
const CONSOLE_WELCOME: ReadonlyArray<readonly [string, string]> = [
  ['server_version', '0.1.0/bouncer'], ['client_encoding', 'UTF8'], ['server_encoding', 'UTF8'], ['DateStyle', 'ISO'],
  ['TimeZone', 'GMT'], ['standard_conforming_strings', 'on'], ['is_superuser', 'on'],
]
