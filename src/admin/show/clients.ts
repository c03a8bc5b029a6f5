// SHOW CLIENTS: every client with a pool (and console clients), by database, user, then active
// before waiting; PgBouncer's socket columns, then tidepool's `pinned`.

import type { ConsoleRequest } from '../request.ts'
import { columns, compare, formatTime, numericId, type ResultSet, type Row } from '../result-set.ts'
import type { ClientInfo } from '../view.ts'
import { SOCKET_COLUMNS } from './servers.ts'

// `pinned`: why a client keeps its server between transactions in transaction mode (LISTEN, an
// advisory lock, ...); '' when not pinned.
const CLIENT_COLUMNS = [...SOCKET_COLUMNS, ...columns('s', ['pinned'])]

const CLIENT_STATE_ORDER: Record<string, number> = { active: 0, waiting: 1 }

/** The socket columns of one client; `state` is the word to show. */
export function clientRow(c: ClientInfo, state: string, nowMs: number, preparedStatements: number): Row {
  const waitedMs = c.state === 'waiting' && c.waitSinceMs !== undefined ? Math.max(0, nowMs - c.waitSinceMs) : 0
  return [
    'C', c.user || '(nouser)', c.database || '(nodb)', 'none', state,
    c.addr, c.port, c.localAddr ?? '', c.localPort ?? 0,
    formatTime(c.connectedAtMs), formatTime(c.requestAtMs),
    Math.floor(waitedMs / 1000), Math.floor(waitedMs % 1000) * 1000,
    0, c.id, c.linkedServerId ?? '', 0, c.tls ?? '', c.applicationName, preparedStatements, numericId(c.id),
  ]
}

export function showClients(req: ConsoleRequest): ResultSet {
  const list = [...req.view.clients()].filter((c) => c.state === 'active' || c.state === 'waiting')
  list.sort((a, b) => compare(a.database, b.database) || compare(a.user, b.user) || CLIENT_STATE_ORDER[a.state] - CLIENT_STATE_ORDER[b.state])
  const rows = list.map((c) => [
    // PgBouncer: an active client without a server is idle.
    ...clientRow(c, c.state === 'active' && c.linkedServerId === null ? 'idle' : c.state, req.nowMs, c.preparedStatements ?? 0),
    c.pinned ?? '',
  ])
  return { columns: CLIENT_COLUMNS, rows }
}
