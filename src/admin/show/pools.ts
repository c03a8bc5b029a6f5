// SHOW POOLS: one row per pool (database, user) with its list sizes, in PgBouncer 1.25's columns,
// plus the console's own pool (pgbouncer/pgbouncer, statement mode) in its sorted place.

import { entryFor } from '../../config/effective.ts'
import { ADMIN_DB, ADMIN_USER, type ConsoleRequest } from '../request.ts'
import { columns, compare, insertSorted, type ResultSet, type Row } from '../result-set.ts'
import type { PoolRow } from '../../pool/control.ts'
import { loadBalanceHosts } from './databases.ts'

const POOLS_COLUMNS = columns('ssiiiiiiiiiiiiiss', [
  'database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active',
  'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us',
  'pool_mode', 'load_balance_hosts',
])

/** Pools in PgBouncer's order: database, then user. */
export function sortedPools(req: ConsoleRequest): PoolRow[] {
  return [...req.view.pools(req.nowMs)].sort((a, b) => compare(a.database, b.database) || compare(a.user, b.user))
}

export function showPools(req: ConsoleRequest): ResultSet {
  const cfg = req.view.config()
  const rows: Row[] = []
  let consoleClients = 0
  for (const c of req.view.clients()) if (c.database === ADMIN_DB && c.state !== 'login') consoleClients++
  const adminRow = [ADMIN_DB, ADMIN_USER, consoleClients, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'statement', null]
  for (const p of sortedPools(req)) {
    const k = p.counts
    rows.push([
      p.database, p.user,
      k.cl_active, k.cl_waiting,
      0, 0,
      k.sv_active,
      0, k.sv_being_canceled,
      k.sv_idle, k.sv_used, k.sv_tested, k.sv_login,
      Math.floor(k.maxwait_ms / 1000), Math.floor(k.maxwait_ms % 1000) * 1000,
      p.pool_mode,
      loadBalanceHosts(entryFor(cfg, p.database)),
    ])
  }
  insertSorted(rows, adminRow)
  return { columns: POOLS_COLUMNS, rows }
}
