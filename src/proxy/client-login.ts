// A client's login, from its StartupMessage's parameters to "authenticated": the startup checks
// (shutdown, TLS required, max_client_conn, startup parameters), then the auth_type's
// flow: trust/any, plain/md5/scram-sha-256 (from auth_file or auth_query), cert, or hba's first
// matching line; trust and cert admit only users auth_file or auth_query knows, as PgBouncer's.
// One ClientLogin per connection while it authenticates; what follows (the console, or the pool)
// is the client's (client-conn.ts).
// Must not: move a client onto a pool's lists (the client joins its pool; the pool says when it is ready).

import type net from 'node:net'
import type tls from 'node:tls'
import { verifiedClientCn } from '../net/tls.ts'
import { localEndPoint } from '../net/channel-binding.ts'
import { INSPECT_ALL, INSPECT_NONE, type Framer } from '../protocol/framer.ts'
import { FrontendCode, MAX_AUTH_MESSAGE_LENGTH, TxStatus } from '../protocol/codes.ts'
import * as build from '../protocol/build.ts'
import type { Pool } from '../pool/pool.ts'
import { ClientErrors, type ClientFailure } from '../protocol/client-errors.ts'
import { SqlState } from '../protocol/pg-error.ts'
import type { LogSubject } from '../observe/log.ts'
import { dbClientLimit, entryFor, userClientLimit } from '../config/effective.ts'
import { clientAuthFlow, type AuthStep, type ClientAuthFlow } from '../auth/client-auth.ts'
import { matchHba, type HbaRule } from '../auth/hba.ts'
import { identAllows } from '../auth/ident.ts'
import { ownUid, peerUid, type PeerUid } from '../net/peer-cred.ts'
import type { ProxyContext } from './context.ts'
import { canonicalParamName, shareParams, trackedNames } from './server-params.ts'
import { parseStartupOptions } from '../protocol/startup.ts'
import { CONSOLE_DB, CONSOLE_OWN_USER } from './client-console.ts'

/** What the login needs of its client connection (ClientConn implements it). */
export interface LoginClient extends LogSubject {
  readonly socket: net.Socket
  readonly isTls: boolean
  readonly isUnix: boolean
  readonly ctx: ProxyContext
  readonly framer: Framer
  user: string
  database: string
  params: ReadonlyMap<string, string>
  isConsole: boolean
  /** User pgbouncer on the unix socket from tidepool's own OS user: an admin of the console without auth. */
  isOwnUser: boolean
  /** With workers: the client slots this client holds (ctx.clientSlots keys), given back at close. */
  readonly slotKeys: string[]
  readonly isClosed: boolean
  fail(err: ClientFailure): void
  /** The client proved who it is: it enters the console or its pool. */
  onAuthenticated(): void
}

export class ClientLogin {
  private authFlow: ClientAuthFlow | null = null
  /** An hba clientcert=verify-full rule whose certificate name check waits until its method succeeds. */
  private certNameRule: HbaRule | null = null
  /**
   * auth_query runs on a server, or PBKDF2 on the threadpool, meanwhile. The client has nothing
   * to send until answered; bytes it sends anyway (a second startup packet, say) end its login.
   */
  private isLookingUp = false
  /** The framer's limit after login (max_packet_size); until then PostgreSQL's auth message limit. */
  private readonly maxPacketSize: number

  constructor(private readonly client: LoginClient) {
    // An unauthenticated client could otherwise make us assemble a 16 MiB "password": refuse any
    // message over PostgreSQL's limit from its length word, before a byte of it is buffered.
    const f = client.framer
    this.maxPacketSize = f.maxLength
    f.maxLength = Math.min(f.maxLength, MAX_AUTH_MESSAGE_LENGTH)
    f.maxLengthName = 'the limit for messages before authentication'
  }

