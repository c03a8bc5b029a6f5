// SHOW DNS_HOSTS and DNS_ZONES. tidepool keeps no DNS cache: every server connection asks the OS
// resolver, so no zones are watched (dns_zone_check_period is not applied) and no TTL runs.

import { isIP } from 'node:net'
import type { ConsoleRequest } from '../request.ts'
import { columns, compare, type ResultSet } from '../result-set.ts'

const DNS_HOSTS_COLUMNS = columns('sqs', ['hostname', 'ttl', 'addrs'])
const DNS_ZONES_COLUMNS = columns('sqi', ['zonename', 'serial', 'count'])

/**
 * One row per host name (not an IP address, not a unix socket directory) in [databases], sorted,
 * ttl 0, with the addresses its live server connections resolved to ('' when it has none now).
 */
export function showDnsHosts(req: ConsoleRequest): ResultSet {
  const names = new Set<string>()
  for (const e of req.view.config().databases.values()) {
    for (const h of e.hosts) if (!h.startsWith('/') && isIP(h) === 0) names.add(h)
  }
  const facts = req.view.sockets()
  const addrs = new Map<string, Set<string>>()
  for (const s of req.view.servers()) {
    const addr = facts.get(s.id)?.remoteAddr
    if (addr === undefined || addr === '' || !names.has(s.host)) continue
    let set = addrs.get(s.host)
    if (set === undefined) addrs.set(s.host, set = new Set())
    set.add(addr)
  }
  const rows = [...names].sort(compare).map((h) => [h, 0, [...(addrs.get(h) ?? [])].sort(compare).join(',')])
  return { columns: DNS_HOSTS_COLUMNS, rows }
}

export function showDnsZones(): ResultSet {
  return { columns: DNS_ZONES_COLUMNS, rows: [] }
}
