// SHOW HOSTS (tidepool's own): every monitored backend host with its role, health, whether the
// role sources agree, check latency, live server connections, ban and last error, and the
// database entries that use it, and its region (host_regions; appended last so that scripts
// reading the earlier columns by position keep working).

import type { ConsoleRequest } from '../request.ts'
import { columns, isoTime, type ResultSet } from '../result-set.ts'

const HOSTS_COLUMNS = columns('sisssssNissss', ['host', 'port', 'backend', 'role', 'health', 'role_sources_agree', 'last_change', 'check_ms', 'servers', 'banned_until', 'last_error', 'databases', 'region'])

export function showHosts(req: ConsoleRequest): ResultSet {
  return {
    columns: HOSTS_COLUMNS,
    rows: req.view.hosts().map(({ host: h, databases }) => [
      h.host, h.port, h.kind, h.role, h.health(req.nowMs), h.isConflicted ? 'no' : 'yes', isoTime(h.lastChangeMs),
      Math.round(h.checkLatencyMs * 10) / 10, h.servers, h.bannedUntilMs > req.nowMs ? isoTime(h.bannedUntilMs) : null,
      h.lastError, databases.join(','), h.region === '' ? null : h.region,
    ]),
  }
}
