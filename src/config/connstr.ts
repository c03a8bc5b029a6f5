// Turns the value of a [databases], [users] or [peers] line into a typed entry. The value is PgBouncer's
// libpq-like connection string: `key=value` pairs split by blanks, where a value with blanks is
// put in single quotes. Inside quotes, '' (PgBouncer) and \' (libpq) both stand for a quote and
// \\ for a backslash; any other backslash is kept as written, so PgBouncer files read the same.
// Invariants: every message carries file:line and the entry's name; numbers are range-checked;
// a database's ports list matches its hosts list (see DatabaseEntry.ports).
// Must not: throw, read files, or apply global defaults (the runtime resolves those at use).

import { TARGET_SESSION_ATTRS, type BackendKind, type DatabaseEntry, type PeerEntry, type PoolMode, type SourcePos, type TargetSessionAttrs, type UserEntry } from './types.ts'
import { int, oneOf, parseSeconds, requireAuth, type ParseResult } from './setting-types.ts'

export type ConnStringResult = { ok: true; pairs: Array<[string, string]> } | { ok: false; error: string }

/** Splits a connection string into (key, value) pairs in order; keys are lowercased. */
export function parseConnString(text: string): ConnStringResult {
  const pairs: Array<[string, string]> = []
  let i = 0
  const n = text.length
  const skipBlanks = () => {
    while (i < n && /\s/.test(text[i])) i++
  }
  for (;;) {
    skipBlanks()
    if (i >= n) return { ok: true, pairs }
    const keyStart = i
    while (i < n && text[i] !== '=' && !/\s/.test(text[i])) i++
    const key = text.slice(keyStart, i).toLowerCase()
    skipBlanks()
    if (text[i] !== '=') return { ok: false, error: `expected '=' after ${JSON.stringify(key)}` }
    if (key === '') return { ok: false, error: `missing key before '=' at offset ${i}` }
    i++
    skipBlanks()
    let value = ''
    if (text[i] === "'") {
      i++
      let closed = false
      while (i < n) {
        const c = text[i]
        if (c === "'") {
          if (text[i + 1] === "'") {
            value += "'"
            i += 2
            continue
          }
          i++
          closed = true
          break
        }
        if (c === '\\' && (text[i + 1] === "'" || text[i + 1] === '\\')) {
          value += text[i + 1]
          i += 2
          continue
        }
        value += c
        i++
      }
      if (!closed) return { ok: false, error: `unterminated quoted value for ${key}` }
      if (i < n && !/\s/.test(text[i])) return { ok: false, error: `expected a blank after the quoted value of ${key}` }
    } else {
      const valueStart = i
      while (i < n && !/\s/.test(text[i])) i++
      value = text.slice(valueStart, i)
    }
    // PgBouncer refuses `key=` and `key=''`: a value left out is more likely a typo than a wish.
    if (value === '') return { ok: false, error: `empty value for ${key}` }
    pairs.push([key, value])
  }
}

export interface ParsedLine<T> {
  /** null when the line has errors. */
  readonly entry: T | null
  readonly errors: string[]
  readonly warnings: string[]
}

const POOL_MODE = oneOf(['session', 'transaction', 'statement'] as const)
const LOAD_BALANCE = oneOf(['round-robin', 'disable'] as const)
const COUNT = int()
const PORT = int({ min: 1, max: 65535 })
const SESSION_ATTRS = oneOf(TARGET_SESSION_ATTRS)
const BACKEND = oneOf(['postgresql', 'cockroachdb'] as const)
const REQUIRE_AUTH = requireAuth()

/** A comma-separated list of http(s) URLs, one per host. */
function urlList(r: LineReader, key: string, v: string): string[] {
  const urls = v.split(',').map((u) => u.trim())
  for (const u of urls) {
    let ok = false
    try {
      ok = ['http:', 'https:'].includes(new URL(u).protocol)
    } catch {
      ok = false
    }
    if (!ok) r.error(`${key}: ${JSON.stringify(u)} is not an http:// or https:// URL`)
  }
  return urls
}

/** Collects typed values of one line, turning parse failures into located messages. */
class LineReader {
  readonly errors: string[] = []
  readonly warnings: string[] = []
  constructor(private readonly prefix: string) {}

  error(msg: string): void {
    this.errors.push(`${this.prefix}: ${msg}`)
  }

  warn(msg: string): void {
    this.warnings.push(`${this.prefix}: ${msg}`)
  }

  typed<T>(key: string, r: ParseResult<T>): T | null {
    if (r.ok) return r.value
    this.error(`${key}: ${r.error}`)
    return null
  }
}

