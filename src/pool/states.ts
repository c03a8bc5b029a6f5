// Connection states and the lists they live on. Only the functions here move a connection between
// lists, so a connection's `state` always names the one list it is on (a property test checks it).
//
// Client states (PgBouncer's words):
//   Login   — startup/auth in progress, or waiting for the pool's first server login; on `loginClients`
//   Active  — logged in, linked to a server or between transactions; on `activeClients`
//   Waiting — asked for a server and none was free; on `waitingClients`, FIFO by arrival
// Server states:
//   Login   — connecting or authenticating; on `loginServers`
//   Idle    — clean and ready, recently used; on `idleServers`
//   Used    — ready but idle for longer than server_check_delay: checked before reuse; on `usedServers`
//   Active  — linked to a client; on `activeServers`
//   Tested  — running server_reset_query or server_check_query; on `testedServers`
//   BeingCanceled — released by its client while a cancel request for its query is still on the way
//             to PostgreSQL: held back from reuse until every such cancel is done, so it can only
//             ever stop the query it was meant for (PgBouncer's SV_BEING_CANCELED); on `beingCanceledServers`

import { IntrusiveList, type Linked } from '../util/intrusive-list.ts'
import type { ClientFailure } from '../protocol/client-errors.ts'

export const ClientState = { Login: 'login', Active: 'active', Waiting: 'waiting', Closed: 'closed' } as const
export type ClientState = (typeof ClientState)[keyof typeof ClientState]

export const ServerState = {
  Login: 'login', Idle: 'idle', Used: 'used', Active: 'active', Tested: 'tested', BeingCanceled: 'being_canceled', Closed: 'closed',
} as const
export type ServerState = (typeof ServerState)[keyof typeof ServerState]

/** All the pool knows of a client connection. */
export interface PooledClient extends Linked<PooledClient> {
  state: ClientState
  server: PooledServer | null
  /** When the client started waiting for a server (ms); meaningful in Waiting. */
  waitSinceMs: number
  readonly connectedAtMs: number
  /** When the client last sent a request (ms): client_idle_timeout and query_timeout count from here. */
  requestAtMs: number
  /** The pool assigned `server` (already linked); the client may forward. */
  onServerAssigned(server: PooledServer): void
  /** The pool's first server logged in; a client in Login may finish its login. */
  onPoolReady(): void
  /** The pool gives up on this client: send `err` and close. */
  fail(err: ClientFailure): void
  /** query_wait_notify's notice went out during the current wait. */
  isWaitNoticeSent: boolean
  /** Sends a NoticeResponse; only between the client's requests and answers (e.g. while waiting). */
  notice(message: string): void
}

/** All the pool knows of a server connection. */
export interface PooledServer extends Linked<PooledServer> {
  state: ServerState
  client: PooledClient | null
  closeOnRelease: boolean
  connectedAtMs: number
  /** When the server last went back to the pool (ms). */
  idleSinceMs: number
  /** When the server last sent ReadyForQuery (ms): idle_transaction_timeout counts from here. */
  readyAtMs: number
  /** At ReadyForQuery(idle), owing no response and with nothing half-sent: safe to hand to another client. */
  readonly isReady: boolean
  /** Cancel requests for its queries sent to PostgreSQL whose connection has not ended yet. */
  readonly cancelsInFlight: number
  /** A cancel request for it went out and its outcome is unknown (it timed out): it may still stop a later query. */
  readonly isCancelUnsure: boolean
  /** At ReadyForQuery in a transaction (T or E), owing nothing: the client is idle in a transaction. */
  readonly isIdleInTransaction: boolean
  /** When the client's current transaction began, on the stats clock (nowUs); 0 outside one. */
  readonly transactionStartUs: number
  /** Share of server_lifetime this connection lives (1, or 0.9–1 on monitored hosts, so that
   *  connections opened together do not all retire, and rebalance, at one moment). */
  readonly lifetimeFactor: number
  /** When an idle server should retire although it is still fine (its host is no longer the one
   *  new servers go to, say a remote region's once a home host is back); 0 = never early. */
  readonly retireAtMs: number
  /** Run a query whose results nobody sees; `done(ok)` when ReadyForQuery arrives. */
  runInternal(sql: string, done: (ok: boolean) => void): void
  /** `isHostToBlame` false: tidepool retires it itself, so a login cut short is no failed login and bans no host. */
  close(reason: string, isHostToBlame?: boolean): void
}

export type { ClientFailure } from '../protocol/client-errors.ts'

export class PoolLists {
  readonly loginClients = new IntrusiveList<PooledClient>()
  readonly activeClients = new IntrusiveList<PooledClient>()
  readonly waitingClients = new IntrusiveList<PooledClient>()
  readonly loginServers = new IntrusiveList<PooledServer>()
  readonly idleServers = new IntrusiveList<PooledServer>()
  readonly usedServers = new IntrusiveList<PooledServer>()
  readonly activeServers = new IntrusiveList<PooledServer>()
  readonly testedServers = new IntrusiveList<PooledServer>()
  readonly beingCanceledServers = new IntrusiveList<PooledServer>()

  clientList(state: ClientState): IntrusiveList<PooledClient> | null {
    switch (state) {
      case ClientState.Login: return this.loginClients
      case ClientState.Active: return this.activeClients
      case ClientState.Waiting: return this.waitingClients
      default: return null
    }
  }

  serverList(state: ServerState): IntrusiveList<PooledServer> | null {
    switch (state) {
      case ServerState.Login: return this.loginServers
      case ServerState.Idle: return this.idleServers
      case ServerState.Used: return this.usedServers
      case ServerState.Active: return this.activeServers
      case ServerState.Tested: return this.testedServers
      case ServerState.BeingCanceled: return this.beingCanceledServers
      default: return null
    }
  }

  /** Moves a client to `to`; `atFront` puts it first (a server's most recent idle, LIFO reuse). */
  moveClient(c: PooledClient, to: ClientState): void {
    // A client arrives from the runtime's pre-pool login list already detached (list === null).
    const from = this.clientList(c.state)
    if (from !== null && c.list !== null) from.remove(c)
    c.state = to
    const dest = this.clientList(to)
    if (dest !== null) dest.push(c)
  }

  moveServer(s: PooledServer, to: ServerState, atFront = false): void {
    // A new server starts in Login on no list yet.
    const from = this.serverList(s.state)
    if (from !== null && s.list !== null) from.remove(s)
    s.state = to
    const dest = this.serverList(to)
    if (dest === null) return
    if (atFront) dest.unshift(s)
    else dest.push(s)
  }

  get serverCount(): number {
    return this.loginServers.size + this.idleServers.size + this.usedServers.size + this.activeServers.size + this.testedServers.size +
      this.beingCanceledServers.size
  }

  get clientCount(): number {
    return this.loginClients.size + this.activeClients.size + this.waitingClients.size
  }

  /**
   * Servers running a client's work or an internal query, or not yet back from a cancel: what
   * PAUSE and shutdown wait for.
   */
  get busyServerCount(): number {
    return this.activeServers.size + this.testedServers.size + this.beingCanceledServers.size
  }

  /** Every server on any list, copied, so the caller may close them while iterating. */
  allServers(): PooledServer[] {
    return [...this.loginServers, ...this.idleServers, ...this.usedServers, ...this.activeServers, ...this.testedServers, ...this.beingCanceledServers]
  }

  /** Every client on any list, copied, so the caller may fail them while iterating. */
  allClients(): PooledClient[] {
    return [...this.loginClients, ...this.activeClients, ...this.waitingClients]
  }
}
