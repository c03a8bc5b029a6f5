// Which settings a fleet shares and which stay each node's own. With `tidepool fleet push`, the
// pushed file's [databases], [users] and fleet-wide settings are stored in etcd and every node puts
// them in force; node-local settings always come from the node's own ini.
// Node-local: every setting RELOAD cannot apply (listen address and port, unix socket, workers,
// HTTP listener, fleet_* and node_*, ...: they need a restart, so pushing them could not take
// effect), and the live ones that name files on the node's disk (logfile, auth_file, hba/ident
// files, TLS keys and certificates), its identity (peer_id, conffile) and who may reach its HTTP
// API (http_token, http_allowed_hosts).
// Must not: read anything; it is the rule, applied to the settings table.

import { findSetting, type AnySettingRow } from './settings.ts'

const NODE_LOCAL_LIVE: ReadonlySet<string> = new Set([
  'logfile', 'conffile', 'peer_id',
  'auth_file', 'auth_hba_file', 'auth_ident_file',
  'client_tls_key_file', 'client_tls_cert_file', 'client_tls_ca_file',
  'server_tls_ca_file', 'server_tls_key_file', 'server_tls_cert_file',
  'http_token', 'http_allowed_hosts',
])

export function isFleetWide(row: AnySettingRow): boolean {
  return row.apply === 'live' && !NODE_LOCAL_LIVE.has(row.name)
}

/** A key of [pgbouncer] or [tidepool] a shared config may carry: a known, fleet-wide setting. */
export function isFleetWideKey(key: string): boolean {
  const row = findSetting(key)
  return row !== undefined && isFleetWide(row)
}
