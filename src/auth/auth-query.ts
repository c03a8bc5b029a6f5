// auth_user / auth_query / auth_dbname: the secret of a user missing from auth_file is looked up
// on the server, as PgBouncer does, and then serves exactly like an auth_file entry: for the
// client's login (clientAuthFlow) and, once the client proved it, for the server logins of its pool.
//
// Each lookup runs on a connection of its own, opened for that one query and closed after it, so
// the auth_user's session can never reach a client pool (PgBouncer keeps a separate pool for it;
// one connection per lookup plus a short cache is the simpler equivalent), and at most pool_size
// of them run at once per server, as in that pool. The user name goes in as a bound parameter of
// the extended protocol, never into the SQL text, and no client startup parameter reaches that
// session (PgBouncer's CVE-2025-12819 came in through search_path).
// Answers are cached for auth_query_cache_ttl_ms, at most CACHE_MAX_ENTRIES of them; logins of
// the same user while a lookup runs wait for that lookup instead of starting another.
// A user without a row, or with a NULL secret, gets the same flow as an unknown auth_file user
// (fake SCRAM challenge, then 28P01): PgBouncer answers "no such user" there, which tells an
// unauthenticated client which names exist. For trust and cert, which check no secret, a row is
// what makes a user known (isKnownUser).
// Must not: log or return secrets in messages; reject (every failure becomes an AuthQueryFlow).

import type net from 'node:net'
import type { Config, DatabaseEntry } from '../config/types.ts'
import type { Settings } from '../config/settings.ts'
import { entryFor, poolSettings } from '../config/effective.ts'
import type { Logger } from '../observe/log.ts'
import type { ServerTls } from '../net/tls.ts'
import { queryOnce, type QueryOnceResult, type QueryOnceTarget } from './query-once.ts'
import type { ClientFailure } from '../protocol/client-errors.ts'
import { SqlState, SqlStateClass } from '../protocol/pg-error.ts'
import { parseScramVerifier } from './scram-server.ts'
import { clientAuthFlow, type AuthStep, type ClientAuthFlow } from './client-auth.ts'

/** What a lookup reads at the moment of use; ProxyContext provides it. */
export interface AuthLookupContext {
  readonly config: Config
  readonly settings: Settings
  readonly log: Logger
  readonly serverTls: ServerTls | null
  readonly disabledDbs: ReadonlySet<string>
  scramClientKey(user: string): Buffer | null
}

/** A flow to run with the client, or the error that ends its login. */
export type AuthQueryFlow = { ok: true; flow: ClientAuthFlow } | { ok: false; failure: ClientFailure }

/** Bounds memory whatever names clients try; an evicted answer is only looked up again. */
const CACHE_MAX_ENTRIES = 1000
/** Users who proved a looked-up secret (or were let in by trust or cert), by database: what their pools' servers log in with. */
const PROVEN_MAX_ENTRIES = 10_000
/** Used when server_connect_timeout is 0 ("no limit"): a login must not wait on a lookup forever. */
const FALLBACK_TIMEOUT_S = 15

// PgBouncer's text for a lookup that cannot work as configured; the log line says why.
const CONFIG_ERROR: ClientFailure = Object.freeze({ severity: 'FATAL', code: SqlState.ProtocolViolation, message: 'bouncer config error', reason: 'bouncer config error' })
const UNAVAILABLE: ClientFailure = Object.freeze({ severity: 'FATAL', code: SqlState.ProtocolViolation, message: 'auth_query failed: server unavailable', reason: 'auth_query failed: server unavailable' })

/** `isFound`: the query returned the user's row; `secret`: null when nothing can match it. */
type Answer = { isFound: boolean; secret: string | null }
const NOT_FOUND: Answer = Object.freeze({ isFound: false, secret: null })
/** `isMissingDatabase`: the server has no database by the name the lookup logged in to. */
type Outcome = { ok: true; answer: Answer } | { ok: false; isConfig: boolean; isMissingDatabase?: boolean; cause: string }

