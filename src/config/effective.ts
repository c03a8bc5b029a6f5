// The settings in force for one database, user or pool: a [users] value over a [databases] value
// over the global one, with PgBouncer's rule that a per-entry limit of 0 falls back to the global.
// Runtime (pools), the console (SHOW DATABASES / USERS), auth_query and the client limits all read
// here, so an operator sees in SHOW what a pool really enforces.

import { serverCheckQuerySql } from './settings.ts'
import type { Config, DatabaseEntry, PoolMode } from './types.ts'

/** The settings one pool runs with. */
export interface PoolSettings {
  pool_mode: PoolMode
  pool_size: number
  min_pool_size: number
  reserve_pool_size: number
  reserve_pool_timeout: number
  max_db_connections: number
  max_user_connections: number
  server_round_robin: boolean
  server_reset_query: string
  server_reset_query_always: boolean
  /** SQL of the check before reusing a used server; null disables checks ('' is an empty query). */
  server_check_query: string | null
  server_check_delay: number
  server_login_retry: number
  server_lifetime: number
  server_idle_timeout: number
  /** Global values, or the [users] entry's (PgBouncer 1.25 allows these per user). */
  query_timeout: number
  idle_transaction_timeout: number
  transaction_timeout: number
  client_idle_timeout: number
}

/** The [databases] entry a database name resolves to: its own, or '*' for one made on demand. */
export function entryFor(cfg: Config, database: string): DatabaseEntry | undefined {
  return cfg.databases.get(database) ?? cfg.databases.get('*')
}

/**
 * The settings of the pool of `db` for `user`; with user null, the database's own values (what
 * SHOW DATABASES shows and what a pool of a user without a [users] entry gets).
 */
export function poolSettings(cfg: Config, db: DatabaseEntry, user: string | null): PoolSettings {
  const s = cfg.settings
  const u = user === null ? undefined : cfg.users.get(user)
  return {
    pool_mode: u?.pool_mode ?? db.pool_mode ?? s.pool_mode,
    pool_size: u?.pool_size ?? db.pool_size ?? s.default_pool_size,
    min_pool_size: db.min_pool_size ?? s.min_pool_size,
    reserve_pool_size: u?.reserve_pool_size ?? db.reserve_pool_size ?? s.reserve_pool_size,
    reserve_pool_timeout: s.reserve_pool_timeout,
    max_db_connections: dbServerLimit(cfg, db),
    max_user_connections: user === null ? s.max_user_connections : userServerLimit(cfg, user),
    server_round_robin: s.server_round_robin,
    server_reset_query: s.server_reset_query,
    server_reset_query_always: s.server_reset_query_always,
    server_check_query: serverCheckQuerySql(s.server_check_query),
    server_check_delay: s.server_check_delay,
    server_login_retry: s.server_login_retry,
    server_lifetime: db.server_lifetime ?? s.server_lifetime,
    server_idle_timeout: s.server_idle_timeout,
    query_timeout: u?.query_timeout ?? s.query_timeout,
    idle_transaction_timeout: u?.idle_transaction_timeout ?? s.idle_transaction_timeout,
    transaction_timeout: u?.transaction_timeout ?? s.transaction_timeout,
    client_idle_timeout: u?.client_idle_timeout ?? s.client_idle_timeout,
  }
}

/** max_db_connections for one database entry (0 = no limit). */
export function dbServerLimit(cfg: Config, db: DatabaseEntry): number {
  return positiveOr(db.max_db_connections, cfg.settings.max_db_connections)
}

/** max_user_connections for one login user (0 = no limit). */
export function userServerLimit(cfg: Config, user: string): number {
  return positiveOr(cfg.users.get(user)?.max_user_connections, cfg.settings.max_user_connections)
}

/** max_db_client_connections for one database entry (0 = no limit). */
export function dbClientLimit(cfg: Config, db: DatabaseEntry | undefined): number {
  return positiveOr(db?.max_db_client_connections, cfg.settings.max_db_client_connections)
}

/** max_user_client_connections for one login user (0 = no limit). */
export function userClientLimit(cfg: Config, user: string): number {
  return positiveOr(cfg.users.get(user)?.max_user_client_connections, cfg.settings.max_user_client_connections)
}

// PgBouncer treats a per-entry limit of 0 as "not set", not as "unlimited".
function positiveOr(perEntry: number | null | undefined, global: number): number {
  return perEntry != null && perEntry > 0 ? perEntry : global
}
