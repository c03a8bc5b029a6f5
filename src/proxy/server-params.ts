// Session parameters tidepool keeps honest in transaction mode: the ones PostgreSQL reports with
// ParameterStatus (GUC_REPORT) that clients commonly set. Each client remembers its values; when it
// is linked to a server whose values differ, one internal query of SETs brings the server in line
// before the client's own messages go through. PgBouncer tracks the same base list, plus
// track_extra_parameters (default IntervalStyle).
// A tracked name the pool's servers do not report (track_extra_parameters = search_path before
// PostgreSQL 18) would never be learnt back, so in transaction mode its value is handed to the
// client's GUCs (session-state.ts), which the probe reads (unreportedParams).
// Must not: keep a server-side value for a parameter the server does not report.

const BASE = ['client_encoding', 'DateStyle', 'TimeZone', 'standard_conforming_strings', 'application_name'] as const

const cache = new WeakMap<readonly string[], Map<string, string>>()

function lookup(extra: readonly string[]): Map<string, string> {
  let m = cache.get(extra)
  if (m === undefined) {
    m = new Map()
    for (const name of [...BASE, ...extra]) m.set(name.toLowerCase(), name)
    cache.set(extra, m)
  }
  return m
}

/** The canonical spelling of a tracked parameter, or null when `name` is not tracked. */
export function canonicalParamName(name: string, extra: readonly string[]): string | null {
  return lookup(extra).get(name.toLowerCase()) ?? null
}

export function trackedNames(extra: readonly string[]): string[] {
  return [...lookup(extra).values()]
}

// Thousands of clients of one driver log in with the same values: they share one map, instead of
// a map (about 0.5 kB with its strings) each. Shared maps are never mutated; a change makes a new one.
const shared = new Map<string, ReadonlyMap<string, string>>()
/** Distinct sets kept for sharing; past it (application_name_add_host makes every set distinct) maps are simply not shared. */
const SHARED_LIMIT = 1000
export const NO_PARAMS: ReadonlyMap<string, string> = new Map()

/** The shared map with the same entries in the same order as `m`, or `m` itself (which must not be changed afterwards). */
export function shareParams(m: Map<string, string>): ReadonlyMap<string, string> {
  let key = ''
  for (const [name, value] of m) key += name + '\0' + value + '\0'
  const hit = shared.get(key)
  if (hit !== undefined) return hit
  if (shared.size < SHARED_LIMIT) shared.set(key, m)
  return m
}

/** `m` with name set to value: `m` itself when it already has that value. */
export function withParam(m: ReadonlyMap<string, string>, name: string, value: string): ReadonlyMap<string, string> {
  if (m.get(name) === value) return m
  const copy = new Map(m)
  copy.set(name, value)
  return shareParams(copy)
}

/**
 * Parameters whose value is a list of identifiers: SET with a quoted value would make the whole
 * list one identifier ("a,b"), so they go through set_config, which reads the text as a list.
 */
const LIST_QUOTED = new Set(['search_path'])

/** One query of SETs that makes `server` match `client`, or null when they already agree. */
export function paramSyncQuery(client: ReadonlyMap<string, string>, server: ReadonlyMap<string, string>): string | null {
  let sql: string | null = null
  for (const [name, value] of client) {
    if (server.get(name) === value) continue
    const stmt = LIST_QUOTED.has(name.toLowerCase())
      ? `SELECT pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, false);`
      : `SET ${quoteIdent(name)} = ${quoteLiteral(value)};`
    sql = sql === null ? stmt : sql + stmt
  }
  return sql
}

/**
 * The client's tracked values for parameters the pool's servers do not report (`welcome` lacks
 * them; search_path before PostgreSQL 18), by lower-case name, or null when there are none. No
 * ParameterStatus would tell tidepool what a server holds for them, so in transaction mode they
 * follow the client as GUCs (session-state.ts: set on link, RESET for other clients, read back by
 * the probe after the client's own SET).
 */
export function unreportedParams(params: ReadonlyMap<string, string>, welcome: ReadonlyMap<string, string>): Map<string, string> | null {
  let out: Map<string, string> | null = null
  for (const [name, value] of params) if (!welcome.has(name)) (out ??= new Map()).set(name.toLowerCase(), value)
  return out
}

export function quoteIdent(name: string): string {
  return '"' + name.replaceAll('"', '""') + '"'
}

/** A literal that reads the same whatever standard_conforming_strings is: E'' when backslashes occur. */
export function quoteLiteral(value: string): string {
  if (value.includes('\\')) return "E'" + value.replaceAll('\\', '\\\\').replaceAll("'", "''") + "'"
  return "'" + value.replaceAll("'", "''") + "'"
}
