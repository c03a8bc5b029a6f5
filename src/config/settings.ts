// The table of every [pgbouncer] and [tidepool] setting: one row gives the name, section, value
// type, default (as text, the way pgbouncer.ini would spell it), whether RELOAD applies it, and a
// one-line description. The loader parses with it, SHOW CONFIG renders with it, and
// scripts/gen-config-doc.ts writes docs/config.md from it, so the three cannot disagree.
// Invariants: one row per field of `Settings`, and every row's default parses with its own type
// (config-load.test.ts checks both). Rows of the pgbouncer section follow the order of PgBouncer
// 1.25's doc/config.md; names, defaults and reload behaviour are PgBouncer's.
// Must not: read files or the environment, or keep state; this module is data plus pure parsers.

import { bool, int, list, millis, octal, oneOf, requireAuth, seconds, str, workerCount, type SettingType, type SettingValue } from './setting-types.ts'

export type { SettingValue } from './setting-types.ts'
export type PoolMode = 'session' | 'transaction' | 'statement'
export type AuthType = 'trust' | 'any' | 'plain' | 'md5' | 'scram-sha-256' | 'cert' | 'hba' | 'pam' | 'ldap'
export type TlsMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full'
export type LogFormat = 'text' | 'json'
/** What a session-pooled client's session state means once its server is shared (tidepool). */
export type SessionStatePolicy = 'pin' | 'error'
export type SessionStateProbe = 'auto' | 'always'

/** Every setting by its pgbouncer.ini name. Seconds stay seconds (floats allowed); `_ms` keys are ms. */
export interface Settings {
  // -- generic
  logfile: string
  pidfile: string
  /** Comma-separated as written; `*` means every address; empty means no TCP listener. */
  listen_addr: string
  listen_port: number
  unix_socket_dir: string
  unix_socket_mode: number
  unix_socket_group: string
  user: string
  pool_mode: PoolMode
  max_client_conn: number
  default_pool_size: number
  min_pool_size: number
  reserve_pool_size: number
  reserve_pool_timeout: number
  max_db_connections: number
  max_db_client_connections: number
  max_user_connections: number
  max_user_client_connections: number
  server_round_robin: boolean
  track_extra_parameters: readonly string[]
  ignore_startup_parameters: readonly string[]
  peer_id: number
  disable_pqexec: boolean
  application_name_add_host: boolean
  conffile: string
  service_name: string
  job_name: string
  stats_period: number
  max_prepared_statements: number
  scram_iterations: number
  // -- authentication
  auth_type: AuthType
  auth_hba_file: string
  auth_ident_file: string
  auth_file: string
  auth_user: string
  auth_query: string
  auth_dbname: string
  auth_ldap_options: string
  // -- log
  syslog: boolean
  syslog_ident: string
  syslog_facility: string
  log_connections: boolean
  log_disconnections: boolean
  log_pooler_errors: boolean
  log_stats: boolean
  verbose: number
  // -- console access
  admin_users: readonly string[]
  stats_users: readonly string[]
  // -- connection sanity checks, timeouts
  server_reset_query: string
  server_reset_query_always: boolean
  server_check_delay: number
  /** '' disables the check; PgBouncer 1.25's '<empty>' means an empty query (serverCheckQuerySql). */
  server_check_query: string
  server_fast_close: boolean
  server_lifetime: number
  server_idle_timeout: number
  server_connect_timeout: number
  server_login_retry: number
  client_login_timeout: number
  autodb_idle_timeout: number
  dns_max_ttl: number
  dns_nxdomain_ttl: number
  dns_zone_check_period: number
  resolv_conf: string
  query_wait_notify: number
  // -- TLS
  client_tls_sslmode: TlsMode
  client_tls_key_file: string
  client_tls_cert_file: string
  client_tls_ca_file: string
  client_tls_protocols: string
  client_tls_ciphers: string
  client_tls13_ciphers: string
  client_tls_ecdhcurve: string
  client_tls_dheparams: string
  server_tls_sslmode: TlsMode
  server_tls_ca_file: string
  server_tls_key_file: string
  server_tls_cert_file: string
  server_tls_protocols: string
  server_tls_ciphers: string
  server_tls13_ciphers: string
  // -- dangerous timeouts
  query_timeout: number
  query_wait_timeout: number
  cancel_wait_timeout: number
  client_idle_timeout: number
  idle_transaction_timeout: number
  transaction_timeout: number
  suspend_timeout: number
  // -- low-level network
  pkt_buf: number
  max_packet_size: number
  listen_backlog: number
  sbuf_loopcnt: number
  so_reuseport: boolean
  tcp_defer_accept: boolean
  tcp_socket_buffer: number
  tcp_keepalive: boolean
  tcp_keepcnt: number
  tcp_keepidle: number
  tcp_keepintvl: number
  tcp_user_timeout: number
  // -- [tidepool]
  /** Worker processes; 0 = auto (one per CPU). */
  workers: number
  log_format: LogFormat
  http_listen_addr: string
  http_listen_port: number
  http_token: string
  http_allowed_hosts: readonly string[]
  janitor_interval_ms: number
  pause_timeout_ms: number
  shutdown_close_between_transactions: boolean
  session_state_policy: SessionStatePolicy
  session_state_probe: SessionStateProbe
  auth_query_cache_ttl_ms: number
  max_login_clients: number
  health_check_interval_ms: number
  health_check_timeout_ms: number
  health_check_rise: number
  health_check_fall: number
  host_ban_ms: number
  region_failback_ms: number
  /** Methods a server may ask tidepool to log in with (libpq's require_auth); [] = any. */
  server_require_auth: readonly string[]
  server_scram_max_iterations: number
  // -- [tidepool] fleet (etcd)
  /** etcd endpoints as written; [] = no fleet (docs/architecture.md, Fleet). */
  fleet_etcd: readonly string[]
  fleet_etcd_user: string
  fleet_etcd_password: string
  fleet_etcd_ca_file: string
  fleet_etcd_cert_file: string
  fleet_etcd_key_file: string
  fleet_name: string
  /** '' = the host name. */
  node_name: string
  node_region: string
  node_advertise: string
  fleet_lease_ttl: number
  fleet_command_timeout_ms: number
  /** Pool sizes are the fleet's totals, shared out through etcd (docs/architecture.md, Fleet: connection budget). */
  fleet_budget: boolean
  fleet_budget_floor: number
}