  /** The StartupMessage's parameters: check them, then run auth_type's flow. */
  start(params: Map<string, string>): void {
    const c = this.client
    const st = c.ctx.settings
    c.user = params.get('user') ?? ''
    c.database = params.get('database') || c.user
    // During a shutdown only the admin console is let in (over the unix socket, which stays open).
    if (c.ctx.isShuttingDown && c.database !== CONSOLE_DB) return c.fail(ClientErrors.shuttingDown)
    // As PgBouncer: TLS is never required on the unix socket (the console over it included).
    if (c.ctx.clientTls?.isRequired === true && !c.isTls && !c.isUnix) return c.fail(ClientErrors.sslRequired)
    if (c.ctx.clients.size > st.max_client_conn) return c.fail(ClientErrors.maxClientConn)
    this.withSlots([{ key: CLIENT_SLOTS_ALL, limit: st.max_client_conn, failure: ClientErrors.maxClientConn }], () => this.startAfterSlot(params))
  }

  private startAfterSlot(params: Map<string, string>): void {
    const c = this.client
    const st = c.ctx.settings
    const ignored = ignoredParams(st.ignore_startup_parameters)
    const tracked = new Map<string, string>()
    for (const [name, value] of params) {
      if (name === 'user' || name === 'database') continue
      if (name === 'options') {
        const failure = takeStartupOptions(value, st.track_extra_parameters, ignored, tracked)
        if (failure !== null) return c.fail(failure)
        continue
      }
      const canonical = canonicalParamName(name, st.track_extra_parameters)
      if (canonical !== null) tracked.set(canonical, value)
      else if (!ignored.has(name.toLowerCase())) return c.fail(ClientErrors.unsupportedStartupParameter(name))
    }
    if (st.application_name_add_host) {
      // PgBouncer's format, so log parsers and pg_stat_activity queries written for it still match.
      tracked.set('application_name', `${tracked.get('application_name') ?? 'app'} - ${peerDetails(c.socket, st.listen_port)}`)
    }
    // Shared, so that welcomeParams finds the logins before it asked with the same map.
    c.params = shareParams(tracked)
    c.isConsole = c.database === CONSOLE_DB
    // Whether the database exists is told only after authentication (admitToPool), as PgBouncer
    // does: a client without valid credentials must not learn which names exist.
    // PgBouncer's rule: user pgbouncer on the unix socket, run by tidepool's own OS user, enters
    // the console as an admin without a password (local tooling needs no admin_users entry).
    if (c.isConsole && c.isUnix && !c.isTls && c.user === CONSOLE_OWN_USER) {
      return this.awaitThen(peerUid(c.socket), 'peer credentials', (peer) => this.afterPeerCheck(peer))
    }
    this.authenticate()
  }

  private afterPeerCheck(peer: PeerUid): void {
    const c = this.client
    const own = ownUid()
    if (peer.uid !== null && peer.uid === own) {
      c.isOwnUser = true
      if (c.ctx.settings.log_connections) c.ctx.log.info('client.peer_login', c, 'pgbouncer access from unix socket')
      return this.afterAuth()
    }
    const then = `the login goes on with auth_type ${c.ctx.settings.auth_type}`
    // Unknown credentials are a setup problem (no perl) the operator should hear of; another
    // user's tools logging in as pgbouncer are an ordinary login.
    if (peer.uid === null) c.ctx.log.warn('client.peer_unknown', c, `peer credentials unknown: ${peer.why}; ${then}`)
    else if (c.ctx.log.debugEnabled) c.ctx.log.debug('client.peer_login', c, `peer uid ${peer.uid} is not tidepool's (${own}); ${then}`)
    this.authenticate()
  }

  /** auth_type's flow. */
  private authenticate(): void {
    const c = this.client
    const authType = c.ctx.settings.auth_type
    if (authType === 'any') return this.afterAuth()
    if (authType === 'trust') return this.ifKnownUser(ClientErrors.trustUnknownUser(c.user), () => this.afterAuth())
    if (authType === 'plain' || authType === 'md5' || authType === 'scram-sha-256') return this.startPasswordFlow(authType)
    if (authType === 'cert') return this.authByCert()
    if (authType === 'hba') return this.authByHba()
    c.fail(ClientErrors.authTypeNotSupported(authType))
  }

