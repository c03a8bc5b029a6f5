// SHOW SERVERS: every server connection, pool by pool (database, then user), in each pool active,
// idle, used, tested, logging in ('new'), then held back for a cancel ('being_canceled'), as
// PgBouncer lists them. Also the row and order that SHOW SOCKETS and ACTIVE_SOCKETS share, and
// the socket columns SHOW CLIENTS starts with.

import type { ServerState } from '../../pool/states.ts'
import type { ConsoleRequest } from '../request.ts'
import { columns, compare, formatTime, numericId, type ResultSet, type Row } from '../result-set.ts'
import type { ServerInfo } from '../view.ts'

export const SOCKET_COLUMNS = columns('ssssssisiTTiiississii', [
  'type', 'user', 'database', 'replication', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time',
  'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls', 'application_name',
  'prepared_statements', 'id',
])

/** A server's place within its pool: PgBouncer walks active, idle, used, tested, login, then being_canceled. */
export const SERVER_STATE_RANK: Readonly<Record<ServerState, number>> = { active: 0, idle: 1, used: 2, tested: 3, login: 4, being_canceled: 5, closed: 6 }

/** Servers in PgBouncer's order; the view's order is kept within one pool and state. */
export function sortedServers(req: ConsoleRequest): ServerInfo[] {
  return [...req.view.servers()].sort((a, b) =>
    compare(a.database, b.database) || compare(a.poolUser, b.poolUser) || SERVER_STATE_RANK[a.state] - SERVER_STATE_RANK[b.state])
}

/** SHOW SERVERS's columns for one server; `state` is the word to show. */
export function serverRow(s: ServerInfo, state: string): Row {
  return [
    'S', s.user, s.database, 'none',
    state === 'active' && s.linkedClientId === null ? 'idle' : state,
    s.host.startsWith('/') ? 'unix' : s.host, s.port,
    s.localAddr, s.localPort,
    formatTime(s.connectedAtMs), formatTime(s.readyAtMs),
    0, 0, s.closeOnRelease ? 1 : 0,
    s.id, s.linkedClientId ?? '', s.backendPid, '',
    s.applicationName, 0, numericId(s.id),
  ]
}

export function showServers(req: ConsoleRequest): ResultSet {
  // PgBouncer's words; a server logging in is 'new'.
  const rows = sortedServers(req).map((s) => serverRow(s, s.state === 'login' ? 'new' : s.state))
  return { columns: SOCKET_COLUMNS, rows }
}