export class AuthQuery {
  /** Counters for tests and diagnostics: queries sent, answers reused, logins that joined a running lookup, failed lookups. */
  readonly stats = { lookups: 0, cacheHits: 0, joined: 0, failures: 0 }
  private readonly cache = new Map<string, { answer: Answer; expiresAtMs: number }>()
  private readonly running = new Map<string, Promise<Outcome>>()
  private readonly proven = new Map<string, string>()
  private readonly sockets = new Set<net.Socket>()
  /** Lookups running and waiting per server and auth_user (PgBouncer's auth pool has pool_size servers at most). */
  private readonly gates = new Map<string, { active: number; queue: Array<() => void> }>()
  private isClosed = false

  /**
   * The client flow for `user`, who is not in auth_file, logging in to `database` (null for the
   * admin console); null when no auth_user applies, and the user is simply unknown.
   */
  flowFor(ctx: AuthLookupContext, method: 'plain' | 'md5' | 'scram-sha-256', database: string | null, user: string): Promise<AuthQueryFlow> | null {
    const lookup = this.lookup(ctx, database, user)
    if (lookup === null) return null
    return lookup.then((r): AuthQueryFlow => {
      if (!r.ok) return r
      const { key, answer: { secret } } = r
      const inner = clientAuthFlow(method, user, secret, ctx.settings.scram_iterations)
      return {
        ok: true,
        flow: {
          start: (channelBinding) => inner.start(channelBinding),
          onMessage: (buf, start, end) => {
            const after = (step: AuthStep): AuthStep => {
              if (step.kind === 'ok') this.rememberServerSecret(database, user, secret)
              // A password that fails may be a new one the cached answer predates.
              if (step.kind === 'fail' && secret !== null) this.cache.delete(key)
              return step
            }
            const step = inner.onMessage(buf, start, end)
            return step instanceof Promise ? step.then(after) : after(step)
          },
        },
      }
    })
  }

  /**
   * Whether auth_query knows `user` (not in auth_file) for a login to `database` (null: the admin
   * console), for the methods that check no secret of the client's (trust, cert): a row is enough,
   * as in PgBouncer, whatever its secret; that secret then serves the pool's server logins. Null
   * when no auth_user applies.
   */
  isKnownUser(ctx: AuthLookupContext, database: string | null, user: string): Promise<{ ok: true; isKnown: boolean } | { ok: false; failure: ClientFailure }> | null {
    const lookup = this.lookup(ctx, database, user)
    if (lookup === null) return null
    return lookup.then((r) => {
      if (!r.ok) return r
      if (r.answer.isFound) this.rememberServerSecret(database, user, r.answer.secret)
      return { ok: true, isKnown: r.answer.isFound }
    })
  }

  /** The lookup of `user` for a login to `database`, with the cache key of its answer; null when no auth_user applies. */
  private lookup(ctx: AuthLookupContext, database: string | null, user: string): Promise<{ ok: true; key: string; answer: Answer } | { ok: false; failure: ClientFailure }> | null {
    const plan = this.plan(ctx, database)
    if (plan === null) return null
    if ('failure' in plan) return Promise.resolve({ ok: false, failure: plan.failure })
    const { target, sql, maxConcurrent, isClientsDatabase } = plan
    const key = [target.host, target.port, target.database, target.user, sql, user].join('\u0000')
    return this.answer(ctx, key, target, sql, user, maxConcurrent).then((o) => {
      if (o.ok) return { ok: true, key, answer: o.answer }
      // A '*' database the server lacks is a name the client made up, not a config error:
      // answering as for an unknown user keeps its existence from an unauthenticated client.
      if (o.isMissingDatabase === true && isClientsDatabase) return { ok: true, key, answer: NOT_FOUND }
      return { ok: false, failure: o.isConfig ? CONFIG_ERROR : UNAVAILABLE }
    })
  }

  private rememberServerSecret(database: string | null, user: string, secret: string | null): void {
    if (secret !== null && database !== null) this.remember(this.proven, `${database}\u0000${user}`, secret, PROVEN_MAX_ENTRIES)
  }

  /** The secret a client of `database` proved for `user`, for server logins without an auth_file entry. */
  serverSecret(database: string, user: string): string | null {
    return this.proven.get(`${database}\u0000${user}`) ?? null
  }

  /** Shutdown: lookups still running end now, their clients get UNAVAILABLE. */
  abortAll(): void {
    this.isClosed = true
    for (const s of this.sockets) s.destroy(new Error('tidepool is shutting down'))
  }

