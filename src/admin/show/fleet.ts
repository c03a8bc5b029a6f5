// SHOW FLEET (tidepool's own): one row a node of this node's fleet (fleet_etcd), this node first:
// what each wrote in etcd at its last heartbeat, and its state as this node sees it (up; etcd
// unreachable for this node when cut off from etcd; unknown for the others then). last_heartbeat is
// NULL for a node that never reached etcd. budget_share: the node's shares of the fleet's connection
// budget summed over pools, as this node last read them (NULL without fleet_budget). No rows without a fleet.

import type { ConsoleRequest } from '../request.ts'
import { columns, isoTime, type ResultSet } from '../result-set.ts'

const FLEET_COLUMNS = columns('ssssssiiNsi', ['name', 'region', 'address', 'state', 'version', 'config_version', 'clients', 'servers', 'tps', 'last_heartbeat', 'budget_share'])

export function showFleet(req: ConsoleRequest): ResultSet {
  return {
    columns: FLEET_COLUMNS,
    rows: req.view.fleet().map((n) => [n.name, n.region, n.address, n.state, n.version, n.config_version, n.clients, n.servers, n.tps, n.heartbeat_ms > 0 ? isoTime(n.heartbeat_ms) : null, n.budget_share]),
  }
}
