// SHOW LISTS: PgBouncer's object lists and how many items each holds. tidepool keeps no free lists
// and no DNS cache: those counts are 0.

import type { ConsoleRequest } from '../request.ts'
import { columns, type ResultSet } from '../result-set.ts'
import type { PoolRow } from '../../pool/control.ts'
import { showDatabases } from './databases.ts'
import { showUsers } from './users.ts'

const LISTS_COLUMNS = columns('si', ['list', 'items'])

/** Server connections on any pool's list (what PgBouncer calls used servers). */
export function serverTotal(pools: readonly PoolRow[]): number {
  let n = 0
  for (const { counts: k } of pools) n += k.sv_active + k.sv_idle + k.sv_used + k.sv_tested + k.sv_login + k.sv_being_canceled
  return n
}

export function showLists(req: ConsoleRequest): ResultSet {
  const pools = req.view.pools(req.nowMs)
  let clients = 0
  let loginClients = 0
  for (const c of req.view.clients()) {
    clients++
    if (c.state === 'login') loginClients++
  }
  const items: Array<[string, number]> = [
    ['databases', showDatabases(req).rows.length], ['users', showUsers(req).rows.length], ['peers', req.view.peers().length],
    // The console's own pool counts too, as in PgBouncer.
    ['pools', pools.length + 1], ['peer_pools', req.view.peerPools().length],
    ['free_clients', 0], ['used_clients', clients], ['login_clients', loginClients], ['free_servers', 0],
    ['used_servers', serverTotal(pools)], ['dns_names', 0], ['dns_zones', 0], ['dns_queries', 0], ['dns_pending', 0],
  ]
  return { columns: LISTS_COLUMNS, rows: items }
}