  /**
   * Where and how to look `user` up for a login to `database`; null when no auth_user applies, or
   * when no [databases] entry serves `database`: PgBouncer looks nothing up for a database it does
   * not know, and the login fails as for an unknown user, so that only an authenticated client
   * hears "no such database". `isClientsDatabase`: the query runs in a '*' database of the
   * client's naming.
   */
  private plan(ctx: AuthLookupContext, database: string | null): { target: QueryOnceTarget; sql: string; maxConcurrent: number; isClientsDatabase: boolean } | { failure: ClientFailure } | null {
    const s = ctx.settings
    const entry = database === null ? null : entryFor(ctx.config, database) ?? null
    if (database !== null && entry === null) return null
    const authUser = entry?.auth_user ?? (s.auth_user !== '' ? s.auth_user : null)
    if (authUser === null) return null
    const authDbName = entry?.auth_dbname ?? (s.auth_dbname !== '' ? s.auth_dbname : null)
    // The admin console has no server database; only an explicit auth_dbname gives it one.
    if (database === null && authDbName === null) return null
    const name = (authDbName ?? database) as string
    const isConsoleDb = name.toLowerCase() === 'pgbouncer'
    const authEntry = name === database ? entry : isConsoleDb ? null : entryFor(ctx.config, name) ?? null
    if (authEntry === null) {
      const why = isConsoleDb ? `the admin console database "${name}" cannot be an auth_dbname` : `authentication database "${name}" is not configured`
      ctx.log.error('auth_query.config_error', null, why)
      return { failure: CONFIG_ERROR }
    }
    if (ctx.disabledDbs.has(name)) {
      const message = `authentication database "${name}" is disabled`
      return { failure: { severity: 'FATAL', code: SqlState.ProtocolViolation, message, reason: message } }
    }
    const password = ctx.config.userlist.get(authUser)?.password ?? (authEntry.user === authUser ? authEntry.password : null)
    const maxConcurrent = Math.max(1, poolSettings(ctx.config, authEntry, null).pool_size)
    const isClientsDatabase = authEntry.name === '*' && authEntry.dbname === null
    return { target: lookupTarget(ctx, authEntry, name, authUser, password), sql: entry?.auth_query ?? s.auth_query, maxConcurrent, isClientsDatabase }
  }

  private answer(ctx: AuthLookupContext, key: string, target: QueryOnceTarget, sql: string, user: string, maxConcurrent: number): Promise<Outcome> {
    const now = Date.now()
    const cached = this.cache.get(key)
    if (cached !== undefined) {
      if (cached.expiresAtMs > now) {
        this.stats.cacheHits++
        return Promise.resolve({ ok: true, answer: cached.answer })
      }
      this.cache.delete(key)
    }
    const running = this.running.get(key)
    if (running !== undefined) {
      this.stats.joined++
      return running
    }
    this.stats.lookups++
    const timeoutS = ctx.settings.server_connect_timeout > 0 ? ctx.settings.server_connect_timeout : FALLBACK_TIMEOUT_S
    const gateKey = [target.host, target.port, target.database, target.user].join('\u0000')
    const p = this.enter(gateKey, maxConcurrent).then((leave) => {
      if (this.isClosed) return unavailable('tidepool is shutting down')
      const options = { serverTls: ctx.serverTls, timeoutMs: timeoutS * 1000, maxPacket: ctx.settings.max_packet_size, sockets: this.sockets }
      return queryOnce(target, sql, [user], options).finally(leave).then(outcomeOf)
    }).then((o) => {
      this.running.delete(key)
      const what = `auth_query for user "${user}" (auth_user "${target.user}", server database "${target.database}")`
      if (!o.ok) {
        this.stats.failures++
        ctx.log.warn('auth_query.failed', null, `${what} failed: ${o.cause}`)
        return o
      }
      ctx.log.debug('auth_query.done', null, `${what}: ${o.answer.secret === null ? 'no usable secret' : 'secret found'}`)
      const ttl = ctx.settings.auth_query_cache_ttl_ms
      if (ttl > 0) this.remember(this.cache, key, { answer: o.answer, expiresAtMs: Date.now() + ttl }, CACHE_MAX_ENTRIES)
      return o
    })
    this.running.set(key, p)
    return p
  }

