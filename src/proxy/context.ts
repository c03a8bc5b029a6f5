// What a connection needs from the running process: the current settings snapshot, the log, the
// cancel key registry, and pool lookup. Runtime owns the one instance and swaps `settings` and
// `config` on RELOAD; connections read them at the moment of use, never keep their own copy.
// Must not: name ClientConn or ServerConn (they import this; the pool's interfaces say enough).

import type { Config } from '../config/types.ts'
import type { Settings } from '../config/settings.ts'
import type { Logger } from '../observe/log.ts'
import type { Pool } from '../pool/pool.ts'
import type { IntrusiveList } from '../util/intrusive-list.ts'
import type { PooledClient } from '../pool/states.ts'
import type { CancelRegistry } from './cancel.ts'
import type { ClientTls, ServerTls } from '../net/tls.ts'
import type { HbaFile } from '../auth/hba.ts'
import type { AuthQuery } from '../auth/auth-query.ts'
import type { ReadGate } from '../net/read-gate.ts'

/** What a connection sees of a monitored host (ha/hosts.ts Host); the runtime does the rest. */
export interface WatchedHost {
  servers: number
}

/**
 * With workers: client connections counted over all workers (max_client_conn and the per-database
 * and per-user client limits), by key. Absent in a single process, whose own counts are the totals.
 */
export interface ClientSlots {
  /** Counts one client under `limit` (0: none); false when the limit is reached; async only when this worker must ask the primary. */
  take(key: string, limit: number): boolean | Promise<boolean>
  /** A client counted under `key` is gone. */
  give(key: string): void
  /** Counts a client an online restart moved here: it was admitted by the old pooler, so never refused. */
  adopt(key: string): void
}

export interface ProxyContext {
  config: Config
  settings: Settings
  readonly log: Logger
  readonly cancels: CancelRegistry
  /** Clients that have not reached a pool yet; the janitor applies client_login_timeout to them. */
  readonly loginClients: IntrusiveList<PooledClient>
  /** Every open client connection, for max_client_conn and shutdown. */
  readonly clients: Set<PooledClient>
  /** The pool for a database entry and the server-side user, created on first use. */
  poolFor(database: string, user: string): Pool | null
  /** A user's SCRAM ClientKey, learnt when a client proved it against a stored verifier. */
  rememberScramClientKey(user: string, clientKey: Buffer): void
  scramClientKey(user: string): Buffer | null
  /** TLS for clients; null when client_tls_sslmode is disable. */
  readonly clientTls: ClientTls | null
  /** TLS to servers; null when server_tls_sslmode is disable. */
  readonly serverTls: ServerTls | null
  /** auth_hba_file, parsed; null unless auth_type is hba. Rebuilt on RELOAD. */
  readonly hba: HbaFile | null
  /** With workers, client limits over all of them; null in a single process. */
  readonly clientSlots: ClientSlots | null
  /** Logged-in clients per database entry and per login user, for max_db/user_client_connections. */
  readonly clientCounts: { readonly byDb: Map<string, number>; readonly byUser: Map<string, number> }
  /** auth_user/auth_query lookups for users missing from auth_file, and the secrets they proved. */
  readonly authQuery: AuthQuery
  /** DISABLE db: new logins to these databases are refused. */
  readonly disabledDbs: ReadonlySet<string>
  /** Runs one admin console query; the reply is complete (ending in ReadyForQuery) or empty. */
  consoleQuery(sql: string, isAdmin: boolean): Promise<Buffer>
  /** A server connection could not reach or log in to a watched host: ban it for host_ban_ms. */
  hostFailed(h: WatchedHost, reason: string): void
  /** Every pause and resume of a client or server socket goes through it, so that SUSPEND can hold them. */
  readonly readGate: ReadGate
  /** True while SIGTERM/SIGINT shutdown runs: new logins are refused. */
  readonly isShuttingDown: boolean
  /** SHUTDOWN WAIT_FOR_SERVERS (SIGINT) runs: a client that asks for a server is closed instead. */
  readonly isWaitingForServers: boolean
  /** During an online restart's drain (runtime/takeover.ts): a client just gave its server back. Null otherwise. */
  readonly onClientFree: ((c: PooledClient) => void) | null
  /** SHUTDOWN WAIT_FOR_CLIENTS (SIGTERM) runs with shutdown_close_between_transactions: a client is
   *  closed as its transaction ends. */
  readonly isClosingBetweenTransactions: boolean
}
