// What the admin console (SHOW CLIENTS) and the metrics read of a client connection: a plain
// snapshot, so those layers never hold a ClientConn.

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
