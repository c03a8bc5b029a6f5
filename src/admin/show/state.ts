// SHOW VERSION and SHOW STATE (is the pooler paused or suspended), and SHOW PEERS / PEER_POOLS
// (PgBouncer's columns): the peers cancel requests are forwarded to, and what is on its way to each.

import type { ConsoleRequest } from '../request.ts'
import { columns, type ResultSet } from '../result-set.ts'

const VERSION_COLUMNS = columns('s', ['version'])
const STATE_COLUMNS = columns('ss', ['key', 'value'])
const PEERS_COLUMNS = columns('isii', ['peer_id', 'host', 'port', 'pool_size'])
const PEER_POOLS_COLUMNS = columns('iiiii', ['peer_id', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active_cancel', 'sv_login'])

export function showVersion(req: ConsoleRequest): ResultSet {
  return { columns: VERSION_COLUMNS, rows: [[req.view.version]] }
}

export function showState(req: ConsoleRequest): ResultSet {
  const isPaused = req.view.isPaused(null)
  const isSuspended = req.view.isSuspended
  return {
    columns: STATE_COLUMNS,
    rows: [['active', isPaused || isSuspended ? 'no' : 'yes'], ['paused', isPaused ? 'yes' : 'no'], ['suspended', isSuspended ? 'yes' : 'no']],
  }
}

export function showPeers(req: ConsoleRequest): ResultSet {
  return { columns: PEERS_COLUMNS, rows: req.view.peers().map((p) => [p.peer_id, p.host, p.port, p.pool_size]) }
}

export function showPeerPools(req: ConsoleRequest): ResultSet {
  return {
    columns: PEER_POOLS_COLUMNS,
    rows: req.view.peerPools().map((p) => [p.peer_id, p.cl_active_cancel_req, p.cl_waiting_cancel_req, p.sv_active_cancel, p.sv_login]),
  }
}
