// What the admin console (SHOW CLIENTS) and the metrics read of a client connection: a plain
// snapshot, so those layers never hold a ClientConn.

import type net from 'node:net'
import type tls from 'node:tls'

export interface ClientInfo {
  id: string
  database: string
  user: string
  addr: string
  port: number
  state: string
  connectedAtMs: number
  requestAtMs: number
  linkedServerId: string | null
  applicationName: string
  /** When it started waiting for a server (ms); read only in state 'waiting'. */
  waitSinceMs?: number
  localAddr?: string
  localPort?: number
  /** TLS connection information; '' or absent without TLS. */
  tls?: string
  /** Protocol-level prepared statements the client has (transaction/statement mode, mapped by tidepool). */
  preparedStatements?: number
  /** Why the client keeps its server between transactions ('' = not pinned): LISTEN, advisory lock, ... */
  pinned?: string
}

/** What clientInfo reads of a client connection (ClientConn implements it). */
export interface ClientFacts {
  readonly id: string
  readonly database: string
  readonly user: string
  readonly socket: net.Socket
  readonly isTls: boolean
  readonly connectedAtMs: number
  readonly requestAtMs: number
  readonly server: { readonly id: string } | null
  readonly params: ReadonlyMap<string, string>
  readonly waitSinceMs: number
  readonly pinReason: string
}

/** The snapshot of `c`, in `state`, holding `preparedStatements` mapped statements. */
export function clientInfo(c: ClientFacts, state: string, preparedStatements: number): ClientInfo {
  return {
    id: c.id,
    database: c.database,
    user: c.user,
    addr: c.socket.remoteAddress ?? 'unix',
    port: c.socket.remotePort ?? 0,
    state,
    connectedAtMs: c.connectedAtMs,
    requestAtMs: c.requestAtMs,
    linkedServerId: c.server?.id ?? null,
    applicationName: c.params.get('application_name') ?? '',
    waitSinceMs: c.waitSinceMs,
    localAddr: c.socket.localAddress,
    localPort: c.socket.localPort,
    tls: c.isTls ? (c.socket as tls.TLSSocket).getProtocol?.() ?? 'TLS' : '',
    preparedStatements,
    pinned: c.pinReason,
  }
}