export type SettingName = keyof Settings
export type SettingSection = 'pgbouncer' | 'tidepool'
/** live: RELOAD applies it; restart: a new value waits for the next start (PgBouncer's CF_NO_RELOAD). */
export type ApplyKind = 'live' | 'restart'

export interface SettingRow<K extends SettingName = SettingName> {
  readonly name: K
  readonly section: SettingSection
  /** The heading it sits under in PgBouncer's docs (and ours). */
  readonly group: string
  readonly type: SettingType<Settings[K]>
  /** As pgbouncer.ini would spell it; '' is PgBouncer's "not set". */
  readonly default: string
  readonly apply: ApplyKind
  readonly doc: string
  /** Never shown in SHOW CONFIG or logs. */
  readonly isSecret: boolean
  /** Setting this key also sets that one (PgBouncer's service_name is an alias of job_name). */
  readonly aliasOf: SettingName | null
}

/** Any row, with `name` and `type` still tied together. */
export type AnySettingRow = { [K in SettingName]: SettingRow<K> }[SettingName]

// ---- the table ----

interface RowInput<K extends SettingName> {
  name: K
  section?: SettingSection
  group: string
  type: SettingType<Settings[K]>
  default: string
  apply: ApplyKind
  doc: string
  isSecret?: boolean
  aliasOf?: SettingName
}

function setting<K extends SettingName>(r: RowInput<K>): SettingRow<K> {
  return Object.freeze({
    name: r.name,
    section: r.section ?? 'pgbouncer',
    group: r.group,
    type: r.type,
    default: r.default,
    apply: r.apply,
    doc: r.doc,
    isSecret: r.isSecret ?? false,
    aliasOf: r.aliasOf ?? null,
  })
}

const POOL_MODES = ['session', 'transaction', 'statement'] as const
const AUTH_TYPES = ['trust', 'any', 'plain', 'md5', 'scram-sha-256', 'cert', 'hba', 'pam', 'ldap'] as const
const TLS_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const

const G = {
  generic: 'Generic settings',
  auth: 'Authentication settings',
  log: 'Log settings',
  console: 'Console access control',
  sanity: 'Connection sanity checks, timeouts',
  tls: 'TLS settings',
  dangerous: 'Dangerous timeouts',
  network: 'Low-level network settings',
  tidepool: 'tidepool',
} as const

