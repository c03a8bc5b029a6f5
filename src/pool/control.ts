// PoolControl: the one seam through which pools are paused, resumed, held for a switchover,
// released, killed, reconnected, waited on, enabled or disabled, and counted. The console, the
// HTTP API and the switchover act on pools only through it. Today it is a function call into this
// process's PoolSet (local-control.ts); next it carries the same messages to worker processes
// (IPC) and to fleet nodes (etcd), so every command and every answer is plain JSON-serialisable
// data (no Pool, connection or socket objects, no functions) and every command is acknowledged.
// Must not: hold state; implementations own it.

import type { PoolMode } from '../config/types.ts'

/**
 * One pool's list sizes as SHOW POOLS names them: read by SHOW POOLS, /metrics and the tests
 * alike, so they all mean the same by cl_waiting. Plain data, so it can cross a process.
 */
export interface PoolCounts {
  cl_active: number
  /** Waiting for a server, plus clients waiting for the pool's first server login. */
  cl_waiting: number
  cl_pinned: number
  sv_active: number
  sv_idle: number
  sv_used: number
  sv_tested: number
  /** Released while a cancel request for its query was in flight: held back until it is done. */
  sv_being_canceled: number
  sv_login: number
  /** How long the oldest waiting client has waited; 0 with none waiting. */
  maxwait_ms: number
}


/**
 * `database: null` means every database. `hosts` are host keys (`host:port`, as ha/hosts.ts
 * spells them): a pool is on a host when its database entry lists it.
 */
export type PoolCommand =
  /** PAUSE: new transactions wait; acknowledged once no server of those pools is busy, or fails after timeoutMs (> 0). */
  | { op: 'pause'; database: string | null; timeoutMs: number }
  /** RESUME: lifts PAUSE (all of it with null); pools a switchover holds stay held. */
  | { op: 'resume'; database: string | null }
  /** Switchover: hold new transactions of every pool on these hosts, pools made meanwhile too (separate from PAUSE). */
  | { op: 'hold'; hosts: string[] }
  /** Switchover: wait until held pools have no busy server, then close those still in a transaction after timeoutMs. */
  | { op: 'drain'; hosts: string[]; timeoutMs: number; reason: string }
  /** Switchover: let every held pool go again. */
  | { op: 'release' }
  /** KILL: drop the database's clients and servers now (every database's with null); new clients wait until RESUME. */
  | { op: 'kill'; database: string | null }
  /** RECONNECT: servers close as they are released. */
  | { op: 'reconnect'; database: string | null }
  /** WAIT_CLOSE: acknowledged once no server marked by RECONNECT or RELOAD remains. */
  | { op: 'wait_close'; database: string | null }
  /** ENABLE / DISABLE: allow or refuse new logins to the database. */
  | { op: 'enable'; database: string }
  | { op: 'disable'; database: string }

export type PoolOp = PoolCommand['op']

/**
 * The answer to every command. `pools`: how many pools it acted on; `cancelled`: transactions a
 * drain closed at its deadline (0 for other commands).
 */
export type Ack = { ok: true; pools: number; cancelled: number } | { ok: false; error: string }

/** One pool (database, user) as SHOW POOLS, DATABASES, USERS, LISTS and MEM read it, in plain data. */
export interface PoolRow {
  database: string
  user: string
  pool_mode: PoolMode
  /** The pool's pool_size setting (what /metrics shows as tidepool_pool_size). */
  pool_size: number
  paused: boolean
  counts: PoolCounts
  /** Servers of every pool of this database: what max_db_connections counts. */
  databaseServers: number
  /** Servers of every pool of this user: what max_user_connections counts. */
  userServers: number
}

export interface PoolControl {
  run(cmd: PoolCommand): Promise<Ack>
  /** Every pool of `database` (all with null), sorted by database then user. */
  counts(database: string | null): Promise<PoolRow[]>
}
