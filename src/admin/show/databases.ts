// SHOW DATABASES: every configured entry (not '*' itself), names made on demand through '*' that
// have a pool now, and PgBouncer's own admin database, with the settings in force and the counts.

import { dbClientLimit, dbServerLimit, entryFor, poolSettings } from '../../config/effective.ts'
import type { DatabaseEntry } from '../../config/types.ts'
import { ADMIN_DB, ADMIN_USER, type ConsoleRequest } from '../request.ts'
import { columns, compare, insertSorted, type ResultSet, type Row } from '../result-set.ts'

// After PgBouncer 1.25's columns, 'reserve_pool': the name before 1.24 renamed it, which Debian
// 12's prometheus-pgbouncer-exporter (1.7) still reads. Appended, so positions stay 1.25's.
const DATABASES_COLUMNS = columns('ssissiiiissiiiiiii', [
  'name', 'host', 'port', 'database', 'force_user', 'pool_size', 'min_pool_size', 'reserve_pool_size', 'server_lifetime',
  'pool_mode', 'load_balance_hosts', 'max_connections', 'current_connections', 'max_client_connections',
  'current_client_connections', 'paused', 'disabled', 'reserve_pool',
])

/** PgBouncer shows load_balance_hosts only when the entry has several hosts. */
export function loadBalanceHosts(entry: DatabaseEntry | undefined): string | null {
  if (entry === undefined || entry.hosts.length < 2) return null
  return entry.load_balance_hosts ?? 'round-robin'
}

export function showDatabases(req: ConsoleRequest): ResultSet {
  const cfg = req.view.config()
  const s = cfg.settings
  // Configured entries, plus names made on demand from '*' that have a pool now.
  const names = new Set<string>()
  for (const name of cfg.databases.keys()) if (name !== '*') names.add(name)
  const serverCounts = new Map<string, number>()
  for (const p of req.view.pools(req.nowMs)) {
    if (cfg.databases.has(p.database) || cfg.databases.has('*')) names.add(p.database)
    serverCounts.set(p.database, p.databaseServers)
  }
  const clientCounts = new Map<string, number>()
  for (const c of req.view.clients()) {
    if (c.state !== 'login') clientCounts.set(c.database, (clientCounts.get(c.database) ?? 0) + 1)
  }
  const rows: Row[] = []
  for (const name of [...names].sort(compare)) {
    const e = entryFor(cfg, name) as DatabaseEntry
    const ps = poolSettings(cfg, e, null)
    rows.push([
      name,
      e.hosts.length > 0 ? e.hosts.join(',') : null,
      e.ports[0] ?? 5432,
      e.dbname ?? name,
      e.user,
      ps.pool_size,
      ps.min_pool_size,
      ps.reserve_pool_size,
      Math.trunc(ps.server_lifetime),
      e.pool_mode,
      loadBalanceHosts(e),
      dbServerLimit(cfg, e),
      serverCounts.get(name) ?? 0,
      dbClientLimit(cfg, e),
      clientCounts.get(name) ?? 0,
      req.view.isPaused(name) ? 1 : 0,
      req.view.isDisabled(name) ? 1 : 0,
      ps.reserve_pool_size,
    ])
  }
  // PgBouncer's admin database: listen_port, forced user pgbouncer, 2 servers, statement mode.
  insertSorted(rows, [
    ADMIN_DB, null, s.listen_port, ADMIN_DB, ADMIN_USER, 2, s.min_pool_size, s.reserve_pool_size, Math.trunc(s.server_lifetime),
    'statement', null, s.max_db_connections, 0, s.max_db_client_connections, clientCounts.get(ADMIN_DB) ?? 0, 0, 0, s.reserve_pool_size,
  ])
  return { columns: DATABASES_COLUMNS, rows }
}
