// The admin console: the virtual database `pgbouncer`, simple query protocol only. One query text in,
// the complete reply out (RowDescription/DataRow*/CommandComplete or ErrorResponse, then
// ReadyForQuery), as PgBouncer 1.25 sends it: same commands, columns in the same order with the same
// type OIDs, same CommandComplete tags, same error texts and SQLSTATEs (src/admin.c, doc/usage.md).
// Invariants: every reply ends with ReadyForQuery('I'), except immediate SHUTDOWN, which, as in
// PgBouncer, answers nothing (the connection ends with the process); errors are ERROR, never FATAL.
// Must not: touch sockets or the clock beyond Date.now() as a default; it reads through ConsoleView
// and acts only through it (the runtime implements it).

import { isIP } from 'node:net'
import * as build from '../protocol/build.ts'
import { TxStatus } from '../protocol/codes.ts'
import { SqlState } from '../protocol/pg-error.ts'
import { configRows } from '../config/show.ts'
import { dbClientLimit, dbServerLimit, entryFor, poolSettings, userClientLimit, userServerLimit } from '../config/effective.ts'
import type { Config, DatabaseEntry } from '../config/types.ts'
import type { Pool } from '../pool/pool.ts'
import type { PoolStats, StatsAverages } from '../pool/stats.ts'
import type { PooledClient, PooledServer } from '../pool/states.ts'

/** How Runtime.shutdown names its modes: SHUTDOWN, SHUTDOWN WAIT_FOR_SERVERS, SHUTDOWN WAIT_FOR_CLIENTS. */
export type ShutdownMode = 'immediate' | 'transactions' | 'clients'

/** What the console may read and ask; Runtime implements it. */
export interface ConsoleView {
  /** Per database, sorted by name: totals since start and averages of the last stats_period. */
  stats(): Array<{ database: string; totals: PoolStats; averages: StatsAverages }>
  pools(): Pool[]
  /**
   * Every client connection, console clients included (database 'pgbouncer'). `state` is 'login'
   * while the client has no pool yet (startup, auth), 'waiting' while it waits for a server or for
   * its pool's first server login, 'active' otherwise.
   */
  clients(): Iterable<ClientInfo>
  config(): Config
  /** SHOW VERSION's value, e.g. 'tidepool 0.1.0'. */
  version: string
  /**
   * PAUSE (db null: every database) or PAUSE db. isPaused must say true as soon as this is called;
   * the returned promise, if any, resolves once no server of the paused database(s) is active, and
   * the console sends CommandComplete only then, as PgBouncer does.
   */
  pause(db: string | null): void | Promise<void>
  resume(db: string | null): void
  /** null: is the pooler as a whole paused (PAUSE without a name); a name: is that database paused. */
  isPaused(db: string | null): boolean
  reload(): Promise<{ ok: boolean; errors: string[] }>
  /** Starts the shutdown; must not wait for it. */
  shutdown(mode: ShutdownMode): void
  /** True once a shutdown has begun: RESUME is refused then. */
  readonly isShuttingDown: boolean
  /** RECONNECT: close every server of the database(s) once released. */
  reconnect(db: string | null): void
  /** WAIT_CLOSE: resolves once no server marked by RECONNECT or RELOAD remains. */
  waitClose(db: string | null): Promise<void>
  /** DISABLE/ENABLE: refuse or allow new logins to the database. */
  setDisabled(db: string, isDisabled: boolean): void
  isDisabled(db: string): boolean
  /** KILL: drop every client and server of the database now; new clients wait until RESUME. */
  kill(db: string): void
  /** KILL_CLIENT: false when no client has that numeric id. */
  killClient(id: number): boolean
  /**
   * SUSPEND: stop accepting and stop reading every socket but the console's; resolves once their
   * pending output is flushed (or suspend_timeout closed the ones that would not flush).
   */
  suspend(): Promise<void>
  readonly isSuspended: boolean
  /** Some database is paused (PAUSE db, KILL db): SUSPEND is refused then, as in PgBouncer. */
  hasPausedDatabases(): boolean
  /** SET key = value: applied as a RELOAD applies a changed file, or refused with the reason. */
  set(key: string, value: string): SetOutcome
  /** What Node can tell of each client and server socket, by connection id ('C-17', 'S-3'). */
  sockets(): ReadonlyMap<string, SocketFacts>
  /** The listening sockets (SHOW FDS's 'pooler' rows). */
  listenerSockets(): Array<{ fd: number; addr: string; port: number }>
  /** process.memoryUsage(), for SHOW MEM. */
  memoryUsage(): { rss: number; heapTotal: number; heapUsed: number; external: number; arrayBuffers: number }
  /** Monitored backend hosts (ha/), with the database entries that use each. */
  hosts(): Array<{ host: Host; databases: string[] }>
  /** SWITCHOVER: runs to its end (the deadline releases traffic whatever happens); rejects only for a bad request. */
  switchover(db: string, to: string | null, timeoutMs: number | null): Promise<SwitchoverReport>
  /** The last switchover of each database. */
  switchovers(): SwitchoverReport[]
}

export type SetOutcome = { ok: true; warnings: string[] } | { ok: false; reason: string }

export interface SocketFacts {
  /** The OS file descriptor; -1 where Node does not expose one (TLS sockets). */
  fd: number
  /** Bytes received and not yet taken by tidepool (socket.readableLength). */
  pendingIn: number
  /** Bytes tidepool wrote that the kernel has not taken yet (socket.writableLength). */
  pendingOut: number
  /** The peer's IP address; for a server, the address its host name resolved to. */
  remoteAddr: string
  isTls: boolean
  /** Tracked parameters (client_encoding, DateStyle, TimeZone, standard_conforming_strings). */
  params: ReadonlyMap<string, string>
}

import type { ClientInfo } from '../proxy/client-info.ts'
import type { Host } from '../ha/hosts.ts'
import type { SwitchoverReport } from '../ha/switchover.ts'
export type { ClientInfo }

/** The asking connection and the time, so replies are reproducible in tests. */
export interface ConsoleOptions {
  /** Listed in admin_users (or the console's own user); stats_users may only SHOW. Default true. */
  isAdmin?: boolean
  nowMs?: number
}

/** What SHOW SERVERS reads of a server beyond PooledServer; proxy/server-conn.ts's ServerConn has all of it. */
interface ServerDetails {
  id?: string
  target?: { host: string; port: number; user: string }
  backendPid?: number
  socket?: { localAddress?: string; localPort?: number }
  client?: { id?: string; params?: ReadonlyMap<string, string> } | null
}

const ADMIN_DB = 'pgbouncer'
const ADMIN_USER = 'pgbouncer'

// PgBouncer's column type letters (src/pktbuf.c): s text, i int4, q int8, N numeric, T a time sent
// as text, b bytea.
const TYPE_OIDS: Record<string, number> = { s: 25, i: 23, q: 20, N: 1700, T: 25, b: 17 }