export const SETTINGS: readonly AnySettingRow[] = Object.freeze([
  // ---- generic
  setting({ name: 'logfile', group: G.generic, type: str(), default: '', apply: 'live',
    doc: 'File that log lines are appended to, besides stderr; empty means stderr only' }),
  setting({ name: 'pidfile', group: G.generic, type: str(), default: '', apply: 'restart',
    doc: 'File that receives the process id at start and is removed at exit' }),
  setting({ name: 'listen_addr', group: G.generic, type: str(), default: '', apply: 'restart',
    doc: 'Comma-separated TCP addresses to accept clients on; * for all, empty for unix socket only' }),
  setting({ name: 'listen_port', group: G.generic, type: int({ max: 65535 }), default: '6432', apply: 'restart',
    doc: 'Port for the TCP listeners and the number in the unix socket file name' }),
  setting({ name: 'unix_socket_dir', group: G.generic, type: str(), default: '/tmp', apply: 'restart',
    doc: 'Directory of the listening unix socket and default for servers without host=; empty disables it' }),
  setting({ name: 'unix_socket_mode', group: G.generic, type: octal(), default: '0777', apply: 'restart',
    doc: 'Permission bits given to the listening unix socket file' }),
  setting({ name: 'unix_socket_group', group: G.generic, type: str(), default: '', apply: 'restart',
    doc: 'Group that owns the listening unix socket file' }),
  setting({ name: 'user', group: G.generic, type: str(), default: '', apply: 'restart',
    doc: 'Unix user to switch to after start (only when started as root)' }),
  setting({ name: 'pool_mode', group: G.generic, type: oneOf(POOL_MODES), default: 'session', apply: 'live',
    doc: 'When a server goes back to the pool: at client exit, transaction end, or statement end' }),
  setting({ name: 'max_client_conn', group: G.generic, type: int(), default: '100', apply: 'live',
    doc: 'Most client connections open at once; more are refused. Connections still logging in count too, a silent one until client_login_timeout closes it (see max_login_clients)' }),
  setting({ name: 'default_pool_size', group: G.generic, type: int(), default: '20', apply: 'live',
    doc: 'Most server connections per (database, user) pool unless pool_size overrides it' }),
  setting({ name: 'min_pool_size', group: G.generic, type: int(), default: '0', apply: 'live',
    doc: 'Server connections kept open per pool even when idle (capped at the pool size) while it has clients, and always for an entry with user= (opened at start, as PgBouncer 1.21+); none while paused; 0 disables' }),
  setting({ name: 'reserve_pool_size', group: G.generic, type: int(), default: '0', apply: 'live',
    doc: 'Extra server connections a pool may open for clients that waited reserve_pool_timeout' }),
  setting({ name: 'reserve_pool_timeout', group: G.generic, type: seconds(), default: '5', apply: 'live',
    doc: 'How long a client waits before the reserve pool may serve it; 0 disables' }),
  setting({ name: 'max_db_connections', group: G.generic, type: int(), default: '0', apply: 'live',
    doc: 'Most server connections per database over all its users; 0 means no limit' }),
  setting({ name: 'max_db_client_connections', group: G.generic, type: int(), default: '0', apply: 'live',
    doc: 'Most client connections per database over all users (the admin console counts as database pgbouncer; admin_users are never refused); 0 means no limit' }),
  setting({ name: 'max_user_connections', group: G.generic, type: int(), default: '0', apply: 'live',
    doc: 'Most server connections per user over all databases; 0 means no limit' }),
  setting({ name: 'max_user_client_connections', group: G.generic, type: int(), default: '0', apply: 'live',
    doc: 'Most client connections per user over all databases, admin console included (admin_users are never refused); 0 means no limit' }),
  setting({ name: 'server_round_robin', group: G.generic, type: bool(), default: '0', apply: 'live',
    doc: 'Hand out idle servers in turn (FIFO) instead of reusing the most recent one (LIFO)' }),
  setting({ name: 'track_extra_parameters', group: G.generic, type: list(), default: 'IntervalStyle', apply: 'restart',
    doc: 'Reported parameters to keep per client and restore on its server, beyond the built-in ones' }),
  setting({ name: 'ignore_startup_parameters', group: G.generic, type: list(), default: '', apply: 'live',
    doc: 'Startup parameters to accept and drop instead of refusing the login; `options` also drops every untracked setting inside the options parameter' }),
  setting({ name: 'peer_id', group: G.generic, type: int({ max: 16383 }), default: '0', apply: 'live',
    doc: 'This process\'s id among peered poolers that forward cancel requests ([peers]); 0 disables peering, or with fleet_etcd takes an id from the fleet' }),
  setting({ name: 'disable_pqexec', group: G.generic, type: bool(), default: '0', apply: 'restart',
    doc: 'Refuse the simple query protocol, leaving only the extended protocol' }),
  setting({ name: 'application_name_add_host', group: G.generic, type: bool(), default: '0', apply: 'live',
    doc: 'Append the client address and port to application_name at login' }),
  setting({ name: 'conffile', group: G.generic, type: str(), default: '', apply: 'live',
    doc: 'The configuration file in use; changing it makes the next RELOAD read another file' }),
  setting({ name: 'service_name', group: G.generic, type: str(), default: 'pgbouncer', apply: 'restart', aliasOf: 'job_name',
    doc: 'Another name for job_name (PgBouncer uses it for Windows service registration)' }),
  setting({ name: 'job_name', group: G.generic, type: str(), default: 'pgbouncer', apply: 'restart',
    doc: 'Name of this pooler instance as a service' }),
  setting({ name: 'stats_period', group: G.generic, type: int({ min: 1 }), default: '60', apply: 'live',
    doc: 'Seconds between refreshes of the averages in SHOW STATS and the stats log line' }),
  setting({ name: 'max_prepared_statements', group: G.generic, type: int(), default: '200', apply: 'live',
    doc: 'Protocol-level prepared statements tracked per server connection in transaction/statement mode; 0 disables' }),
  setting({ name: 'scram_iterations', group: G.generic, type: int({ min: 1 }), default: '4096', apply: 'live',
    doc: 'Iteration count used when tidepool computes a SCRAM-SHA-256 secret' }),
  // ---- authentication
  setting({ name: 'auth_type', group: G.auth, type: oneOf(AUTH_TYPES), default: 'md5', apply: 'live',
    doc: 'How clients prove who they are' }),
  setting({ name: 'auth_hba_file', group: G.auth, type: str(), default: '', apply: 'live',
    doc: 'pg_hba.conf-style rules that pick the method when auth_type is hba' }),
  setting({ name: 'auth_ident_file', group: G.auth, type: str(), default: '', apply: 'live',
    doc: 'User name maps referenced by the hba rules' }),
  setting({ name: 'auth_file', group: G.auth, type: str(), default: '', apply: 'live',
    doc: 'userlist.txt with user names and secrets, relative to the config file\'s directory; under trust and cert, as in PgBouncer, only users listed here or found by auth_query may log in' }),
  setting({ name: 'auth_user', group: G.auth, type: str(), default: '', apply: 'live',
    doc: 'User that runs auth_query for users missing from auth_file; its password comes from auth_file (or the auth database entry\'s password= when its user= is this user); a [databases] entry\'s auth_user= overrides it' }),
  setting({ name: 'auth_query', group: G.auth, type: str(), apply: 'live',
    default: 'SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin',
    doc: 'Query that returns one row (name, secret) for the user given as $1, run on a connection of its own; the secret is an md5 hash, a SCRAM verifier or a plain password; no row or a NULL secret fails the login like a wrong password; overridden by a [databases] entry\'s auth_query=' }),
  setting({ name: 'auth_dbname', group: G.auth, type: str(), default: '', apply: 'live',
    doc: 'Database entry that auth_query runs in; empty means the one the client asked for; overridden by a [databases] entry\'s auth_dbname=' }),
  setting({ name: 'auth_ldap_options', group: G.auth, type: str(), default: '', apply: 'live',
    doc: 'LDAP connection options when auth_type is ldap' }),
  // ---- log
  setting({ name: 'syslog', group: G.log, type: bool(), default: '0', apply: 'live',
    doc: 'Also send log lines to syslog' }),
  setting({ name: 'syslog_ident', group: G.log, type: str(), default: 'pgbouncer', apply: 'live',
    doc: 'Program name on syslog lines' }),
  setting({ name: 'syslog_facility', group: G.log, type: str(), default: 'daemon', apply: 'live',
    doc: 'Syslog facility: auth, authpriv, daemon, user or local0 to local7' }),
  setting({ name: 'log_connections', group: G.log, type: bool(), default: '1', apply: 'live',
    doc: 'Log each successful client login ("login attempt") and each new server connection ("new connection to server")' }),
  setting({ name: 'log_disconnections', group: G.log, type: bool(), default: '1', apply: 'live',
    doc: 'Log each closed connection with its reason' }),
  setting({ name: 'log_pooler_errors', group: G.log, type: bool(), default: '1', apply: 'live',
    doc: 'Log the errors the pooler itself sends to clients ("pooler error: ..."), before they are sent' }),
  setting({ name: 'log_stats', group: G.log, type: bool(), default: '1', apply: 'live',
    doc: 'Log totals once every stats_period' }),
  setting({ name: 'verbose', group: G.log, type: int(), default: '0', apply: 'live',
    doc: 'Debug detail in the log: 0 none, 1 and up more (like -v on the command line)' }),
  // ---- console access
  setting({ name: 'admin_users', group: G.console, type: list(), default: '', apply: 'live',
    doc: 'Users allowed every command on the pgbouncer admin console' }),
  setting({ name: 'stats_users', group: G.console, type: list(), default: '', apply: 'live',
    doc: 'Users allowed read-only SHOW commands on the admin console' }),
  // ---- connection sanity checks, timeouts
  setting({ name: 'server_reset_query', group: G.sanity, type: str(), default: 'DISCARD ALL', apply: 'live',
    doc: 'Query that cleans a session-mode server before another client gets it; empty skips it' }),
  setting({ name: 'server_reset_query_always', group: G.sanity, type: bool(), default: '0', apply: 'live',
    doc: 'Run server_reset_query in every pool mode, not only session mode' }),
  setting({ name: 'server_check_delay', group: G.sanity, type: seconds(), default: '30', apply: 'live',
    doc: 'How long a released server is trusted before server_check_query runs again; 0 checks every time' }),
  // PgBouncer 1.25's default `<empty>` sends an empty query; runtime maps it with serverCheckQuerySql.
  setting({ name: 'server_check_query', group: G.sanity, type: str(), default: '<empty>', apply: 'live',
    doc: 'Query that tests an idle server before reuse; `<empty>` sends an empty query, an empty value disables the check' }),
  setting({ name: 'server_fast_close', group: G.sanity, type: bool(), default: '0', apply: 'live',
    doc: 'In session mode, close a server marked by RECONNECT or RELOAD (and disconnect its client) between transactions, not at session end' }),
  setting({ name: 'server_lifetime', group: G.sanity, type: seconds(), default: '3600', apply: 'live',
    doc: 'Close an unused server connected longer than this; 0 uses each server once' }),
  setting({ name: 'server_idle_timeout', group: G.sanity, type: seconds(), default: '600', apply: 'live',
    doc: 'Close a server idle longer than this; 0 disables' }),
  setting({ name: 'server_connect_timeout', group: G.sanity, type: seconds(), default: '15', apply: 'live',
    doc: 'Give up on a server whose connect and login take longer than this' }),
  setting({ name: 'server_login_retry', group: G.sanity, type: seconds(), default: '15', apply: 'live',
    doc: 'After a failed server login, fail new clients at once for this long before trying again' }),
  setting({ name: 'client_login_timeout', group: G.sanity, type: seconds(), default: '60', apply: 'live',
    doc: 'Drop a client that has not finished logging in after this long' }),
  setting({ name: 'autodb_idle_timeout', group: G.sanity, type: seconds(), default: '3600', apply: 'live',
    doc: 'Free pools made from the * entry once unused this long' }),
  setting({ name: 'dns_max_ttl', group: G.sanity, type: seconds(), default: '15', apply: 'live',
    doc: 'How long a host name lookup is cached' }),
  setting({ name: 'dns_nxdomain_ttl', group: G.sanity, type: seconds(), default: '15', apply: 'live',
    doc: 'How long a failed or NXDOMAIN lookup is cached' }),
  setting({ name: 'dns_zone_check_period', group: G.sanity, type: seconds(), default: '0', apply: 'live',
    doc: 'Period of DNS zone serial checks (c-ares builds of PgBouncer only); 0 disables' }),
  setting({ name: 'resolv_conf', group: G.sanity, type: str(), default: '', apply: 'restart',
    doc: 'resolv.conf to use instead of the system one' }),
  setting({ name: 'query_wait_notify', group: G.sanity, type: int(), default: '5', apply: 'live',
    doc: 'Seconds a client waits in the queue before it is sent a notice saying so; 0 disables' }),
  // ---- TLS
  setting({ name: 'client_tls_sslmode', group: G.tls, type: oneOf(TLS_MODES), default: 'disable', apply: 'live',
    doc: 'TLS for client connections over TCP (never asked of unix socket clients); anything but disable needs client_tls_key_file and client_tls_cert_file' }),
  setting({ name: 'client_tls_key_file', group: G.tls, type: str(), default: '', apply: 'live',
    doc: 'Private key presented to clients' }),
  setting({ name: 'client_tls_cert_file', group: G.tls, type: str(), default: '', apply: 'live',
    doc: 'Certificate presented to clients' }),
  setting({ name: 'client_tls_ca_file', group: G.tls, type: str(), default: '', apply: 'live',
    doc: 'CA certificates that client certificates are checked against' }),
  setting({ name: 'client_tls_protocols', group: G.tls, type: str(), default: 'secure', apply: 'live',
    doc: 'TLS versions allowed to clients: tlsv1.0 to tlsv1.3, all, or secure (1.2 and 1.3)' }),
  setting({ name: 'client_tls_ciphers', group: G.tls, type: str(), default: 'default', apply: 'live',
    doc: 'OpenSSL cipher list for clients on TLS 1.2 and older' }),
  setting({ name: 'client_tls13_ciphers', group: G.tls, type: str(), default: '', apply: 'live',
    doc: 'TLS 1.3 cipher suites for clients, colon-separated TLS_* names; empty keeps the default suites' }),
  setting({ name: 'client_tls_ecdhcurve', group: G.tls, type: str(), default: 'auto', apply: 'live',
    doc: 'Curves for ECDH key exchange with clients: auto or curve names, colon-separated; none is refused (Node.js cannot turn ECDH off)' }),
  setting({ name: 'client_tls_dheparams', group: G.tls, type: str(), default: 'auto', apply: 'live',
    doc: 'DHE key exchange with clients: none (no DHE suites) or auto (OpenSSL\'s built-in group); legacy is refused' }),
  setting({ name: 'server_tls_sslmode', group: G.tls, type: oneOf(TLS_MODES), default: 'prefer', apply: 'live',
    doc: 'TLS for server connections, with libpq\'s sslmode meanings; verify-full matches the host against the certificate by libpq\'s rules (IP SANs for an IP address, DNS SANs for a name; docs/admin.md)' }),
  setting({ name: 'server_tls_ca_file', group: G.tls, type: str(), default: '', apply: 'live',
    doc: 'CA certificates that server certificates are checked against; empty: Node.js\'s root certificates (PgBouncer: the system\'s)' }),
  setting({ name: 'server_tls_key_file', group: G.tls, type: str(), default: '', apply: 'live',
    doc: 'Private key presented to servers' }),
  setting({ name: 'server_tls_cert_file', group: G.tls, type: str(), default: '', apply: 'live',
    doc: 'Certificate presented to servers' }),
  setting({ name: 'server_tls_protocols', group: G.tls, type: str(), default: 'secure', apply: 'live',
    doc: 'TLS versions allowed to servers: tlsv1.0 to tlsv1.3, all, legacy, or secure' }),
  setting({ name: 'server_tls_ciphers', group: G.tls, type: str(), default: 'default', apply: 'live',
    doc: 'OpenSSL cipher list for servers on TLS 1.2 and older' }),
  setting({ name: 'server_tls13_ciphers', group: G.tls, type: str(), default: '', apply: 'live',
    doc: 'TLS 1.3 cipher suites for servers, colon-separated TLS_* names; empty keeps the default suites' }),
  // ---- dangerous timeouts
  setting({ name: 'query_timeout', group: G.dangerous, type: seconds(), default: '0', apply: 'live',
    doc: 'Cancel a query running longer than this, and drop a client that waited as long for a server (its first login included); 0 disables' }),
  setting({ name: 'query_wait_timeout', group: G.dangerous, type: seconds(), default: '120', apply: 'live',
    doc: 'Disconnect a client that waited longer than this for a server, for a query or for the pool\'s first server login; 0 waits forever' }),
  setting({ name: 'cancel_wait_timeout', group: G.dangerous, type: seconds(), default: '10', apply: 'live',
    doc: 'Drop a cancel request that waited longer than this for a server; 0 waits forever' }),
  setting({ name: 'client_idle_timeout', group: G.dangerous, type: seconds(), default: '0', apply: 'live',
    doc: 'Disconnect a client idle longer than this; 0 disables' }),
  setting({ name: 'idle_transaction_timeout', group: G.dangerous, type: seconds(), default: '0', apply: 'live',
    doc: 'Disconnect a client idle inside a transaction longer than this; 0 disables' }),
  setting({ name: 'transaction_timeout', group: G.dangerous, type: seconds(), default: '0', apply: 'live',
    doc: 'Disconnect a client whose transaction has been open longer than this; 0 disables' }),
  setting({ name: 'suspend_timeout', group: G.dangerous, type: seconds(), default: '10', apply: 'live',
    doc: 'How long SUSPEND waits for buffers to drain before dropping the connection' }),
  // ---- low-level network
  setting({ name: 'pkt_buf', group: G.network, type: int({ min: 512 }), default: '4096', apply: 'restart',
    doc: 'Size of the internal packet buffer in bytes' }),
  setting({ name: 'max_packet_size', group: G.network, type: int({ max: 4294967295 }), default: '2147483647', apply: 'live',
    doc: 'Largest protocol message let through, in bytes' }),
  setting({ name: 'listen_backlog', group: G.network, type: int(), default: '128', apply: 'restart',
    doc: 'Queue length of not yet accepted connections, passed to listen(2)' }),
  setting({ name: 'sbuf_loopcnt', group: G.network, type: int(), default: '5', apply: 'live',
    doc: 'Buffers moved for one connection before serving others; 0 means no limit' }),
  setting({ name: 'so_reuseport', group: G.network, type: bool(), default: '0', apply: 'restart',
    doc: 'Set SO_REUSEPORT so several processes can share the listening port' }),
  setting({ name: 'tcp_defer_accept', group: G.network, type: bool(), default: '1', apply: 'live',
    doc: 'Set TCP_DEFER_ACCEPT on listeners (Linux); accepted for compatibility, Node cannot set it' }),
  setting({ name: 'tcp_socket_buffer', group: G.network, type: int(), default: '0', apply: 'live',
    doc: 'Socket send and receive buffer size in bytes; 0 keeps the OS default' }),
  setting({ name: 'tcp_keepalive', group: G.network, type: bool(), default: '1', apply: 'live',
    doc: 'Turn on TCP keepalive with the OS defaults' }),
  setting({ name: 'tcp_keepcnt', group: G.network, type: int(), default: '0', apply: 'live',
    doc: 'Keepalive probes lost before the connection is dropped; 0 keeps the OS default' }),
  setting({ name: 'tcp_keepidle', group: G.network, type: int(), default: '0', apply: 'live',
    doc: 'Idle seconds before the first keepalive probe; 0 keeps the OS default' }),
  setting({ name: 'tcp_keepintvl', group: G.network, type: int(), default: '0', apply: 'live',
    doc: 'Seconds between keepalive probes; 0 keeps the OS default' }),
  setting({ name: 'tcp_user_timeout', group: G.network, type: int(), default: '0', apply: 'live',
    doc: 'Milliseconds sent data may stay unacknowledged before the connection is dropped (Linux); 0 keeps the OS default' }),
  // ---- [tidepool]
  setting({ name: 'workers', section: 'tidepool', group: G.tidepool, type: workerCount(), default: '1', apply: 'restart',
    doc: 'Processes that serve clients on the same addresses: auto for one per CPU, 1 for a single process. Pool sizes, max_*_connections and the client limits stay totals over all workers; cancels, signals, the console and /metrics see one pooler (docs/architecture.md, Workers)' }),
  setting({ name: 'log_format', section: 'tidepool', group: G.tidepool, type: oneOf(['text', 'json'] as const), default: 'text', apply: 'live',
    doc: 'Log lines as PgBouncer-style text or as one JSON object per line' }),
  setting({ name: 'http_listen_addr', section: 'tidepool', group: G.tidepool, type: str(), default: '127.0.0.1', apply: 'restart',
    doc: 'Address of the HTTP server for metrics, the JSON API and the dashboard' }),
  setting({ name: 'http_listen_port', section: 'tidepool', group: G.tidepool, type: int({ max: 65535 }), default: '0', apply: 'restart',
    doc: 'Port of the HTTP server; 0 turns it off' }),
  setting({ name: 'http_token', section: 'tidepool', group: G.tidepool, type: str(), default: '', apply: 'live', isSecret: true,
    doc: 'Bearer token the HTTP API requires for actions and for /api reads (the dashboard asks for it); empty allows read-only use only' }),
  setting({ name: 'http_allowed_hosts', section: 'tidepool', group: G.tidepool, type: list(), default: '', apply: 'live',
    doc: 'Host names the dashboard and /api answer to while http_token is empty (addresses and localhost always); guards against DNS rebinding' }),
  setting({ name: 'janitor_interval_ms', section: 'tidepool', group: G.tidepool, type: millis({ min: 1 }), default: '333', apply: 'live',
    doc: 'Period of the sweep that enforces every timeout' }),
  setting({ name: 'pause_timeout_ms', section: 'tidepool', group: G.tidepool, type: millis({ min: 0 }), default: '60000', apply: 'live',
    doc: 'How long PAUSE waits for running transactions before it answers with an error naming the busy pools (the pause stays in effect); 0 waits forever, as PgBouncer' }),
  setting({ name: 'shutdown_close_between_transactions', section: 'tidepool', group: G.tidepool, type: bool(), default: '0', apply: 'live',
    doc: 'During SHUTDOWN WAIT_FOR_CLIENTS (SIGTERM), in transaction and statement mode: close each client as its transaction ends, and one idle for 250 ms, with "pooler is shutting down", instead of waiting for it to leave (PgBouncer waits). For a floating address (keepalived): the clients leave and reconnect before the address moves, which would cut their connections mid-transaction. Pinned clients are closed too, losing their session state; session mode still waits' }),
  setting({ name: 'session_state_policy', section: 'tidepool', group: G.tidepool, type: oneOf(['pin', 'error'] as const), default: 'pin', apply: 'live',
    doc: 'When a client in transaction or statement mode leaves session state behind: pin its server, or fail with an error' }),
  setting({ name: 'session_state_probe', section: 'tidepool', group: G.tidepool, type: oneOf(['auto', 'always'] as const), default: 'auto', apply: 'live',
    doc: 'When tidepool asks a server what session state a transaction left: auto after transactions whose SQL may have changed it (SET, LISTEN, advisory locks, TEMP, DO, ...); always after every transaction, which also catches state made inside functions, at one more round trip per transaction' }),
  setting({ name: 'auth_query_cache_ttl_ms', section: 'tidepool', group: G.tidepool, type: millis({ min: 0 }), default: '5000', apply: 'live',
    doc: 'How long an auth_query answer (secret found, or none) serves later logins of the same user; a failed password drops a found one at once; 0 asks the server at every login (logins of one user at the same moment still share one query)' }),
  setting({ name: 'max_login_clients', section: 'tidepool', group: G.tidepool, type: int(), default: '0', apply: 'live',
    doc: 'Most client connections not yet authenticated (still sending their startup packet or password, silent ones included); a connection beyond it is refused with "sorry, too many clients already" as it is accepted. 0 uses max_client_conn, so unauthenticated sockets can never outnumber it (each still counts toward max_client_conn until client_login_timeout closes it)' }),
  setting({ name: 'health_check_interval_ms', section: 'tidepool', group: G.tidepool, type: millis({ min: 10 }), default: '1000', apply: 'live',
    doc: 'How often each host of a database with several hosts, target_session_attrs, patroni_urls or health_urls is checked' }),
  setting({ name: 'health_check_timeout_ms', section: 'tidepool', group: G.tidepool, type: millis({ min: 10 }), default: '2000', apply: 'live',
    doc: 'How long one check (login and SELECT pg_is_in_recovery(), Patroni and health URLs side by side) may take before it counts as failed' }),
  setting({ name: 'health_check_rise', section: 'tidepool', group: G.tidepool, type: int({ min: 1 }), default: '2', apply: 'live',
    doc: 'Good checks in a row that bring a down host back into rotation (HAProxy rise)' }),
  setting({ name: 'health_check_fall', section: 'tidepool', group: G.tidepool, type: int({ min: 1 }), default: '2', apply: 'live',
    doc: 'Failed checks in a row that take a host out of rotation (HAProxy fall)' }),
  setting({ name: 'host_ban_ms', section: 'tidepool', group: G.tidepool, type: millis({ min: 0 }), default: '5000', apply: 'live',
    doc: 'How long a host stays out of rotation after a server connection to it failed to connect or log in (the passive check)' }),
  setting({ name: 'region_failback_ms', section: 'tidepool', group: G.tidepool, type: millis({ min: 0 }), default: '60000', apply: 'live',
    doc: "Once a host of the node's own region (node_region, host_regions) fits again, server connections that had moved to other regions retire when idle, each at a random moment within this time (or at server_lifetime if sooner), so reads come home without a burst of logins on the recovered host; 0 retires each one at its next release. New connections go home at once either way" }),
  setting({ name: 'server_require_auth', section: 'tidepool', group: G.tidepool, type: requireAuth(), default: '', apply: 'live',
    doc: "libpq's require_auth for tidepool's logins to servers: methods a server may ask for (password, md5, scram-sha-256, none for no password at all) or, each with !, may not; empty allows any. A [databases] entry's require_auth= overrides it. Whatever it says, a SCRAM exchange must end with the server's valid signature" }),
  setting({ name: 'server_scram_max_iterations', section: 'tidepool', group: G.tidepool, type: int({ min: 1 }), default: '100000', apply: 'live',
    doc: "Largest SCRAM iteration count a server may ask of tidepool's login (PostgreSQL's default is 4096); a server asking more is refused, as one asking millions could make each login cost seconds of CPU" }),
  // ---- [tidepool] fleet: membership through etcd (docs/architecture.md, Fleet)
  setting({ name: 'fleet_etcd', section: 'tidepool', group: G.tidepool, type: list(), default: '', apply: 'restart',
    doc: 'etcd endpoints (host:port or http[s]://host:port, comma-separated) where this node joins its fleet: name every member, a call that fails on one moves on to the others; empty: no fleet, and nothing of it is loaded' }),
  setting({ name: 'fleet_etcd_user', section: 'tidepool', group: G.tidepool, type: str(), default: '', apply: 'restart',
    doc: "etcd user for fleet_etcd (etcd's own authentication); empty: none" }),
  setting({ name: 'fleet_etcd_password', section: 'tidepool', group: G.tidepool, type: str(), default: '', apply: 'restart', isSecret: true,
    doc: 'Password of fleet_etcd_user' }),
  setting({ name: 'fleet_etcd_ca_file', section: 'tidepool', group: G.tidepool, type: str(), default: '', apply: 'restart',
    doc: "CA certificate that etcd's server certificate must chain to; set (or a client certificate) to speak TLS to endpoints written without a scheme" }),
  setting({ name: 'fleet_etcd_cert_file', section: 'tidepool', group: G.tidepool, type: str(), default: '', apply: 'restart',
    doc: 'Client certificate presented to etcd (with fleet_etcd_key_file), for etcd started with --client-cert-auth' }),
  setting({ name: 'fleet_etcd_key_file', section: 'tidepool', group: G.tidepool, type: str(), default: '', apply: 'restart',
    doc: 'Private key of fleet_etcd_cert_file' }),
  setting({ name: 'fleet_name', section: 'tidepool', group: G.tidepool, type: str(), default: 'tidepool', apply: 'restart',
    doc: 'Name of the fleet: the prefix of its keys in etcd, so several fleets can share one etcd' }),
  setting({ name: 'node_name', section: 'tidepool', group: G.tidepool, type: str(), default: '', apply: 'restart',
    doc: 'Name of this node in its fleet, unique within it; empty: the host name' }),
  setting({ name: 'node_region', section: 'tidepool', group: G.tidepool, type: str(), default: '', apply: 'restart',
    doc: "Region (or zone) of this node: entries with host_regions open server connections on hosts of this region first, falling back to other regions while none of them fits (writes still go to the primary wherever it is); also shown to the fleet. Empty: no host is preferred" }),
  setting({ name: 'node_advertise', section: 'tidepool', group: G.tidepool, type: str(), default: '', apply: 'restart',
    doc: 'host:port where clients and peers reach this node, as the fleet shows it; empty: the host name and listen_port' }),
  setting({ name: 'fleet_lease_ttl', section: 'tidepool', group: G.tidepool, type: int({ min: 1, max: 3600 }), default: '10', apply: 'restart',
    doc: "Seconds the fleet keeps a node's record after its last heartbeat (its etcd lease); the node renews it every third of that. etcd may round a very short TTL up" }),
  setting({ name: 'fleet_command_timeout_ms', section: 'tidepool', group: G.tidepool, type: millis({ min: 100 }), default: '10000', apply: 'live',
    doc: 'How long a FLEET command waits for every live node to acknowledge; then it answers an error naming the nodes that did not' }),
  setting({ name: 'fleet_budget', section: 'tidepool', group: G.tidepool, type: bool(), default: '0', apply: 'restart',
    doc: "With fleet_etcd: pool_size, max_db_connections and max_user_connections are the fleet's totals rather than each node's. Nodes hold shares of it in etcd under their leases, shares move toward the nodes whose clients wait, and a node that cannot renew its lease gives its shares up before the lease can expire (it fences itself: with etcd gone for ¾ of fleet_lease_ttl its pools keep only fleet_budget_floor servers until etcd answers). Needs workers = 1" }),
  setting({ name: 'fleet_budget_floor', section: 'tidepool', group: G.tidepool, type: int({ min: 0 }), default: '0', apply: 'restart',
    doc: "With fleet_budget: servers of each pool this node claims for good out of the fleet's budget (as far as it has room) and keeps while cut off from etcd. A floor is an etcd key without a lease: it stays counted after the node dies, until the node comes back under the same node_name or its key <fleet_name>/budget/floor/<db>/<user>/<node> is deleted; a node that shuts down cleanly gives it back" }),
])

