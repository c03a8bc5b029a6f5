// What the admin console (SHOW SERVERS, SOCKETS, FDS, DNS_HOSTS) reads of a server connection: a
// plain snapshot with every field filled, so that layer never holds a ServerConn nor walks a
// pool's lists. ServerConn.info() makes it; client-info.ts is its counterpart for clients.

import type { ServerState } from '../pool/states.ts'

export interface ServerInfo {
  id: string
  /** The pool it belongs to is (database, poolUser): SHOW lists servers pool by pool. */
  database: string
  poolUser: string
  /** The role it logged in as: the entry's user= (force_user), else the pool's user. */
  user: string
  /** As configured: a host name, an IP address, or a unix socket directory ('/...'). */
  host: string
  port: number
  /** The list it is on in its pool. */
  state: ServerState
  linkedClientId: string | null
  /** The linked client's application_name; '' without a client. */
  applicationName: string
  connectedAtMs: number
  /** When it last sent ReadyForQuery (ms). */
  readyAtMs: number
  /** RECONNECT, RELOAD or a role change marked it: it closes when released instead of going back. */
  closeOnRelease: boolean
  /** PostgreSQL's process id (BackendKeyData); 0 before login finishes. */
  backendPid: number
  /** Our end of the connection; '' and 0 once the socket is gone. */
  localAddr: string
  localPort: number
}
