// The shape of a loaded configuration: what config/load.ts hands out, deep-frozen, and what every
// other module reads. Nothing here parses or validates; settings.ts holds the table of settings.
// Invariants: a Config is immutable once built; RELOAD builds a new one and swaps it whole.

import type { PoolMode, Settings } from './settings.ts'

// The value types of settings belong to the table; the Config contract names them too, so readers
// of a Config need one import.
export type { PoolMode, SettingValue } from './settings.ts'

/** libpq's target_session_attrs, per [databases] entry. */
export type TargetSessionAttrs = 'any' | 'read-write' | 'primary' | 'read-only' | 'standby' | 'prefer-standby'
export const TARGET_SESSION_ATTRS: readonly TargetSessionAttrs[] = ['any', 'read-write', 'primary', 'read-only', 'standby', 'prefer-standby']

/** PostgreSQL has one primary; CockroachDB nodes are all equal and all take writes. */
export type BackendKind = 'postgresql' | 'cockroachdb'

/** Where a config value came from, so errors and SHOW CONFIG can name it. */
export interface SourcePos {
  file: string
  line: number
}

/** One line of [databases]: `name = host=... port=... dbname=...` (PgBouncer's connection string). */
export interface DatabaseEntry {
  /** The name clients connect to; '*' is the fallback entry used for unknown names. */
  readonly name: string
  /** Hosts in order; [] means the default (unix socket dir /tmp, or PgBouncer's default). A
   *  value starting with '/' is a unix socket directory. */
  readonly hosts: readonly string[]
  /** One port per host, the same length as hosts (a single port= applies to all). With no
   *  hosts (unix socket in the default dir) it holds the one port= given, or nothing for 5432. */
  readonly ports: readonly number[]
  /** Database name on the server; null means the same as `name` (or the client's for '*'). */
  readonly dbname: string | null
  /** Forced server user; null means the client's user. */
  readonly user: string | null
  readonly password: string | null
  readonly auth_user: string | null
  readonly auth_query: string | null
  readonly auth_dbname: string | null
  readonly pool_size: number | null
  readonly min_pool_size: number | null
  readonly reserve_pool_size: number | null
  readonly max_db_connections: number | null
  readonly max_db_client_connections: number | null
  readonly pool_mode: PoolMode | null
  /** How a new server connection picks from several hosts; null means PgBouncer's round-robin. */
  readonly load_balance_hosts: 'round-robin' | 'disable' | null
  readonly connect_query: string | null
  readonly application_name: string | null
  readonly client_encoding: string | null
  readonly datestyle: string | null
  readonly timezone: string | null
  readonly server_lifetime: number | null
  /** libpq's target_session_attrs: which host role new server connections need; null = any. */
  readonly target_session_attrs: TargetSessionAttrs | null
  /** postgresql (one primary) or cockroachdb (all nodes equal); null = postgresql. */
  readonly backend: BackendKind | null
  /** Patroni REST API base URL per host (same order and length as hosts), or []. */
  readonly patroni_urls: readonly string[]
  /** HTTP health endpoint per host that must answer 200 (CockroachDB /health?ready=1), or []. */
  readonly health_urls: readonly string[]
  /** Region (or zone) of each host, same order and length as hosts, or []: with [tidepool]
   *  node_region set, new server connections prefer hosts of the node's own region. */
  readonly host_regions: readonly string[]
  /** libpq's require_auth for logins to this entry's servers (the methods allowed); null = server_require_auth. */
  readonly require_auth: readonly string[] | null
  /** Any key= this build knows but does not act on yet, and unknown keys, kept for SHOW/diagnostics. */
  readonly extra: Readonly<Record<string, string>>
  readonly pos: SourcePos
}

/** One line of [users]: `alice = pool_mode=session max_user_connections=10`. */
export interface UserEntry {
  readonly name: string
  readonly pool_mode: PoolMode | null
  readonly pool_size: number | null
  readonly reserve_pool_size: number | null
  readonly max_user_connections: number | null
  readonly max_user_client_connections: number | null
  /** Per-user overrides of the global timeouts, in seconds; null means the global value. */
  readonly query_timeout: number | null
  readonly idle_transaction_timeout: number | null
  readonly transaction_timeout: number | null
  readonly client_idle_timeout: number | null
  /** Unknown keys, kept for diagnostics (a warning names each one). */
  readonly extra: Readonly<Record<string, string>>
  readonly pos: SourcePos
}

/**
 * One line of [peers] (PgBouncer 1.19+): `<peer_id> = host=... [port=...] [pool_size=...]`, a pooler
 * that cancel requests carrying its peer id are forwarded to.
 */
export interface PeerEntry {
  readonly peer_id: number
  /** A host name or address, or a unix socket directory (starts with '/'). */
  readonly host: string
  /** PgBouncer's default: 6432. */
  readonly port: number
  /** Cancel requests in flight to this peer at once; null means default_pool_size. */
  readonly pool_size: number | null
  readonly pos: SourcePos
}

/** A userlist.txt entry: the stored secret is plain text, `md5<hex>` or a SCRAM-SHA-256 verifier. */
export interface UserSecret {
  readonly name: string
  readonly password: string
}

export interface Config {
  /** The main file, absolute path. */
  readonly file: string
  /** Every [pgbouncer] and [tidepool] setting by its snake_case name, defaults filled in. */
  readonly settings: Readonly<Settings>
  readonly databases: ReadonlyMap<string, DatabaseEntry>
  readonly users: ReadonlyMap<string, UserEntry>
  /** [peers], by peer id. */
  readonly peers: ReadonlyMap<number, PeerEntry>
  /** From auth_file; empty when unset. */
  readonly userlist: ReadonlyMap<string, UserSecret>
  /** Where each explicitly set setting came from. */
  readonly positions: ReadonlyMap<string, SourcePos>
}

export type LoadResult =
  | { ok: true; config: Config; warnings: string[] }
  | { ok: false; errors: string[]; warnings: string[] }