  /** Password messages, one flow step each. */
  onData(chunk: Buffer): void {
    const c = this.client
    if (this.isLookingUp || this.authFlow === null) return c.fail(ClientErrors.protocolViolation('message received before login finished'))
    const f = c.framer
    f.push(chunk)
    while (f.next()) {
      if (f.code !== FrontendCode.Password) {
        return c.fail(ClientErrors.protocolViolation(`expected password response, got message type '${String.fromCharCode(f.code)}'`))
      }
      const step = this.authFlow.onMessage(f.buf, f.start + 5, f.end)
      const isLastInChunk = f.end >= chunk.length
      if (step instanceof Promise) {
        // PBKDF2 runs on the threadpool. The client waits for our answer, so bytes it sends
        // meanwhile (now or later) are out of turn, as in a lookup.
        if (!isLastInChunk) return c.fail(ClientErrors.protocolViolation('data after password before login finished'))
        return this.awaitThen(step, 'password check', (st) => this.onStep(st, true))
      }
      if (step.kind === 'continue') {
        c.socket.write(step.send)
        continue
      }
      return this.onStep(step, isLastInChunk)
    }
  }

  /** A step that ends the exchange, or continues it once an asynchronous check is done. */
  private onStep(step: AuthStep, isLastInChunk: boolean): void {
    const c = this.client
    if (step.kind === 'continue') {
      c.socket.write(step.send)
      return
    }
    if (step.kind === 'fail') {
      // PostgreSQL's one message for every cause; the cause goes to the log only.
      const why = step.reason === undefined ? '' : `: ${step.reason}`
      return c.fail({ severity: 'FATAL', code: SqlState.InvalidPassword, message: `password authentication failed for user "${c.user}"`, reason: `password authentication failed${why}` })
    }
    if (step.send !== null) c.socket.write(step.send)
    if (step.scramClientKey !== null) c.ctx.rememberScramClientKey(c.user, step.scramClientKey)
    this.authFlow = null
    c.framer.inspect = INSPECT_NONE
    this.afterAuth()
    if (!isLastInChunk) return c.fail(ClientErrors.protocolViolation('data after password before login finished'))
  }

  private startPasswordFlow(method: 'plain' | 'md5' | 'scram-sha-256'): void {
    const c = this.client
    const entry = c.ctx.config.userlist.get(c.user)
    const lookup = entry === undefined ? c.ctx.authQuery.flowFor(c.ctx, method, c.isConsole ? null : c.database, c.user) : null
    if (lookup === null) return this.beginAuth(clientAuthFlow(method, c.user, entry?.password ?? null, c.ctx.settings.scram_iterations))
    this.awaitThen(lookup, 'auth_query lookup', (r) => (r.ok ? this.beginAuth(r.flow) : c.fail(r.failure)))
  }

  /** Stops reading while `p` runs (the client has nothing to send meanwhile), then goes on with its value. */
  private awaitThen<T>(p: Promise<T>, what: string, then: (v: T) => void): void {
    const c = this.client
    this.isLookingUp = true
    c.ctx.readGate.setReading(c.socket, false)
    p.then((v) => {
      if (c.isClosed) return
      this.isLookingUp = false
      c.ctx.readGate.setReading(c.socket, true)
      then(v)
    }, (err: unknown) => {
      c.ctx.log.error('client.internal_error', c, `${what} failed: ${(err as Error).stack ?? String(err)}`)
      c.fail(ClientErrors.internalError)
    })
  }

  private beginAuth(flow: ClientAuthFlow): void {
    const c = this.client
    this.authFlow = flow
    c.framer.inspect = INSPECT_ALL
    // Over TLS, SCRAM offers channel binding to tidepool's own certificate on this connection.
    c.socket.write(flow.start(c.isTls ? localEndPoint(c.socket as tls.TLSSocket) : null))
  }