/** Parses `name = connstr` from [databases]. `name` is '*' for the fallback entry. */
export function parseDatabaseEntry(name: string, value: string, pos: SourcePos): ParsedLine<DatabaseEntry> {
  const r = new LineReader(`${pos.file}:${pos.line}: [databases] ${name}`)
  if (name.toLowerCase() === 'pgbouncer') {
    r.error('the name "pgbouncer" is reserved for the admin console')
    return { entry: null, errors: r.errors, warnings: r.warnings }
  }
  const cs = parseConnString(value)
  if (!cs.ok) {
    r.error(cs.error)
    return { entry: null, errors: r.errors, warnings: r.warnings }
  }

  let hosts: string[] = []
  let portTexts: string[] = []
  let dbname: string | null = null
  let user: string | null = null
  let password: string | null = null
  let auth_user: string | null = null
  let auth_query: string | null = null
  let auth_dbname: string | null = null
  let require_auth: readonly string[] | null = null
  let pool_size: number | null = null
  let min_pool_size: number | null = null
  let reserve_pool_size: number | null = null
  let max_db_connections: number | null = null
  let max_db_client_connections: number | null = null
  let pool_mode: PoolMode | null = null
  let load_balance_hosts: 'round-robin' | 'disable' | null = null
  let connect_query: string | null = null
  let application_name: string | null = null
  let client_encoding: string | null = null
  let datestyle: string | null = null
  let timezone: string | null = null
  let server_lifetime: number | null = null
  let target_session_attrs: TargetSessionAttrs | null = null
  let backend: BackendKind | null = null
  let patroni_urls: string[] = []
  let health_urls: string[] = []
  let host_regions: string[] = []
  const extra: Record<string, string> = {}

  for (const [key, v] of cs.pairs) {
    switch (key) {
      case 'host': {
        hosts = v.split(',').map((h) => h.trim())
        if (hosts.some((h) => h === '')) r.error(`host: empty name in the list ${JSON.stringify(v)}`)
        break
      }
      case 'port':
        portTexts = v.split(',').map((p) => p.trim())
        break
      case 'dbname': dbname = v; break
      case 'user': user = v; break
      case 'password': password = v; break
      case 'auth_user': auth_user = v; break
      case 'auth_query': auth_query = v; break
      case 'auth_dbname': auth_dbname = v; break
      case 'require_auth': require_auth = r.typed(key, REQUIRE_AUTH.parse(v)); break
      case 'connect_query': connect_query = v; break
      case 'application_name': application_name = v; break
      case 'client_encoding': client_encoding = v; break
      case 'datestyle': datestyle = v; break
      case 'timezone': timezone = v; break
      case 'pool_size': pool_size = r.typed(key, COUNT.parse(v)); break
      case 'min_pool_size': min_pool_size = r.typed(key, COUNT.parse(v)); break
      // reserve_pool is the old spelling PgBouncer still reads.
      case 'reserve_pool':
      case 'reserve_pool_size': reserve_pool_size = r.typed(key, COUNT.parse(v)); break
      case 'max_db_connections': max_db_connections = r.typed(key, COUNT.parse(v)); break
      case 'max_db_client_connections': max_db_client_connections = r.typed(key, COUNT.parse(v)); break
      case 'server_lifetime': server_lifetime = r.typed(key, parseSeconds(v)); break
      case 'pool_mode': pool_mode = r.typed(key, POOL_MODE.parse(v)); break
      case 'load_balance_hosts': load_balance_hosts = r.typed(key, LOAD_BALANCE.parse(v)); break
      case 'target_session_attrs': target_session_attrs = r.typed(key, SESSION_ATTRS.parse(v)); break
      case 'backend': backend = r.typed(key, BACKEND.parse(v)); break
      case 'patroni_urls': patroni_urls = urlList(r, key, v); break
      case 'health_urls': health_urls = urlList(r, key, v); break
      case 'host_regions': {
        host_regions = v.split(',').map((x) => x.trim())
        if (host_regions.some((x) => x === '')) r.error(`host_regions: empty name in the list ${JSON.stringify(v)}`)
        break
      }
      default:
        extra[key] = v
        r.warn(`unknown connection parameter '${key}' (ignored)`)
    }
  }

  const ports: number[] = []
  for (const p of portTexts) {
    const n = r.typed('port', PORT.parse(p))
    if (n !== null) ports.push(n)
  }
  let portsOut: number[]
  if (hosts.length === 0) {
    // Unix socket in the default directory: the port only names the socket file.
    if (ports.length > 1) r.error(`port: ${ports.length} ports given but no host`)
    portsOut = ports.slice(0, 1)
  } else if (ports.length === 0) {
    portsOut = hosts.map(() => 5432)
  } else if (ports.length === 1) {
    portsOut = hosts.map(() => ports[0])
  } else {
    if (ports.length !== hosts.length) {
      r.error(`port: ${ports.length} ports for ${hosts.length} hosts; give one port for all, or one per host`)
    }
    portsOut = ports
  }

  for (const [key, list] of [['patroni_urls', patroni_urls], ['health_urls', health_urls]] as const) {
    if (list.length > 0 && list.length !== Math.max(1, hosts.length)) {
      r.error(`${key}: ${list.length} URLs for ${hosts.length} hosts; give one per host, in the order of host=`)
    }
  }

  if (host_regions.length > 0 && host_regions.length !== hosts.length) {
    r.error(`host_regions: ${host_regions.length} regions for ${hosts.length} hosts; give one per host, in the order of host=`)
  }

  if (r.errors.length > 0) return { entry: null, errors: r.errors, warnings: r.warnings }
  const entry: DatabaseEntry = {
    name, hosts, ports: portsOut, dbname, user, password, auth_user, auth_query, auth_dbname,
    pool_size, min_pool_size, reserve_pool_size, max_db_connections, max_db_client_connections,
    pool_mode, load_balance_hosts, connect_query, application_name, client_encoding, datestyle,
    timezone, server_lifetime, target_session_attrs, backend, patroni_urls, health_urls, host_regions, require_auth, extra, pos,
  }
  return { entry, errors: r.errors, warnings: r.warnings }
}

