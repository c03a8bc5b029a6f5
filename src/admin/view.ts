// The ConsoleView: everything the admin console may read and ask of the running pooler. Runtime
// implements it; the unit tests fake it; with workers, workers/cluster-view.ts answers it for all
// of them (a command may then be asynchronous: it is answered once every worker acknowledged it).
// What it reads is plain data (pool rows, ClientInfo,
// ServerInfo, SocketFacts), never a live Pool or connection, so the console cannot walk or change
// a pool's lists, and the same view could be answered from another process.
// Must not: import the runtime, or hand out objects whose methods change state.

import type { Config } from '../config/types.ts'
import type { PoolRow } from '../pool/control.ts'
import type { PoolStats, StatsAverages } from '../pool/stats.ts'
import type { ClientInfo } from '../proxy/client-info.ts'
import type { ServerInfo } from '../proxy/server-info.ts'
import type { Host } from '../ha/hosts.ts'
import type { SwitchoverReport } from '../ha/switchover.ts'
import type { FleetNodeRow } from '../ha/fleet/member.ts'
import type { PeerPoolRow, PeerRow } from '../proxy/peer-pools.ts'
import type { FleetCommandResult, FleetSwitchoverResult, FleetOp } from '../ha/fleet/commands.ts'

export type { ClientInfo, ServerInfo, PeerPoolRow, PeerRow }

/** How Runtime.shutdown names its modes: SHUTDOWN, SHUTDOWN WAIT_FOR_SERVERS, SHUTDOWN WAIT_FOR_CLIENTS. */
export type ShutdownMode = 'immediate' | 'transactions' | 'clients'

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

/** What the console may read and ask; Runtime implements it. */
export interface ConsoleView {
  /** Per database, sorted by name: totals since start and averages of the last stats_period. */
  stats(): Array<{ database: string; totals: PoolStats; averages: StatsAverages }>
  /** Every pool, in any order; counts as of `nowMs`. */
  pools(nowMs: number): PoolRow[]
  /**
   * Every client connection, console clients included (database 'pgbouncer'). `state` is 'login'
   * while the client has no pool yet (startup, auth), 'waiting' while it waits for a server or for
   * its pool's first server login, 'active' otherwise.
   */
  clients(): Iterable<ClientInfo>
  /** Every server connection on a pool's list (login, idle, used, active, tested), in any order. */
  servers(): Iterable<ServerInfo>
  config(): Config
  /** SHOW VERSION's value, e.g. 'tidepool 0.1.0'. */
  version: string
  /**
   * PAUSE (db null: every database) or PAUSE db. isPaused must say true as soon as this is called;
   * the returned promise, if any, resolves once no server of the paused database(s) is active, and
   * the console sends CommandComplete only then, as PgBouncer does.
   */
  pause(db: string | null): void | Promise<void>
  resume(db: string | null): void | Promise<void>
  /** null: is the pooler as a whole paused (PAUSE without a name); a name: is that database paused. */
  isPaused(db: string | null): boolean
  reload(): Promise<{ ok: boolean; errors: string[] }>
  /** Starts the shutdown; must not wait for it. */
  shutdown(mode: ShutdownMode): void
  /** True once a shutdown has begun: RESUME is refused then. */
  readonly isShuttingDown: boolean
  /** RECONNECT: close every server of the database(s) once released. */
  reconnect(db: string | null): void | Promise<void>
  /** WAIT_CLOSE: resolves once no server marked by RECONNECT or RELOAD remains. */
  waitClose(db: string | null): Promise<void>
  /** DISABLE/ENABLE: refuse or allow new logins to the database. */
  setDisabled(db: string, isDisabled: boolean): void | Promise<void>
  isDisabled(db: string): boolean
  /** KILL: drop every client and server of the database (of every database with null) now; new clients wait until RESUME db. */
  kill(db: string | null): void | Promise<void>
  /** KILL_CLIENT: false when no client has that numeric id. */
  killClient(id: number): boolean | Promise<boolean>
  /**
   * SUSPEND: stop accepting and stop reading every socket but the console's; resolves once their
   * pending output is flushed (or suspend_timeout closed the ones that would not flush).
   */
  suspend(): Promise<void>
  readonly isSuspended: boolean
  /** Some database is paused (PAUSE db, KILL db): SUSPEND is refused then, as in PgBouncer. */
  hasPausedDatabases(): boolean
  /** SET key = value: applied as a RELOAD applies a changed file, or refused with the reason. */
  set(key: string, value: string): SetOutcome | Promise<SetOutcome>
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
  /** SHOW FLEET: the nodes of this node's fleet, this one first; [] without fleet_etcd. */
  fleet(): FleetNodeRow[]
  /** SHOW PEERS: [peers] and the fleet's peers, by id. */
  peers(): PeerRow[]
  /** SHOW PEER_POOLS: cancel requests on their way to each peer, by id (with workers, summed over them). */
  peerPools(): PeerPoolRow[]
  /**
   * FLEET <op> [db]: run by every live node of the fleet; resolves with each node's answer and the
   * nodes that gave none by the deadline. Rejects, with the console's text, when it cannot start
   * (no fleet, etcd unreachable, a bad database name).
   */
  fleetCommand(op: FleetOp, db: string | null): Promise<FleetCommandResult>
  /**
   * FLEET SWITCHOVER db [TO host] [TIMEOUT s]: every live node holds, this one promotes, all
   * retarget and release; resolves with each node's answer. Rejects when it cannot start.
   */
  fleetSwitchover(db: string, to: string | null, timeoutMs: number | null): Promise<FleetSwitchoverResult>
}