  /** auth_type hba: the first matching line of auth_hba_file decides, as in PostgreSQL. */
  private authByHba(): void {
    const c = this.client
    const hba = c.ctx.hba
    const addr = c.socket.remoteAddress
    const conn = { type: c.isUnix ? 'local' as const : 'host' as const, isTls: c.isTls, database: c.database, user: c.user, address: addr ?? '' }
    const rule = hba === null ? null : matchHba(hba, conn)
    const what = `host "${addr ?? '[local]'}", user "${c.user}", database "${c.database}", ${c.isTls ? 'SSL encryption' : 'no encryption'}`
    if (rule === null) return c.fail(ClientErrors.hbaNoEntry(what))
    // As PostgreSQL: a line that wants a client certificate is refused without a verified one
    // before its method runs; cert lines want one by their nature.
    if ((rule.options.clientcert !== undefined || rule.method === 'cert') && this.verifiedCn() === null) return c.fail(ClientErrors.clientCertRequired)
    if (rule.options.clientcert === 'verify-full' && rule.method !== 'cert') this.certNameRule = rule
    switch (rule.method) {
      case 'trust': return this.ifKnownUser(ClientErrors.trustUnknownUser(c.user), () => this.afterAuth())
      case 'reject': return c.fail(ClientErrors.hbaRejects(what))
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
    const c = this.client
    const cn = this.verifiedCn()
    const ident = c.ctx.hba?.ident
    const isAllowed = cn !== null && (map === null ? cn === c.user : ident !== undefined && identAllows(ident, map, cn, c.user))
    if (!isAllowed) return c.fail(ClientErrors.certAuthFailed(c.user))
    this.ifKnownUser(ClientErrors.certAuthFailed(c.user, `certificate authentication failed: no such user: ${c.user}`), () => this.afterAuth())
  }

  /**
   * trust and cert check no secret of the client's, but as in PgBouncer they admit only a user it
   * knows: one in auth_file, or one auth_query finds (auth_user of the entry or global). Anyone
   * else gets `refusal`, a forced user= in the entry notwithstanding.
   */
  private ifKnownUser(refusal: ClientFailure, then: () => void): void {
    const c = this.client
    if (c.ctx.config.userlist.has(c.user)) return then()
    const lookup = c.ctx.authQuery.isKnownUser(c.ctx, c.isConsole ? null : c.database, c.user)
    if (lookup === null) return c.fail(refusal)
    this.awaitThen(lookup, 'auth_query lookup', (r) => (!r.ok ? c.fail(r.failure) : r.isKnown ? then() : c.fail(refusal)))
  }

  private verifiedCn(): string | null {
    const c = this.client
    return c.isTls ? verifiedClientCn(c.socket as tls.TLSSocket) : null
  }

  private afterAuth(): void {
    const c = this.client
    c.framer.maxLength = this.maxPacketSize
    c.framer.maxLengthName = 'max_packet_size'
    const rule = this.certNameRule
    if (rule !== null && this.verifiedCn() !== c.user) {
      return c.fail(ClientErrors.certNameMismatch(c.user, rule.method === 'trust' ? 'trust' : 'password'))
    }
    const cfg = c.ctx.config
    // The console counts too (admitToConsole); admin_users are never refused there: no limit.
    const isExempt = c.isConsole && c.ctx.settings.admin_users.includes(c.user)
    const db = c.isConsole ? undefined : entryFor(cfg, c.database)
    this.withSlots([
      { key: dbSlotKey(c.database), limit: isExempt ? 0 : dbClientLimit(cfg, db), failure: ClientErrors.maxDbClientConnections },
      { key: userSlotKey(c.user), limit: isExempt ? 0 : userClientLimit(cfg, c.user), failure: ClientErrors.maxUserClientConnections },
    ], () => c.onAuthenticated())
  }

  /**
   * With workers: takes one client slot under each limit in turn (the primary counts them over all
   * workers), then goes on; the first full one fails the client. In one process the local counts
   * (max_client_conn above, admitToPool's) are the totals, and this goes on at once.
   */
  private withSlots(reqs: ReadonlyArray<{ key: string; limit: number; failure: ClientFailure }>, then: () => void): void {
    const c = this.client
    const slots = c.ctx.clientSlots
    if (slots === null || reqs.length === 0) return then()
    const [req, ...rest] = reqs
    const next = (ok: boolean) => {
      if (!ok) return c.fail(req.failure)
      c.slotKeys.push(req.key)
      this.withSlots(rest, then)
    }
    const r = slots.take(req.key, req.limit)
    if (typeof r === 'boolean') next(r)
    else this.awaitThen(r, 'client slot', next)
  }
}

let ignoredFor: readonly string[] | null = null
let ignoredSet: ReadonlySet<string> = new Set()

/** ignore_startup_parameters in lower case, made again only when the setting changed (a reload makes a new array). */
function ignoredParams(names: readonly string[]): ReadonlySet<string> {
  if (names !== ignoredFor) {
    ignoredSet = new Set(names.map((n) => n.toLowerCase()))
    ignoredFor = names
  }
  return ignoredSet
}

/** The ctx.clientSlots key of max_client_conn. */
export const CLIENT_SLOTS_ALL = '*'

/** The ctx.clientSlots keys of max_db_client_connections and max_user_client_connections. */
export function dbSlotKey(database: string): string {
  return `db:${database}`
}
export function userSlotKey(user: string): string {
  return `user:${user}`
}

/**
 * max_login_clients (0: max_client_conn) bounds the connections not yet authenticated: silent or
 * slow sockets would otherwise pile up until client_login_timeout, each holding a descriptor and a
 * place in max_client_conn. True (and logged) when a new connection is over it.
 */
export function isOverLoginLimit(ctx: ProxyContext, client: LogSubject): boolean {
  const st = ctx.settings
  const max = st.max_login_clients > 0 ? st.max_login_clients : st.max_client_conn
  if (ctx.loginClients.size < max) return false
  ctx.log.warn('client.login_limit', client, `refused: ${max} connections are still logging in (max_login_clients)`)
  return true
}

/**
 * The pool an authenticated client joins, counted in max_db/user_client_connections; or why it
 * may not join (DISABLE, no such database, server_login_retry, a client limit).
 */
export function admitToPool(ctx: ProxyContext, database: string, user: string, nowMs: number): { pool: Pool; failure: null } | { pool: null; failure: ClientFailure } {
  const db = entryFor(ctx.config, database)
  if (db === undefined) return refused(ClientErrors.noSuchDatabase(database))
  if (ctx.disabledDbs.has(database)) return refused(ClientErrors.databaseDisabled(database))
  const poolUser = db.user ?? user
  if (ctx.settings.auth_type === 'any' && db.user === null) {
    return refused(ClientErrors.protocolViolation(`auth_type any needs a user= in the [databases] entry for "${database}"`))
  }
  const pool = ctx.poolFor(database, poolUser)
  if (pool === null) return refused(ClientErrors.noSuchDatabase(database))
  const failing = pool.isReady ? null : pool.failingLogin(nowMs)
  if (failing !== null) return refused(failing)
  const failure = countClient(ctx, database, user)
  if (failure !== null) return refused(failure)
  pool.stats.clientLogins++
  return { pool, failure: null }
}

function refused(failure: ClientFailure): { pool: null; failure: ClientFailure } {
  return { pool: null, failure }
}

/**
 * Applies max_db_client_connections and max_user_client_connections, counted as PgBouncer counts
 * them: per database entry and per login user (not the pool's server-side user). A per-entry
 * value of 0 falls back to the global one, as in PgBouncer. Counts the client when it fits.
 */
function countClient(ctx: ProxyContext, database: string, user: string, db = entryFor(ctx.config, database), isExempt = false): ClientFailure | null {
  const dbLimit = dbClientLimit(ctx.config, db)
  const userLimit = userClientLimit(ctx.config, user)
  const { byDb, byUser } = ctx.clientCounts
  const dbCount = (byDb.get(database) ?? 0) + 1
  const userCount = (byUser.get(user) ?? 0) + 1
  if (!isExempt && dbLimit > 0 && dbCount > dbLimit) return ClientErrors.maxDbClientConnections
  if (!isExempt && userLimit > 0 && userCount > userLimit) return ClientErrors.maxUserClientConnections
  byDb.set(database, dbCount)
  byUser.set(user, userCount)
  return null
}

/**
 * A console client counts too, as in PgBouncer: in max_db_client_connections of the database
 * "pgbouncer" (the global limit; no [databases] entry, not even '*', speaks for it) and in its
 * user's max_user_client_connections, together with that user's pooled clients. admin_users are
 * counted but never refused, so a full pooler can still be administered. Counts it when it fits.
 */
export function admitToConsole(ctx: ProxyContext, user: string): ClientFailure | null {
  return countClient(ctx, CONSOLE_DB, user, undefined, ctx.settings.admin_users.includes(user))
}

/** A counted client closed: it leaves max_db/user_client_connections' counts. */
export function uncountClient(ctx: ProxyContext, database: string, user: string): void {
  decrement(ctx.clientCounts.byDb, database)
  decrement(ctx.clientCounts.byUser, user)
}

function decrement(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 1) - 1
  if (n <= 0) counts.delete(key)
  else counts.set(key, n)
}