/** Parses `name = settings` from [users]. */
export function parseUserEntry(name: string, value: string, pos: SourcePos): ParsedLine<UserEntry> {
  const r = new LineReader(`${pos.file}:${pos.line}: [users] ${name}`)
  const cs = parseConnString(value)
  if (!cs.ok) {
    r.error(cs.error)
    return { entry: null, errors: r.errors, warnings: r.warnings }
  }
  let pool_mode: PoolMode | null = null
  let pool_size: number | null = null
  let reserve_pool_size: number | null = null
  let max_user_connections: number | null = null
  let max_user_client_connections: number | null = null
  let query_timeout: number | null = null
  let idle_transaction_timeout: number | null = null
  let transaction_timeout: number | null = null
  let client_idle_timeout: number | null = null
  const extra: Record<string, string> = {}
  for (const [key, v] of cs.pairs) {
    switch (key) {
      case 'pool_mode': pool_mode = r.typed(key, POOL_MODE.parse(v)); break
      case 'pool_size': pool_size = r.typed(key, COUNT.parse(v)); break
      case 'reserve_pool_size': reserve_pool_size = r.typed(key, COUNT.parse(v)); break
      case 'max_user_connections': max_user_connections = r.typed(key, COUNT.parse(v)); break
      case 'max_user_client_connections': max_user_client_connections = r.typed(key, COUNT.parse(v)); break
      case 'query_timeout': query_timeout = r.typed(key, parseSeconds(v)); break
      case 'idle_transaction_timeout': idle_transaction_timeout = r.typed(key, parseSeconds(v)); break
      case 'transaction_timeout': transaction_timeout = r.typed(key, parseSeconds(v)); break
      case 'client_idle_timeout': client_idle_timeout = r.typed(key, parseSeconds(v)); break
      default:
        extra[key] = v
        r.warn(`unknown user parameter '${key}' (ignored)`)
    }
  }
  if (r.errors.length > 0) return { entry: null, errors: r.errors, warnings: r.warnings }
  const entry: UserEntry = {
    name, pool_mode, pool_size, reserve_pool_size, max_user_connections, max_user_client_connections,
    query_timeout, idle_transaction_timeout, transaction_timeout, client_idle_timeout, extra, pos,
  }
  return { entry, errors: r.errors, warnings: r.warnings }
}

/** PgBouncer reads [peers] ids from 1 to 65535 (peer_id itself stops at 16383). */
const PEER_ID = int({ min: 1, max: 65535 })

/**
 * Parses `id = connstr` from [peers]: host (required), port (default 6432) and pool_size, as
 * PgBouncer's parse_peer; any other key is an error there, and so here.
 */
export function parsePeerEntry(name: string, value: string, pos: SourcePos): ParsedLine<PeerEntry> {
  const r = new LineReader(`${pos.file}:${pos.line}: [peers] ${name}`)
  const id = PEER_ID.parse(name)
  if (!id.ok) r.error(`a peer id must be a number from 1 to 65535, got ${JSON.stringify(name)}`)
  const cs = parseConnString(value)
  if (!cs.ok) {
    r.error(cs.error)
    return { entry: null, errors: r.errors, warnings: r.warnings }
  }
  let host: string | null = null
  let port = 6432
  let pool_size: number | null = null
  for (const [key, v] of cs.pairs) {
    switch (key) {
      case 'host': host = v; break
      case 'port': port = r.typed(key, PORT.parse(v)) ?? port; break
      case 'pool_size': pool_size = r.typed(key, COUNT.parse(v)); break
      default: r.error(`unknown peer parameter '${key}' (host, port and pool_size are known)`)
    }
  }
  if (host === null) r.error('host is required')
  else if (host.startsWith('@')) r.error('host: abstract-namespace unix sockets (@name) are not supported')
  if (r.errors.length > 0 || !id.ok || host === null) return { entry: null, errors: r.errors, warnings: r.warnings }
  return { entry: { peer_id: id.value, host, port, pool_size, pos }, errors: r.errors, warnings: r.warnings }
}
