// SHOW USERS: [users] entries, auth_file users, users with a pool, and PgBouncer's own user, with
// their overrides, limits and counts.

import { userClientLimit, userServerLimit } from '../../config/effective.ts'
import { ADMIN_USER, type ConsoleRequest } from '../request.ts'
import { columns, compare, type ResultSet, type Row } from '../result-set.ts'

const USERS_COLUMNS = columns('ssssiiii', [
  'name', 'pool_size', 'reserve_pool_size', 'pool_mode', 'max_user_connections', 'current_connections',
  'max_user_client_connections', 'current_client_connections',
])

export function showUsers(req: ConsoleRequest): ResultSet {
  const cfg = req.view.config()
  const names = new Set<string>([ADMIN_USER, ...cfg.users.keys(), ...cfg.userlist.keys()])
  const serverCounts = new Map<string, number>()
  for (const p of req.view.pools(req.nowMs)) {
    names.add(p.user)
    serverCounts.set(p.user, p.userServers)
  }
  const clientCounts = new Map<string, number>()
  for (const c of req.view.clients()) {
    if (c.state !== 'login') clientCounts.set(c.user, (clientCounts.get(c.user) ?? 0) + 1)
  }
  const rows: Row[] = [...names].sort(compare).map((name) => {
    const u = cfg.users.get(name)
    return [
      name,
      // PgBouncer sends these two as text, '' when the user has no override.
      u?.pool_size != null ? String(u.pool_size) : '',
      u?.reserve_pool_size != null ? String(u.reserve_pool_size) : '',
      u?.pool_mode ?? null,
      userServerLimit(cfg, name),
      serverCounts.get(name) ?? 0,
      userClientLimit(cfg, name),
      clientCounts.get(name) ?? 0,
    ]
  })
  return { columns: USERS_COLUMNS, rows }
}