/**
 * The settings in a client's `options` (PgBouncer 1.20+): tracked parameters go into `tracked`
 * like startup parameters; others are dropped when ignore_startup_parameters (`ignored`, lower
 * case) names them or `options`, and refused otherwise. A value of another form is refused even
 * then, as PgBouncer does. Returns the failure, or null.
 */
function takeStartupOptions(options: string, extra: readonly string[], ignored: ReadonlySet<string>, tracked: Map<string, string>): ClientFailure | null {
  const settings = parseStartupOptions(options)
  if (settings === null) return ClientErrors.unsupportedOptionsForm
  for (const [name, value] of settings) {
    const canonical = canonicalParamName(name, extra)
    if (canonical !== null) tracked.set(canonical, value)
    else if (!ignored.has(name.toLowerCase()) && !ignored.has('options')) return ClientErrors.unsupportedStartupOption(name)
  }
  return null
}

/**
 * The last welcomeParams and welcomeMessage results per pool welcome (a pool's map, replaced when its
 * first server changes): a burst of logins of one driver asks for the same ones each time, and
 * building them (a map, its sharing key, a ParameterStatus buffer per parameter) was a measurable
 * share of a login's CPU. One entry per welcome map, dropped with it; never per client.
 */
interface WelcomeCache {
  params: ReadonlyMap<string, string> | null
  extra: readonly string[] | null
  tracked: ReadonlyMap<string, string> | null
  /** `tracked` above: the welcome message up to BackendKeyData (AuthenticationOk and every ParameterStatus). */
  prefix: Buffer | null
}
const welcomeCache = new WeakMap<ReadonlyMap<string, string>, WelcomeCache>()