const BY_NAME: ReadonlyMap<string, AnySettingRow> = new Map(SETTINGS.map((r) => [r.name, r]))

/** The row for a setting name as it appears in pgbouncer.ini (any case), or undefined. */
export function findSetting(name: string): AnySettingRow | undefined {
  return BY_NAME.get(name.toLowerCase())
}

/** Every setting at its default. Throws only if the table itself is broken (a test guards that). */
export function defaultSettings(): Settings {
  const out: Record<string, SettingValue> = {}
  for (const row of SETTINGS) {
    const r = row.type.parse(row.default)
    if (!r.ok) throw new Error(`settings table: default of ${row.name} does not parse: ${r.error}`)
    out[row.name] = r.value
  }
  return out as unknown as Settings
}

/** The text SHOW CONFIG and docs show for a value; secrets are masked. */
export function renderSetting(row: AnySettingRow, value: SettingValue): string {
  if (row.isSecret) return value === '' ? '' : '********'
  return (row.type as SettingType<SettingValue>).render(value)
}

/**
 * What server_check_query means as SQL: null when checks are off (''), '' for PgBouncer's
 * `<empty>` marker (an empty query, answered by EmptyQueryResponse), else the query itself.
 */
export function serverCheckQuerySql(value: string): string | null {
  if (value === '') return null
  if (value === '<empty>') return ''
  return value
}