  /**
   * Waits until fewer than `limit` lookups run against the same server as the same auth_user, so
   * a burst of distinct (perhaps made-up) user names cannot open a server connection each.
   * Resolves with the function that frees the place, handing it straight to the next in line.
   */
  private enter(gateKey: string, limit: number): Promise<() => void> {
    let gate = this.gates.get(gateKey)
    if (gate === undefined) {
      gate = { active: 0, queue: [] }
      this.gates.set(gateKey, gate)
    }
    const g = gate
    const leave = (): void => {
      const next = g.queue.shift()
      if (next !== undefined) next()
      else if (--g.active === 0) this.gates.delete(gateKey)
    }
    if (g.active < limit) {
      g.active++
      return Promise.resolve(leave)
    }
    return new Promise((resolve) => g.queue.push(() => resolve(leave)))
  }

  /** Insert as newest; past `max`, the oldest entry goes (Maps keep insertion order). */
  private remember<V>(m: Map<string, V>, key: string, value: V, max: number): void {
    m.delete(key)
    m.set(key, value)
    if (m.size > max) m.delete(m.keys().next().value as string)
  }
}

/** Where the query runs: the auth database entry's first host, as auth_user. */
function lookupTarget(ctx: AuthLookupContext, db: DatabaseEntry, name: string, user: string, password: string | null): QueryOnceTarget {
  const host = db.hosts.length > 0 ? db.hosts[0] : (ctx.settings.unix_socket_dir || '/tmp')
  const port = db.ports.length > 0 ? db.ports[0] : 5432
  // A SCRAM verifier as the auth_user's secret works once that user proved it in a client login.
  const verifier = password === null ? null : parseScramVerifier(password)
  const clientKey = verifier === null ? null : ctx.scramClientKey(user)
  const keys = verifier !== null && clientKey !== null ? { clientKey, serverKey: verifier.serverKey } : null
  const authPolicy = { requireAuth: db.require_auth ?? ctx.settings.server_require_auth, maxIterations: ctx.settings.server_scram_max_iterations }
  return { host, port, database: db.dbname ?? name, user, password, keys, authPolicy }
}

const misconfigured = (cause: string): Outcome => ({ ok: false, isConfig: true, cause })
const unavailable = (cause: string): Outcome => ({ ok: false, isConfig: false, cause })

/**
 * Sorts a lookup's result: refused credentials, a missing database, a failing query or a result
 * of the wrong shape will not fix themselves (config); the rest (connect errors, a server going
 * away, too many connections, the timeout) may.
 */
function outcomeOf(r: QueryOnceResult): Outcome {
  if (!r.ok) {
    if (r.phase === 'connect' || r.code === null) return unavailable(r.cause)
    if (r.phase === 'query') return misconfigured(`the query failed: ${r.cause}`)
    if (r.code === SqlState.InvalidCatalogName) return { ok: false, isConfig: true, isMissingDatabase: true, cause: `auth_user cannot log in: ${r.cause}` }
    return r.code.startsWith(SqlStateClass.InvalidAuthorizationSpecification) ? misconfigured(`auth_user cannot log in: ${r.cause}`) : unavailable(`server refused the login: ${r.cause}`)
  }
  if (r.columns !== 2) return misconfigured(`auth_query must return 2 columns (name, secret), not ${r.columns}`)
  return answerFrom(r.rows)
}

/**
 * No row, a NULL secret (expired, or no password) or an empty one: nothing will match, as in
 * PgBouncer. A NULL name counts as no row too: the lookup function PgBouncer's docs suggest
 * returns a row of NULLs for an unknown user, which PgBouncer turns into a config error.
 */
function answerFrom(rows: Array<Array<string | null>>): Outcome {
  if (rows.length > 1) return misconfigured(`auth_query returned ${rows.length} rows; it must return at most one`)
  if (rows.length === 1 && rows[0].length !== 2) return misconfigured(`auth_query must return 2 columns (name, secret), not ${rows[0].length}`)
  const [name, secret] = rows.length === 1 ? rows[0] : [null, null]
  if (name === null) return { ok: true, answer: NOT_FOUND }
  return { ok: true, answer: { isFound: true, secret: secret === '' ? null : secret } }
}