interface ResultSet {
  columns: Array<{ name: string; typeOid: number }>
  rows: Array<Array<string | number | null>>
}

function columns(types: string, names: readonly string[]): Array<{ name: string; typeOid: number }> {
  if (types.length !== names.length) throw new Error(`console: ${types.length} types for ${names.length} columns`)
  return names.map((name, i) => ({ name, typeOid: TYPE_OIDS[types[i]] }))
}

// ---- column lists, in PgBouncer 1.25's order and types (src/admin.c) ----

const POOLS_COLUMNS = columns('ssiiiiiiiiiiiiiss', [
  'database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active',
  'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us',
  'pool_mode', 'load_balance_hosts',
])
// After PgBouncer 1.25's columns, 'reserve_pool': the name before 1.24 renamed it, which Debian
// 12's prometheus-pgbouncer-exporter (1.7) still reads. Appended, so positions stay 1.25's.
const DATABASES_COLUMNS = columns('ssissiiiissiiiiiii', [
  'name', 'host', 'port', 'database', 'force_user', 'pool_size', 'min_pool_size', 'reserve_pool_size', 'server_lifetime',
  'pool_mode', 'load_balance_hosts', 'max_connections', 'current_connections', 'max_client_connections',
  'current_client_connections', 'paused', 'disabled', 'reserve_pool',
])
const SOCKET_COLUMNS = columns('ssssssisiTTiiississii', [
  'type', 'user', 'database', 'replication', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time',
  'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls', 'application_name',
  'prepared_statements', 'id',
])
// SHOW CLIENTS: PgBouncer's columns, then tidepool's `pinned` (why a client keeps its server between
// transactions in transaction mode: LISTEN, an advisory lock, ...; '' when not pinned).
const CLIENT_COLUMNS = [...SOCKET_COLUMNS, ...columns('s', ['pinned'])]
// SHOW SOCKETS and ACTIVE_SOCKETS: SHOW CLIENTS's columns, then PgBouncer's buffer columns.
const SOCKET_DEBUG_COLUMNS = columns('ssssssisiTTiiississiiiiiiiii', [
  ...SOCKET_COLUMNS.map((c) => c.name),
  'recv_pos', 'pkt_pos', 'pkt_remain', 'send_pos', 'send_remain', 'pkt_avail', 'send_avail',
])
const FDS_COLUMNS = columns('issssiqisssssbb', [
  'fd', 'task', 'user', 'database', 'addr', 'port', 'cancel', 'link', 'client_encoding', 'std_strings',
  'datestyle', 'timezone', 'password', 'scram_client_key', 'scram_server_key',
])
const MEM_COLUMNS = columns('siiii', ['name', 'size', 'used', 'free', 'memtotal'])
const DNS_HOSTS_COLUMNS = columns('sqs', ['hostname', 'ttl', 'addrs'])
const DNS_ZONES_COLUMNS = columns('sqi', ['zonename', 'serial', 'count'])
const USERS_COLUMNS = columns('ssssiiii', [
  'name', 'pool_size', 'reserve_pool_size', 'pool_mode', 'max_user_connections', 'current_connections',
  'max_user_client_connections', 'current_client_connections',
])
const LISTS_COLUMNS = columns('si', ['list', 'items'])
const CONFIG_COLUMNS = columns('ssss', ['key', 'value', 'default', 'changeable'])
const VERSION_COLUMNS = columns('s', ['version'])
const STATE_COLUMNS = columns('ss', ['key', 'value'])
const PEERS_COLUMNS = columns('isii', ['peer_id', 'host', 'port', 'pool_size'])
const PEER_POOLS_COLUMNS = columns('iiiii', ['peer_id', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active_cancel', 'sv_login'])

/** PgBouncer answers SHOW of these with a fixed value, for clients that ask a server for them. */
const FAKE_PARAMS: ReadonlyMap<string, string> = new Map([
  ['client_encoding', 'UTF-8'], ['default_transaction_isolation', 'read committed'],
  ['standard_conforming_strings', 'on'], ['datestyle', 'ISO'], ['timezone', 'GMT'],
])

// PgBouncer 1.25's list, word for word: scripts grep it.
const HELP_DETAIL =
  '\n' +
  '\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n' +
  '\tSHOW PEERS|PEER_POOLS\n' +
  '\tSHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE\n' +
  '\tSHOW DNS_HOSTS|DNS_ZONES\n' +
  '\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n' +
  '\tSET key = arg\n' +
  '\tRELOAD\n' +
  '\tPAUSE [<db>]\n' +
  '\tRESUME [<db>]\n' +
  '\tDISABLE <db>\n' +
  '\tENABLE <db>\n' +
  '\tRECONNECT [<db>]\n' +
  '\tKILL [<db>]\n' +
  '\tKILL_CLIENT <client_id>\n' +
  '\tSUSPEND\n' +
  '\tSHUTDOWN\n' +
  '\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n' +
  '\tWAIT_CLOSE [<db>]'
// tidepool's own commands, listed after PgBouncer's so scripts that match its list still do.
const HELP_TIDEPOOL =
  '\n' +
  '\tSHOW HOSTS|SWITCHOVER\n' +
  '\tSWITCHOVER <db> [TO <host>] [TIMEOUT <seconds>]'

// ---- parsing: PgBouncer's `CMD [arg] [;]` (cmd_normal_rx), case-insensitive, words or "quoted" ----

const WORD = '("(?:[^"]|"")*"|[0-9a-z_]+)'
const COMMAND_RX = new RegExp(`^[ \\t\\n\\r]*${WORD}(?:[ \\t\\n\\r]+${WORD})?[ \\t\\n\\r]*(?:;[ \\t\\n\\r]*)?$`, 'i')
const SET_RX = /^[ \t\n\r]*set[ \t\n\r]+/i
// tidepool's own: SWITCHOVER db [TO host] [TIMEOUT seconds]; a host:port or dotted name goes in quotes or bare.
const HOST_WORD = `('(?:[^']|'')*'|"(?:[^"]|"")*"|[0-9a-z_.:\\[\\]-]+)`
const SWITCHOVER_RX = new RegExp(`^[ \\t\\n\\r]*switchover[ \\t\\n\\r]+${WORD}(?:[ \\t\\n\\r]+to[ \\t\\n\\r]+${HOST_WORD})?(?:[ \\t\\n\\r]+timeout[ \\t\\n\\r]+([0-9]+(?:\\.[0-9]+)?))?[ \\t\\n\\r]*(?:;[ \\t\\n\\r]*)?$`, 'i')
// PgBouncer copies the command word and its argument into buffers of 16 and 64 bytes.
const MAX_COMMAND = 15
const MAX_ARG = 63

function unquoteHost(word: string): string {
  if (word.startsWith("'")) return word.slice(1, -1).replaceAll("''", "'")
  return unquote(word)
}

function unquote(word: string | undefined): string {
  if (word === undefined) return ''
  return word.startsWith('"') ? word.slice(1, -1).replaceAll('""', '"') : word
}

class ConsoleError extends Error {
  constructor(readonly code: string, message: string, readonly detail?: string) {
    super(message)
  }
}

/** PgBouncer's admin_error: ERROR, 08P01 unless told otherwise. */
function adminError(message: string, code: string = SqlState.ProtocolViolation, detail?: string): ConsoleError {
  return new ConsoleError(code, message, detail)
}

/**
 * Runs one console query (the text of a simple Query message); returns the complete reply:
 * RowDescription, DataRows and CommandComplete, or an ErrorResponse, then ReadyForQuery('I'),
 * as ONE Buffer. An immediate SHUTDOWN returns an empty Buffer: PgBouncer sends nothing then.
 */
export async function runConsoleQuery(sql: string, view: ConsoleView, opts: ConsoleOptions = {}): Promise<Buffer> {
  const ctx: Ctx = { sql, view, isAdmin: opts.isAdmin ?? true, nowMs: opts.nowMs ?? Date.now() }
  try {
    return await execute(ctx)
  } catch (err) {
    if (err instanceof ConsoleError) return errorReply(err.code, err.message, err.detail)
    return errorReply(SqlState.InternalError, `admin command failed: ${(err as Error).message}`)
  }
}

/** The SHOW views the HTTP API serves as JSON, by the name after /api/. */
const JSON_VIEWS: Record<string, (ctx: Ctx) => ResultSet> = {
  pools: (ctx) => showPools(ctx),
  stats: (ctx) => showStats(ctx, 'both'),
  databases: (ctx) => showDatabases(ctx),
  clients: (ctx) => showClients(ctx),
  servers: (ctx) => showServers(ctx),
  users: (ctx) => showUsers(ctx),
  lists: (ctx) => showLists(ctx),
  config: (ctx) => ({ columns: CONFIG_COLUMNS, rows: configRows(ctx.view.config()).map((r) => [r.key, r.value, r.default, r.changeable]) }),
  hosts: (ctx) => showHosts(ctx),
  switchover: (ctx) => showSwitchovers(ctx),
}

/** What a SHOW command shows, as objects keyed by column name; null for an unknown view. */
export function consoleRows(what: string, view: ConsoleView): Array<Record<string, string | number | null>> | null {
  const make = JSON_VIEWS[what]
  if (make === undefined) return null
  const rs = make({ sql: '', view, isAdmin: false, nowMs: Date.now() })
  return rs.rows.map((row) => Object.fromEntries(rs.columns.map((c, i) => [c.name, row[i] ?? null])))
}

interface Ctx {
  sql: string
  view: ConsoleView
  isAdmin: boolean
  nowMs: number
}

function syntaxError(ctx: Ctx): ConsoleError {
  // PgBouncer formats into a 1024-byte buffer: the text is cut, never refused.
  return adminError(`invalid command '${ctx.sql}', use SHOW HELP;`.slice(0, 1023))
}

function requireAdmin(ctx: Ctx): void {
  if (!ctx.isAdmin) throw adminError('admin access needed')
}

async function execute(ctx: Ctx): Promise<Buffer> {
  const sw = SWITCHOVER_RX.exec(ctx.sql)
  if (sw !== null) return runSwitchover(ctx, unquote(sw[1]), sw[2] === undefined ? null : unquoteHost(sw[2]), sw[3] === undefined ? null : Number(sw[3]))
  const m = COMMAND_RX.exec(ctx.sql)
  if (m === null) {
    if (SET_RX.test(ctx.sql)) return runSet(ctx)
    throw syntaxError(ctx)
  }
  const cmd = unquote(m[1])
  const arg = unquote(m[2])
  if (cmd.length > MAX_COMMAND || arg.length > MAX_ARG) throw adminError('bad arguments')
  const word = cmd.toLowerCase()
  switch (word) {
    case 'show':
    case 'select':
      return runShow(ctx, arg)
    case 'pause':
      return runPause(ctx, arg)
    case 'resume':
      return runResume(ctx, arg)
    case 'reload':
      return runReload(ctx, arg)
    case 'shutdown':
      return runShutdown(ctx, arg)
    case 'reconnect':
      requireAdmin(ctx)
      ctx.view.reconnect(knownDbOrAll(ctx, arg))
      return doneReply('RECONNECT')
    case 'wait_close':
      requireAdmin(ctx)
      await ctx.view.waitClose(knownDbOrAll(ctx, arg))
      return doneReply('WAIT_CLOSE')
    case 'disable':
    case 'enable':
      requireAdmin(ctx)
      ctx.view.setDisabled(requiredDb(ctx, arg), word === 'disable')
      return doneReply(word.toUpperCase())
    case 'kill':
      requireAdmin(ctx)
      ctx.view.kill(requiredDb(ctx, arg))
      return doneReply('KILL')
    case 'kill_client': {
      requireAdmin(ctx)
      const id = Number(arg)
      if (arg === '' || !Number.isInteger(id) || id < 0) throw adminError('bad arguments')
      if (!ctx.view.killClient(id)) throw adminError(`client ${arg} not found`)
      return doneReply('KILL_CLIENT')
    }
    case 'suspend':
      return runSuspend(ctx, arg)
    default:
      throw syntaxError(ctx)
  }
}

// ---- SHOW ----

function runShow(ctx: Ctx, arg: string): Buffer {
  const what = arg.toLowerCase()
  const fake = FAKE_PARAMS.get(what)
  if (fake !== undefined) return resultReply({ columns: columns('s', [what]), rows: [[fake]] })
  switch (what) {
    case 'pools': return resultReply(showPools(ctx))
    case 'databases': return resultReply(showDatabases(ctx))
    case 'clients': return resultReply(showClients(ctx))
    case 'servers': return resultReply(showServers(ctx))
    case 'users': return resultReply(showUsers(ctx))
    case 'lists': return resultReply(showLists(ctx))
    case 'config': return resultReply({ columns: CONFIG_COLUMNS, rows: configRows(ctx.view.config()).map((r) => [r.key, r.value, r.default, r.changeable]) })
    case 'version': return resultReply({ columns: VERSION_COLUMNS, rows: [[ctx.view.version]] })
    case 'state': return resultReply(showState(ctx))
    case 'peers': return resultReply({ columns: PEERS_COLUMNS, rows: [] })
    case 'peer_pools': return resultReply({ columns: PEER_POOLS_COLUMNS, rows: [] })
    case 'stats': return resultReply(showStats(ctx, 'both'))
    case 'stats_totals': return resultReply(showStats(ctx, 'totals'))
    case 'stats_averages': return resultReply(showStats(ctx, 'averages'))
    case 'totals': return resultReply(showTotals(ctx))
    case 'fds': return resultReply(showFds(ctx))
    case 'sockets': return resultReply(showSockets(ctx, false))
    case 'active_sockets': return resultReply(showSockets(ctx, true))
    case 'mem': return resultReply(showMem(ctx))
    case 'dns_hosts': return resultReply(showDnsHosts(ctx))
    // tidepool has no DNS cache, so no zones are watched (dns_zone_check_period is not applied).
    case 'dns_zones': return resultReply({ columns: DNS_ZONES_COLUMNS, rows: [] })
    case 'hosts': return resultReply(showHosts(ctx))
    case 'switchover': return resultReply(showSwitchovers(ctx))
    case 'help': return Buffer.concat([
      build.noticeResponse({ severity: 'NOTICE', code: SqlState.SuccessfulCompletion, message: 'Console usage', detail: HELP_DETAIL + HELP_TIDEPOOL }),
      build.commandComplete('SHOW'),
      build.readyForQuery(TxStatus.Idle),
    ])
    default:
      throw syntaxError(ctx)
  }
}

// PgBouncer 1.24/1.25's SHOW STATS columns, in order. STATS_TOTALS and STATS_AVERAGES are the two
// halves without their prefixes; TOTALS is name/value rows summed over all databases.
const STAT_NAMES = ['server_assignment_count', 'xact_count', 'query_count', 'received', 'sent', 'xact_time', 'query_time', 'wait_time', 'client_parse_count', 'server_parse_count', 'bind_count'] as const
const AVG_NAMES = ['server_assignment_count', 'xact_count', 'query_count', 'recv', 'sent', 'xact_time', 'query_time', 'wait_time', 'client_parse_count', 'server_parse_count', 'bind_count'] as const

function statValues(t: StatsAverages): number[] {
  return [t.serverAssignments, t.xacts, t.queries, t.received, t.sent, Math.round(t.xactTimeUs), Math.round(t.queryTimeUs), Math.round(t.waitTimeUs), t.clientParses, t.serverParses, t.binds]
}

function showStats(ctx: Ctx, which: 'both' | 'totals' | 'averages'): ResultSet {
  const totalNames = STAT_NAMES.map((n) => (which === 'both' ? `total_${n}` : n))
  const avgNames = AVG_NAMES.map((n) => (which === 'both' ? `avg_${n}` : n))
  // SHOW STATS ends with 'total_requests', total_query_count's name before PgBouncer 1.8, which
  // Debian 12's prometheus-pgbouncer-exporter (1.7) still reads; appended, so positions stay 1.25's.
  const legacy = which === 'both' ? ['total_requests'] : []
  const names = ['database', ...(which !== 'averages' ? totalNames : []), ...(which !== 'totals' ? avgNames : []), ...legacy]
  const rows = ctx.view.stats().map((r) => [r.database, ...(which !== 'averages' ? statValues(r.totals) : []), ...(which !== 'totals' ? statValues(r.averages) : []), ...(which === 'both' ? [r.totals.queries] : [])])
  return { columns: columns('s' + 'q'.repeat(names.length - 1), names), rows }
}

function showTotals(ctx: Ctx): ResultSet {
  const sum: StatsAverages = { serverAssignments: 0, xacts: 0, queries: 0, received: 0, sent: 0, xactTimeUs: 0, queryTimeUs: 0, waitTimeUs: 0, clientParses: 0, serverParses: 0, binds: 0 }
  const avg = { ...sum }
  for (const r of ctx.view.stats()) {
    for (const k of Object.keys(sum) as Array<keyof typeof sum>) {
      sum[k] += r.totals[k]
      avg[k] += r.averages[k]
    }
  }
  const rows: ResultSet['rows'] = []
  statValues(sum).forEach((v, i) => rows.push([`total_${STAT_NAMES[i]}`, v]))
  statValues(avg).forEach((v, i) => rows.push([`avg_${AVG_NAMES[i]}`, v]))
  return { columns: columns('sq', ['name', 'value']), rows }
}

/** Pools in PgBouncer's order (database, then user), the console's own pool included. */
function sortedPools(ctx: Ctx): Pool[] {
  return [...ctx.view.pools()].sort((a, b) => compare(a.database, b.database) || compare(a.user, b.user))
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}


/** PgBouncer shows load_balance_hosts only when the entry has several hosts. */
function loadBalanceHosts(entry: DatabaseEntry | undefined): string | null {
  if (entry === undefined || entry.hosts.length < 2) return null
  return entry.load_balance_hosts ?? 'round-robin'
}

function showPools(ctx: Ctx): ResultSet {
  const cfg = ctx.view.config()
  const rows: ResultSet['rows'] = []
  let consoleClients = 0
  for (const c of ctx.view.clients()) if (c.database === ADMIN_DB && c.state !== 'login') consoleClients++
  const adminRow = [ADMIN_DB, ADMIN_USER, consoleClients, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'statement', null]
  for (const p of sortedPools(ctx)) {
    const k = p.counts(ctx.nowMs)
    rows.push([
      p.database, p.user,
      k.cl_active, k.cl_waiting,
      0, 0,
      k.sv_active,
      0, 0,
      k.sv_idle, k.sv_used, k.sv_tested, k.sv_login,
      Math.floor(k.maxwait_ms / 1000), Math.floor(k.maxwait_ms % 1000) * 1000,
      p.settings.pool_mode,
      loadBalanceHosts(entryFor(cfg, p.database)),
    ])
  }
  insertSorted(rows, adminRow)
  return { columns: POOLS_COLUMNS, rows }
}

/** Puts a row where its first two columns sort among the others (the console's own database/pool). */
function insertSorted(rows: ResultSet['rows'], row: ResultSet['rows'][number]): void {
  const key = (r: ResultSet['rows'][number]) => [String(r[0]), String(r[1] ?? '')]
  const [a0, a1] = key(row)
  let i = 0
  for (; i < rows.length; i++) {
    const [b0, b1] = key(rows[i])
    if ((compare(a0, b0) || compare(a1, b1)) < 0) break
  }
  rows.splice(i, 0, row)
}

function showDatabases(ctx: Ctx): ResultSet {
  const cfg = ctx.view.config()
  const s = cfg.settings
  // Configured entries, plus names made on demand from '*' that have a pool now.
  const names = new Set<string>()
  for (const name of cfg.databases.keys()) if (name !== '*') names.add(name)
  const serverCounts = new Map<string, number>()
  for (const p of ctx.view.pools()) {
    if (cfg.databases.has(p.database) || cfg.databases.has('*')) names.add(p.database)
    serverCounts.set(p.database, p.dbCount.servers)
  }
  const clientCounts = new Map<string, number>()
  for (const c of ctx.view.clients()) {
    if (c.state !== 'login') clientCounts.set(c.database, (clientCounts.get(c.database) ?? 0) + 1)
  }
  const rows: ResultSet['rows'] = []
  for (const name of [...names].sort(compare)) {
    const e = entryFor(cfg, name) as DatabaseEntry
    const ps = poolSettings(cfg, e, null)
    rows.push([
      name,
      e.hosts.length > 0 ? e.hosts.join(',') : null,
      e.ports[0] ?? 5432,
      e.dbname ?? name,
      e.user,
      ps.pool_size,
      ps.min_pool_size,
      ps.reserve_pool_size,
      Math.trunc(ps.server_lifetime),
      e.pool_mode,
      loadBalanceHosts(e),
      dbServerLimit(cfg, e),
      serverCounts.get(name) ?? 0,
      dbClientLimit(cfg, e),
      clientCounts.get(name) ?? 0,
      ctx.view.isPaused(name) ? 1 : 0,
      ctx.view.isDisabled(name) ? 1 : 0,
      ps.reserve_pool_size,
    ])
  }
  // PgBouncer's admin database: listen_port, forced user pgbouncer, 2 servers, statement mode.
  insertSorted(rows, [
    ADMIN_DB, null, s.listen_port, ADMIN_DB, ADMIN_USER, 2, s.min_pool_size, s.reserve_pool_size, Math.trunc(s.server_lifetime),
    'statement', null, s.max_db_connections, 0, s.max_db_client_connections, clientCounts.get(ADMIN_DB) ?? 0, 0, 0, s.reserve_pool_size,
  ])
  return { columns: DATABASES_COLUMNS, rows }
}


const CLIENT_STATE_ORDER: Record<string, number> = { active: 0, waiting: 1 }

function showClients(ctx: Ctx): ResultSet {
  const list = [...ctx.view.clients()].filter((c) => c.state === 'active' || c.state === 'waiting')
  list.sort((a, b) => compare(a.database, b.database) || compare(a.user, b.user) || CLIENT_STATE_ORDER[a.state] - CLIENT_STATE_ORDER[b.state])
  const rows: ResultSet['rows'] = list.map((c) => {
    const waitedMs = c.state === 'waiting' && c.waitSinceMs !== undefined ? Math.max(0, ctx.nowMs - c.waitSinceMs) : 0
    return [
      'C', c.user, c.database, 'none',
      // PgBouncer: an active client without a server is idle.
      c.state === 'active' && c.linkedServerId === null ? 'idle' : c.state,
      c.addr, c.port, c.localAddr ?? '', c.localPort ?? 0,
      formatTime(c.connectedAtMs), formatTime(c.requestAtMs),
      Math.floor(waitedMs / 1000), Math.floor(waitedMs % 1000) * 1000,
      0, c.id, c.linkedServerId ?? '', 0, c.tls ?? '', c.applicationName, c.preparedStatements ?? 0, numericId(c.id),
      c.pinned ?? '',
    ]
  })
  return { columns: CLIENT_COLUMNS, rows }
}

function showServers(ctx: Ctx): ResultSet {
  const rows: ResultSet['rows'] = []
  for (const p of sortedPools(ctx)) {
    const l = p.lists
    // PgBouncer's order and words; a server logging in is 'new'.
    const groups: Array<[Iterable<PooledServer>, string]> = [
      [l.activeServers, 'active'], [l.idleServers, 'idle'], [l.usedServers, 'used'], [l.testedServers, 'tested'], [l.loginServers, 'new'],
    ]
    for (const [servers, state] of groups) {
      for (const s of servers) rows.push(serverRow(p, s, state))
    }
  }
  return { columns: SOCKET_COLUMNS, rows }
}

function serverRow(p: Pool, s: PooledServer, state: string): ResultSet['rows'][number] {
  const d = s as PooledServer & ServerDetails
  const id = d.id ?? ''
  const host = d.target?.host ?? ''
  const client = d.client ?? null
  return [
    'S', d.target?.user ?? p.user, p.database, 'none',
    state === 'active' && client === null ? 'idle' : state,
    host.startsWith('/') ? 'unix' : host, d.target?.port ?? 0,
    d.socket?.localAddress ?? '', d.socket?.localPort ?? 0,
    formatTime(s.connectedAtMs), formatTime(s.readyAtMs),
    0, 0, s.closeOnRelease ? 1 : 0,
    id, client?.id ?? '', d.backendPid ?? 0, '',
    client?.params?.get('application_name') ?? '', 0, numericId(id),
  ]
}

function showUsers(ctx: Ctx): ResultSet {
  const cfg = ctx.view.config()
  // PgBouncer's user list: [users] entries, auth_file users, users with a pool, and its own user.
  const names = new Set<string>([ADMIN_USER, ...cfg.users.keys(), ...cfg.userlist.keys()])
  const serverCounts = new Map<string, number>()
  for (const p of ctx.view.pools()) {
    names.add(p.user)
    serverCounts.set(p.user, p.userCount.servers)
  }
  const clientCounts = new Map<string, number>()
  for (const c of ctx.view.clients()) {
    if (c.state !== 'login') clientCounts.set(c.user, (clientCounts.get(c.user) ?? 0) + 1)
  }
  const rows: ResultSet['rows'] = [...names].sort(compare).map((name) => {
    const u = cfg.users.get(name)
    return [
      name,
      // PgBouncer sends these two as text, '' when the user has no override.
      u?.pool_size != null ? String(u.pool_size) : '',
      u?.reserve_pool_size != null ? String(u.reserve_pool_size) : '',
      u?.pool_mode ?? null,
      userServerLimit(cfg, name),
      serverCounts.get(name) ?? 0,
      userClientLimit(cfg, name),
      clientCounts.get(name) ?? 0,
    ]
  })
  return { columns: USERS_COLUMNS, rows }
}

function showLists(ctx: Ctx): ResultSet {
  const databases = showDatabases(ctx).rows.length
  const users = showUsers(ctx).rows.length
  const pools = ctx.view.pools()
  let clients = 0
  let loginClients = 0
  for (const c of ctx.view.clients()) {
    clients++
    if (c.state === 'login') loginClients++
  }
  let servers = 0
  for (const p of pools) servers += p.lists.serverCount
  // tidepool keeps no free lists and no DNS cache: those counts are 0.
  const items: Array<[string, number]> = [
    ['databases', databases], ['users', users], ['peers', 0], ['pools', pools.length + 1], ['peer_pools', 0],
    ['free_clients', 0], ['used_clients', clients], ['login_clients', loginClients], ['free_servers', 0],
    ['used_servers', servers], ['dns_names', 0], ['dns_zones', 0], ['dns_queries', 0], ['dns_pending', 0],
  ]
  return { columns: LISTS_COLUMNS, rows: items }
}

function showState(ctx: Ctx): ResultSet {
  const isPaused = ctx.view.isPaused(null)
  const isSuspended = ctx.view.isSuspended
  return {
    columns: STATE_COLUMNS,
    rows: [['active', isPaused || isSuspended ? 'no' : 'yes'], ['paused', isPaused ? 'yes' : 'no'], ['suspended', isSuspended ? 'yes' : 'no']],
  }
}

// ---- process control ----

/** A database PAUSE/RESUME may name: configured, or made on demand through '*'. */
/** The database a command names, which must exist (and not be the console's own). */
function requiredDb(ctx: Ctx, arg: string): string {
  if (arg === '') throw adminError('bad arguments')
  if (!isKnownDatabase(ctx.view.config(), arg)) throw adminError(`no such database: ${arg}`)
  if (arg === ADMIN_DB) throw adminError(`cannot use admin db: ${arg}`)
  return arg
}

function knownDbOrAll(ctx: Ctx, arg: string): string | null {
  return arg === '' ? null : requiredDb(ctx, arg)
}

function isKnownDatabase(cfg: Config, name: string): boolean {
  return name === ADMIN_DB || cfg.databases.has(name) || cfg.databases.has('*')
}

async function runPause(ctx: Ctx, arg: string): Promise<Buffer> {
  requireAdmin(ctx)
  const view = ctx.view
  if (view.isPaused(null) || view.isSuspended) throw adminError('already suspended/paused')
  if (arg !== '') {
    if (!isKnownDatabase(view.config(), arg)) throw adminError(`no such database: ${arg}`)
    if (arg === ADMIN_DB) throw adminError(`cannot pause admin db: ${arg}`)
  }
  try {
    await view.pause(arg === '' ? null : arg)
  } catch (err) {
    // pause_timeout_ms ran out: say what it waited for; the pause stays in effect.
    throw adminError((err as Error).message, SqlState.QueryCanceled)
  }
  return doneReply('PAUSE')
}

function runResume(ctx: Ctx, arg: string): Buffer {
  requireAdmin(ctx)
  const view = ctx.view
  if (arg === '') {
    if (view.isShuttingDown) throw adminError('pooler is shutting down')
    if (!view.isPaused(null) && !view.isSuspended) throw adminError('pooler is not paused/suspended')
    view.resume(null)
  } else {
    if (!isKnownDatabase(view.config(), arg)) throw adminError(`no such database: ${arg}`)
    if (!view.isPaused(arg)) throw adminError(`database ${arg} is not paused`)
    view.resume(arg)
  }
  return doneReply('RESUME')
}

async function runReload(ctx: Ctx, arg: string): Promise<Buffer> {
  if (arg !== '') throw syntaxError(ctx)
  requireAdmin(ctx)
  let r: { ok: boolean; errors: string[] }
  try {
    r = await ctx.view.reload()
  } catch (err) {
    r = { ok: false, errors: [(err as Error).message] }
  }
  if (!r.ok) {
    // PgBouncer's text and SQLSTATE; the detail (ours) names what the log says.
    throw adminError('RELOAD failed, see logs for additional details', SqlState.ConfigFileError, r.errors.length > 0 ? r.errors.join('\n') : undefined)
  }
  return doneReply('RELOAD')
}

function runShutdown(ctx: Ctx, arg: string): Buffer {
  const word = arg.toUpperCase()
  const mode: ShutdownMode | null = word === '' ? 'immediate' : word === 'WAIT_FOR_SERVERS' ? 'transactions' : word === 'WAIT_FOR_CLIENTS' ? 'clients' : null
  if (mode === null) throw syntaxError(ctx)
  requireAdmin(ctx)
  ctx.view.shutdown(mode)
  // PgBouncer answers an immediate SHUTDOWN with nothing: the connection ends with the process.
  return mode === 'immediate' ? Buffer.alloc(0) : doneReply('SHUTDOWN')
}

const SET_WORD = '("(?:[^"]|"")*"|[0-9a-z_]+)'
const SET_HEAD = `^[ \\t\\n\\r]*set[ \\t\\n\\r]+${SET_WORD}[ \\t\\n\\r]*(?:=|to)[ \\t\\n\\r]*`
const SET_TAIL = '[ \\t\\n\\r]*(?:;[ \\t\\n\\r]*)?$'
// PgBouncer tries the quoted-string form first, then a word (cmd_set_str_rx, cmd_set_word_rx).
const SET_STRING_RX = new RegExp(`${SET_HEAD}('(?:[^']|'')*')${SET_TAIL}`, 'i')
const SET_WORD_RX = new RegExp(`${SET_HEAD}${SET_WORD}${SET_TAIL}`, 'i')
// PgBouncer copies the key and the value, quotes included, into buffers of 64 and 256 bytes.
const MAX_SET_KEY = 63
const MAX_SET_VALUE = 255

/**
 * SET key = value. The parameters clients set by habit are acknowledged and ignored, as PgBouncer
 * does; any other key changes the setting as the config file would (live settings only) and
 * answers PgBouncer's tag `SET key=value`. Every refusal is PgBouncer's one text, "SET failed";
 * the DETAIL (ours) says why, where PgBouncer only logs it.
 */
function runSet(ctx: Ctx): Buffer {
  const m = SET_STRING_RX.exec(ctx.sql) ?? SET_WORD_RX.exec(ctx.sql)
  if (m === null) throw syntaxError(ctx)
  const key = unquote(m[1])
  const rawValue = m[2]
  if (key === '' || m[1].length > MAX_SET_KEY || rawValue.length > MAX_SET_VALUE) throw adminError('bad arguments')
  const value = rawValue.startsWith("'") ? rawValue.slice(1, -1).replaceAll("''", "'") : unquote(rawValue)
  if (FAKE_PARAMS.has(key.toLowerCase())) {
    return Buffer.concat([
      build.noticeResponse({ severity: 'NOTICE', code: SqlState.SuccessfulCompletion, message: 'SET ignored' }),
      build.commandComplete('SET'),
      build.readyForQuery(TxStatus.Idle),
    ])
  }
  requireAdmin(ctx)
  const r = ctx.view.set(key, value)
  if (!r.ok) throw adminError('SET failed', SqlState.ProtocolViolation, r.reason)
  const parts = r.warnings.map((w) => build.noticeResponse({ severity: 'NOTICE', code: SqlState.SuccessfulCompletion, message: w }))
  parts.push(build.commandComplete(`SET ${key}=${value}`), build.readyForQuery(TxStatus.Idle))
  return Buffer.concat(parts)
}

/** SUSPEND: answers once every socket but the console's is flushed and no longer read. */
async function runSuspend(ctx: Ctx, arg: string): Promise<Buffer> {
  if (arg !== '') throw syntaxError(ctx)
  requireAdmin(ctx)
  const view = ctx.view
  if (view.isPaused(null) || view.isSuspended) throw adminError('already suspended/paused')
  // PgBouncer: a paused database holds clients whose buffers could never be flushed.
  if (view.hasPausedDatabases()) throw adminError('cannot suspend with paused databases')
  await view.suspend()
  return doneReply('SUSPEND')
}

// ---- SHOW FDS, SOCKETS, ACTIVE_SOCKETS, MEM, DNS_HOSTS ----

/** The id PooledClient does not declare; ClientConn has it. */
function clientId(c: PooledClient): string {
  return (c as PooledClient & { id?: string }).id ?? ''
}

/** PgBouncer's buffer columns, filled with what Node knows: bytes waiting in and out. */
function bufferColumns(f: SocketFacts | undefined): number[] {
  const pendingIn = f?.pendingIn ?? 0
  const pendingOut = f?.pendingOut ?? 0
  // recv_pos, pkt_pos, pkt_remain, send_pos, send_remain, pkt_avail, send_avail
  return [pendingIn, 0, 0, 0, 0, pendingIn, pendingOut]
}

function clientSocketRow(ctx: Ctx, c: ClientInfo, state: string, facts: SocketFacts | undefined): ResultSet['rows'][number] {
  const waitedMs = c.state === 'waiting' && c.waitSinceMs !== undefined ? Math.max(0, ctx.nowMs - c.waitSinceMs) : 0
  return [
    'C', c.user || '(nouser)', c.database || '(nodb)', 'none', state,
    c.addr, c.port, c.localAddr ?? '', c.localPort ?? 0,
    formatTime(c.connectedAtMs), formatTime(c.requestAtMs),
    Math.floor(waitedMs / 1000), Math.floor(waitedMs % 1000) * 1000,
    0, c.id, c.linkedServerId ?? '', 0, c.tls ?? '', c.applicationName, 0, numericId(c.id),
    ...bufferColumns(facts),
  ]
}

/**
 * PgBouncer's order: per pool (the console's among them), active and waiting clients, then active,
 * idle, used, tested and logging-in servers; last, clients still logging in. ACTIVE_SOCKETS keeps
 * the sockets with bytes waiting in either direction and the client/server pairs linked now.
 */
function showSockets(ctx: Ctx, isActiveOnly: boolean): ResultSet {
  const facts = ctx.view.sockets()
  const infos = new Map<string, ClientInfo>()
  for (const c of ctx.view.clients()) infos.set(c.id, c)
  const hasData = (id: string) => { const f = facts.get(id); return f !== undefined && f.pendingIn + f.pendingOut > 0 }
  const rows: ResultSet['rows'] = []
  const addClient = (c: ClientInfo | undefined, state: string) => {
    if (c === undefined) return
    if (isActiveOnly && c.linkedServerId === null && !hasData(c.id)) return
    rows.push(clientSocketRow(ctx, c, state, facts.get(c.id)))
  }
  const consoleClients = [...infos.values()].filter((c) => c.database === ADMIN_DB && c.state !== 'login')
  let isConsoleDone = false
  const addConsole = () => {
    isConsoleDone = true
    for (const c of consoleClients) addClient(c, 'cl_active')
  }
  for (const p of sortedPools(ctx)) {
    if (!isConsoleDone && (compare(ADMIN_DB, p.database) || compare(ADMIN_USER, p.user)) < 0) addConsole()
    const l = p.lists
    for (const c of l.activeClients) addClient(infos.get(clientId(c)), 'cl_active')
    for (const c of [...l.waitingClients, ...l.loginClients]) addClient(infos.get(clientId(c)), 'cl_waiting')
    const groups: Array<[Iterable<PooledServer>, string]> = [
      [l.activeServers, 'sv_active'], [l.idleServers, 'sv_idle'], [l.usedServers, 'sv_used'], [l.testedServers, 'sv_tested'], [l.loginServers, 'sv_login'],
    ]
    for (const [servers, state] of groups) {
      for (const s of servers) {
        const id = (s as PooledServer & ServerDetails).id ?? ''
        if (isActiveOnly && s.client === null && !hasData(id)) continue
        rows.push([...serverRow(p, s, state), ...bufferColumns(facts.get(id))])
      }
    }
  }
  if (!isConsoleDone) addConsole()
  for (const c of infos.values()) if (c.state === 'login') addClient(c, 'cl_login')
  return { columns: SOCKET_DEBUG_COLUMNS, rows }
}

/**
 * PgBouncer hands these rows, with the sockets attached, to a new process taking over (online
 * restart). tidepool does no takeover; it lists the same sockets so tools see PgBouncer's shape,
 * with no secret in it: password and the SCRAM keys are always NULL, cancel keys always 0.
 */
function showFds(ctx: Ctx): ResultSet {
  requireAdmin(ctx)
  const facts = ctx.view.sockets()
  const infos = new Map<string, ClientInfo>()
  for (const c of ctx.view.clients()) infos.set(c.id, c)
  const rows: ResultSet['rows'] = []
  for (const l of ctx.view.listenerSockets()) {
    rows.push([l.fd, 'pooler', null, null, l.addr, l.port, 0, 0, null, null, null, null, null, null, null])
  }
  const fdOf = (id: string | null) => (id === null ? 0 : Math.max(0, facts.get(id)?.fd ?? 0))
  const paramsRow = (f: SocketFacts) => ['client_encoding', 'standard_conforming_strings', 'DateStyle', 'TimeZone'].map((n) => f.params.get(n) ?? null)
  // PgBouncer leaves out TLS sockets, and sockets linked to one: their state cannot be handed over.
  const isPlain = (id: string, linkId: string | null) => facts.get(id)?.isTls === false && (linkId === null || facts.get(linkId)?.isTls !== true)
  const addClient = (c: ClientInfo | undefined) => {
    const f = c === undefined ? undefined : facts.get(c.id)
    if (c === undefined || f === undefined || !isPlain(c.id, c.linkedServerId)) return
    rows.push([f.fd, 'client', c.user || null, c.database || null, c.addr, c.port, 0, fdOf(c.linkedServerId), ...paramsRow(f), null, null, null])
  }
  for (const c of infos.values()) if (c.state === 'login') addClient(c)
  for (const p of sortedPools(ctx)) {
    const l = p.lists
    for (const c of [...l.activeClients, ...l.waitingClients, ...l.loginClients]) addClient(infos.get(clientId(c)))
    for (const s of [...l.activeServers, ...l.idleServers, ...l.usedServers, ...l.testedServers, ...l.loginServers]) {
      const d = s as PooledServer & ServerDetails
      const id = d.id ?? ''
      const linkId = d.client?.id ?? null
      const f = facts.get(id)
      if (f === undefined || !isPlain(id, linkId)) continue
      rows.push([f.fd, 'server', d.target?.user ?? p.user, p.database, f.remoteAddr || (d.target?.host ?? ''), d.target?.port ?? 0, 0, fdOf(linkId), ...paramsRow(f), null, null, null])
    }
  }
  return { columns: FDS_COLUMNS, rows }
}

const INT4_MAX = 2147483647

/**
 * PgBouncer lists its slab caches: object size, used and free objects, bytes held. tidepool has no
 * slabs: the *_cache rows count its live objects of each kind (size 0: a JavaScript object has no
 * fixed size, and nothing is kept on free lists); the node_* rows are process.memoryUsage() in KiB
 * units (size 1024); the socket_* rows are bytes waiting in socket buffers (size 1).
 */
function showMem(ctx: Ctx): ResultSet {
  const pools = ctx.view.pools()
  let clients = 0
  for (const _ of ctx.view.clients()) clients++
  let servers = 0
  for (const p of pools) servers += p.lists.serverCount
  let pendingIn = 0
  let pendingOut = 0
  for (const f of ctx.view.sockets().values()) {
    pendingIn += f.pendingIn
    pendingOut += f.pendingOut
  }
  const m = ctx.view.memoryUsage()
  const objects = (name: string, used: number) => [name, 0, used, 0, 0]
  const bytes = (name: string, n: number) => [name, 1, Math.min(n, INT4_MAX), 0, Math.min(n, INT4_MAX)]
  const kib = (name: string, used: number, total: number) =>
    [name, 1024, Math.min(Math.ceil(used / 1024), INT4_MAX), Math.max(0, Math.floor((total - used) / 1024)), Math.min(total, INT4_MAX)]
  return {
    columns: MEM_COLUMNS,
    rows: [
      objects('user_cache', showUsers(ctx).rows.length),
      objects('db_cache', showDatabases(ctx).rows.length),
      objects('pool_cache', pools.length + 1),
      objects('server_cache', servers),
      objects('client_cache', clients),
      bytes('socket_recv_buffers', pendingIn),
      bytes('socket_send_buffers', pendingOut),
      kib('node_heap', m.heapUsed, m.heapTotal),
      kib('node_external', m.external, m.external),
      kib('node_array_buffers', m.arrayBuffers, m.arrayBuffers),
      kib('node_rss', m.rss, m.rss),
    ],
  }
}

/**
 * tidepool keeps no DNS cache: every server connection asks the OS resolver. One row per host
 * name (not an IP address, not a unix socket directory) in [databases], sorted, ttl 0, with the
 * addresses its live server connections resolved to ('' when it has none now).
 */
function showDnsHosts(ctx: Ctx): ResultSet {
  const names = new Set<string>()
  for (const e of ctx.view.config().databases.values()) {
    for (const h of e.hosts) if (!h.startsWith('/') && isIP(h) === 0) names.add(h)
  }
  const facts = ctx.view.sockets()
  const addrs = new Map<string, Set<string>>()
  for (const p of ctx.view.pools()) {
    for (const s of p.lists.allServers()) {
      const d = s as PooledServer & ServerDetails
      const host = d.target?.host
      const addr = facts.get(d.id ?? '')?.remoteAddr
      if (host === undefined || addr === undefined || addr === '' || !names.has(host)) continue
      let set = addrs.get(host)
      if (set === undefined) addrs.set(host, set = new Set())
      set.add(addr)
    }
  }
  const rows = [...names].sort(compare).map((h) => [h, 0, [...(addrs.get(h) ?? [])].sort(compare).join(',')])
  return { columns: DNS_HOSTS_COLUMNS, rows }
}

// ---- replies ----

function resultReply(r: ResultSet): Buffer {
  const parts: Buffer[] = [build.rowDescription(r.columns)]
  for (const row of r.rows) parts.push(build.dataRow(row.map((v) => (v === null ? null : String(v)))))
  parts.push(build.commandComplete('SHOW'), build.readyForQuery(TxStatus.Idle))
  return Buffer.concat(parts)
}

function doneReply(tag: string): Buffer {
  return Buffer.concat([build.commandComplete(tag), build.readyForQuery(TxStatus.Idle)])
}

function errorReply(code: string, message: string, detail?: string): Buffer {
  return Buffer.concat([build.errorResponse({ severity: 'ERROR', code, message, detail }), build.readyForQuery(TxStatus.Idle)])
}

/** The digits that end a connection id ('C-17' → 17): PgBouncer's id column is int4. */
function numericId(id: string): number {
  const m = /(\d+)$/.exec(id)
  return m === null ? 0 : Number(m[1])
}

const ZONE_NAME = new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' })

/** PgBouncer's format_time_s: local time, 'YYYY-MM-DD HH:MM:SS ZONE'. */
export function formatTime(ms: number): string {
  const d = new Date(ms)
  const p2 = (n: number) => String(n).padStart(2, '0')
  const zone = ZONE_NAME.formatToParts(d).find((x) => x.type === 'timeZoneName')?.value ?? 'UTC'
  return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${zone}`
}

// ---- tidepool's own: hosts and switchover (ha/) ----

const HOSTS_COLUMNS = columns('sisssssNisss', ['host', 'port', 'backend', 'role', 'health', 'role_sources_agree', 'last_change', 'check_ms', 'servers', 'banned_until', 'last_error', 'databases'])

function showHosts(ctx: Ctx): ResultSet {
  return {
    columns: HOSTS_COLUMNS,
    rows: ctx.view.hosts().map(({ host: h, databases }) => [
      h.host, h.port, h.kind, h.role, h.health(ctx.nowMs), h.isConflicted ? 'no' : 'yes', isoTime(h.lastChangeMs),
      Math.round(h.checkLatencyMs * 10) / 10, h.servers, h.bannedUntilMs > ctx.nowMs ? isoTime(h.bannedUntilMs) : null,
      h.lastError, databases.join(','),
    ]),
  }
}

const PHASES = ['hold', 'drain', 'promote', 'retarget', 'resume'] as const
const SWITCHOVER_COLUMNS = columns('ssssssi' + 'i'.repeat(PHASES.length) + 'i',
  ['database', 'from', 'to', 'result', 'error', 'started', 'total_ms', ...PHASES.map((p) => `${p}_ms`), 'cancelled'])

function switchoverRow(r: SwitchoverReport): Array<string | number | null> {
  const ms = (name: string) => r.phases.find((p) => p.name === name)?.ms ?? null
  return [r.database, r.from, r.to, r.ok ? 'ok' : 'failed', r.error, isoTime(r.startedAtMs), r.totalMs, ...PHASES.map(ms), r.cancelled]
}

function showSwitchovers(ctx: Ctx): ResultSet {
  return { columns: SWITCHOVER_COLUMNS, rows: ctx.view.switchovers().map(switchoverRow) }
}

const SWITCHOVER_PHASE_COLUMNS = columns('sis', ['phase', 'ms', 'note'])

/** Answers with one row per phase; a switchover that failed (traffic released anyway) is an ERROR naming why. */
async function runSwitchover(ctx: Ctx, db: string, to: string | null, timeoutS: number | null): Promise<Buffer> {
  requireAdmin(ctx)
  if (timeoutS !== null && !(timeoutS > 0)) throw adminError('bad arguments')
  let r: SwitchoverReport
  try {
    r = await ctx.view.switchover(db, to, timeoutS === null ? null : timeoutS * 1000)
  } catch (err) {
    throw adminError((err as Error).message)
  }
  if (!r.ok) {
    throw adminError(`switchover of ${db} failed: ${r.error ?? 'unknown reason'}`, SqlState.ProtocolViolation,
      `phases: ${r.phases.map((p) => `${p.name} ${p.ms} ms${p.note === '' ? '' : ` (${p.note})`}`).join(', ') || 'none (nothing was held)'}`)
  }
  return Buffer.concat([
    build.rowDescription(SWITCHOVER_PHASE_COLUMNS),
    ...r.phases.map((p) => build.dataRow([p.name, String(p.ms), p.note])),
    build.commandComplete('SWITCHOVER'), build.readyForQuery(TxStatus.Idle),
  ])
}

function isoTime(ms: number): string {
  return new Date(ms).toISOString()
}