function cacheOf(welcome: ReadonlyMap<string, string>): WelcomeCache {
  let c = welcomeCache.get(welcome)
  if (c === undefined) {
    c = { params: null, extra: null, tracked: null, prefix: null }
    welcomeCache.set(welcome, c)
  }
  return c
}

/** `params` (a shared map, see shareParams) completed with `welcome`'s tracked values; shared too. */
export function welcomeParams(params: ReadonlyMap<string, string>, welcome: ReadonlyMap<string, string>, extra: readonly string[]): ReadonlyMap<string, string> {
  const c = cacheOf(welcome)
  if (c.params === params && c.extra === extra && c.tracked !== null) return c.tracked
  const tracked = new Map(params)
  for (const name of trackedNames(extra)) {
    if (!tracked.has(name) && welcome.has(name)) tracked.set(name, welcome.get(name) as string)
  }
  const shared = shareParams(tracked)
  c.params = params
  c.extra = extra
  c.tracked = shared
  c.prefix = null
  return shared
}

/** The end of a login in one write: AuthenticationOk, every ParameterStatus, the cancel key, ReadyForQuery. */
export function welcomeMessage(params: ReadonlyMap<string, string>, welcome: ReadonlyMap<string, string>, backendKeyData: Buffer): Buffer {
  const c = cacheOf(welcome)
  let prefix = c.tracked === params ? c.prefix : null
  if (prefix === null) {
    const parts: Buffer[] = [build.authenticationOk()]
    for (const [name, value] of welcome) parts.push(build.parameterStatus(name, params.get(name) ?? value))
    for (const [name, value] of params) if (!welcome.has(name)) parts.push(build.parameterStatus(name, value))
    prefix = Buffer.concat(parts)
    if (c.tracked === params) c.prefix = prefix
  }
  const rfq = build.readyForQuery(TxStatus.Idle)
  const out = Buffer.allocUnsafe(prefix.length + backendKeyData.length + rfq.length)
  prefix.copy(out, 0)
  backendKeyData.copy(out, prefix.length)
  rfq.copy(out, prefix.length + backendKeyData.length)
  return out
}

/** The client's address as PgBouncer writes it for application_name_add_host. */
function peerDetails(socket: net.Socket, listenPort: number): string {
  const addr = socket.remoteAddress
  if (addr === undefined) return `unix:${listenPort}`
  return socket.remoteFamily === 'IPv6' ? `[${addr}]:${socket.remotePort}` : `${addr}:${socket.remotePort}`
}
