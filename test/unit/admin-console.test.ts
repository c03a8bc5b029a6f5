// The admin console's replies, byte for byte through framer and reader: PgBouncer 1.25's columns in
// order with their type OIDs, pool rows made from real Pool objects (poolRow, as Runtime makes them),
// servers and clients as the plain ServerInfo/ClientInfo snapshots, CommandComplete tags, and the
// error texts and SQLSTATEs of PgBouncer's src/admin.c. Every reply must end in ReadyForQuery('I').

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runConsoleQuery, type ClientInfo, type ConsoleOptions, type ConsoleView, type ServerInfo, type SetOutcome, type ShutdownMode, type SocketFacts } from '../../src/admin/console.ts'
import { formatTime } from '../../src/admin/result-set.ts'
import { loadConfigFromText } from '../../src/config/load.ts'
import { configRows } from '../../src/config/show.ts'
import type { Config } from '../../src/config/types.ts'
import { Pool, SharedCount, type ServerFactory } from '../../src/pool/pool.ts'
import type { PoolSettings } from '../../src/config/effective.ts'
import { ClientState, ServerState, type ClientFailure, type PooledClient, type PooledServer } from '../../src/pool/states.ts'
import { Framer, INSPECT_ALL } from '../../src/protocol/framer.ts'
import { BodyReader, parseCommandTag, parseErrorFields } from '../../src/protocol/reader.ts'
import { BackendCode } from '../../src/protocol/codes.ts'
import type { PgErrorFields } from '../../src/protocol/pg-error.ts'
import { PoolStats } from '../../src/pool/stats.ts'
import { Host } from '../../src/ha/hosts.ts'
import type { SwitchoverReport } from '../../src/ha/switchover.ts'
import type { FleetSwitchoverResult } from '../../src/ha/fleet/commands.ts'

// ---- expected columns, quoted from PgBouncer 1.25 (doc/usage.md; order and types from src/admin.c) ----

const TEXT = 25
const INT4 = 23

const POOLS = ['database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active',
  'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us',
  'pool_mode', 'load_balance_hosts']
const DATABASES = ['name', 'host', 'port', 'database', 'force_user', 'pool_size', 'min_pool_size', 'reserve_pool_size',
  'server_lifetime', 'pool_mode', 'load_balance_hosts', 'max_connections', 'current_connections', 'max_client_connections',
  'current_client_connections', 'paused', 'disabled',
  // Appended on purpose: the pre-1.24 name that Debian's prometheus-pgbouncer-exporter 1.7 reads.
  'reserve_pool']
const SOCKETS = ['type', 'user', 'database', 'replication', 'state', 'addr', 'port', 'local_addr', 'local_port',
  'connect_time', 'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls',
  'application_name', 'prepared_statements', 'id']
const USERS = ['name', 'pool_size', 'reserve_pool_size', 'pool_mode', 'max_user_connections', 'current_connections',
  'max_user_client_connections', 'current_client_connections']
const LISTS = ['list', 'items']
const LIST_NAMES = ['databases', 'users', 'peers', 'pools', 'peer_pools', 'free_clients', 'used_clients', 'login_clients',
  'free_servers', 'used_servers', 'dns_names', 'dns_zones', 'dns_queries', 'dns_pending']
const CONFIG = ['key', 'value', 'default', 'changeable']
// SHOW SOCKETS and ACTIVE_SOCKETS: SHOW CLIENTS's columns, then the buffer ones (socket_header with debug).
const SOCKETS_DEBUG = [...SOCKETS, 'recv_pos', 'pkt_pos', 'pkt_remain', 'send_pos', 'send_remain', 'pkt_avail', 'send_avail']
const FDS = ['fd', 'task', 'user', 'database', 'addr', 'port', 'cancel', 'link', 'client_encoding', 'std_strings',
  'datestyle', 'timezone', 'password', 'scram_client_key', 'scram_server_key']
const MEM = ['name', 'size', 'used', 'free', 'memtotal']
const DNS_HOSTS = ['hostname', 'ttl', 'addrs']
const DNS_ZONES = ['zonename', 'serial', 'count']

/** PgBouncer's type letters per column (pktbuf_write_RowDescription): s text, i int4, q int8, b bytea, T time as text. */
function oids(types: string): number[] {
  const byLetter: Record<string, number> = { i: INT4, q: 20, b: 17 }
  return [...types].map((t) => byLetter[t] ?? TEXT)
}

const COLUMN_CASES: Array<{ sql: string; names: string[]; types: string }> = [
  { sql: 'SHOW POOLS', names: POOLS, types: 'ssiiiiiiiiiiiiiss' },
  { sql: 'SHOW DATABASES', names: DATABASES, types: 'ssissiiiissiiiiiii' },
  // PgBouncer's columns in its order, then tidepool's `pinned` (tools read by name or by position up to PgBouncer's last).
  { sql: 'SHOW CLIENTS', names: [...SOCKETS, 'pinned'], types: 'ssssssisiTTiiississiis' },
  { sql: 'SHOW SERVERS', names: SOCKETS, types: 'ssssssisiTTiiississii' },
  { sql: 'SHOW USERS', names: USERS, types: 'ssssiiii' },
  { sql: 'SHOW LISTS', names: LISTS, types: 'si' },
  { sql: 'SHOW CONFIG', names: CONFIG, types: 'ssss' },
  { sql: 'SHOW VERSION', names: ['version'], types: 's' },
  { sql: 'SHOW STATE', names: ['key', 'value'], types: 'ss' },
  { sql: 'SHOW PEERS', names: ['peer_id', 'host', 'port', 'pool_size'], types: 'isii' },
  { sql: 'SHOW PEER_POOLS', names: ['peer_id', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active_cancel', 'sv_login'], types: 'iiiii' },
  { sql: 'SHOW SOCKETS', names: SOCKETS_DEBUG, types: 'ssssssisiTTiiississiiiiiiiii' },
  { sql: 'SHOW ACTIVE_SOCKETS', names: SOCKETS_DEBUG, types: 'ssssssisiTTiiississiiiiiiiii' },
  { sql: 'SHOW FDS', names: FDS, types: 'issssiqisssssbb' },
  { sql: 'SHOW MEM', names: MEM, types: 'siiii' },
  { sql: 'SHOW DNS_HOSTS', names: DNS_HOSTS, types: 'sqs' },
  { sql: 'SHOW DNS_ZONES', names: DNS_ZONES, types: 'sqi' },
]

// ---- reading a reply ----

interface Reply {
  columns: Array<{ name: string; typeOid: number }> | null
  rows: Array<Array<string | null>>
  tag: string | null
  error: PgErrorFields | null
  notices: PgErrorFields[]
  /** Message type bytes in order, e.g. 'TDDCZ'. */
  codes: string
}

function parseReply(buf: Buffer): Reply {
  const out: Reply = { columns: null, rows: [], tag: null, error: null, notices: [], codes: '' }
  const f = new Framer()
  f.inspect = INSPECT_ALL
  f.push(buf)
  while (f.next()) {
    assert.ok(f.isFirst && f.isLast, 'each message comes whole')
    const bodyStart = f.start + 5
    out.codes += String.fromCharCode(f.code)
    switch (f.code) {
      case BackendCode.RowDescription: {
        const r = new BodyReader(f.buf, bodyStart, f.end)
        const n = r.int16()
        out.columns = []
        for (let i = 0; i < n; i++) {
          const name = r.cstring()
          r.int32(); r.int16()
          const typeOid = r.int32()
          r.int16(); r.int32()
          assert.equal(r.int16(), 0, 'text format')
          out.columns.push({ name, typeOid })
        }
        break
      }
      case BackendCode.DataRow: {
        const r = new BodyReader(f.buf, bodyStart, f.end)
        const n = r.int16()
        const row: Array<string | null> = []
        for (let i = 0; i < n; i++) {
          const len = r.int32()
          row.push(len < 0 ? null : r.bytes(len).toString('utf8'))
        }
        out.rows.push(row)
        break
      }
      case BackendCode.CommandComplete: out.tag = parseCommandTag(f.buf, bodyStart, f.end); break
      case BackendCode.ErrorResponse: out.error = parseErrorFields(f.buf, bodyStart, f.end); break
      case BackendCode.NoticeResponse: out.notices.push(parseErrorFields(f.buf, bodyStart, f.end)); break
      case BackendCode.ReadyForQuery: assert.equal(f.buf[bodyStart], 0x49, "ReadyForQuery('I')"); break
      default: assert.fail(`unexpected message ${String.fromCharCode(f.code)}`)
    }
  }
  assert.ok(f.isAtBoundary, 'the reply ends on a message boundary')
  assert.ok(out.codes.endsWith('Z'), `reply ends with ReadyForQuery, got ${out.codes}`)
  assert.equal(out.codes.indexOf('Z'), out.codes.length - 1, 'exactly one ReadyForQuery')
  if (out.columns !== null) for (const row of out.rows) assert.equal(row.length, out.columns.length)
  return out
}

/** Rows as objects by column name, for readable assertions. */
function records(r: Reply): Array<Record<string, string | null>> {
  assert.ok(r.columns !== null, `expected a result set, got ${r.codes} ${r.error?.message ?? ''}`)
  const cols = r.columns
  return r.rows.map((row) => Object.fromEntries(row.map((v, i) => [cols[i].name, v])))
}

// ---- a console over real pools ----

const NOW = 1_700_000_000_000

const INI = `[databases]
app = host=10.0.0.1,10.0.0.2 port=5433 dbname=appdb pool_size=7 pool_mode=transaction
reports = host=10.0.0.9 user=reporter max_db_connections=4
[users]
alice = pool_mode=session pool_size=3 max_user_connections=9
[pgbouncer]
listen_port = 6432
auth_type = trust
default_pool_size = 20
`

async function loadConfig(text: string): Promise<Config> {
  const r = await loadConfigFromText(text, '/nonexistent/tidepool.ini')
  if (!r.ok) assert.fail(r.errors.join('\n'))
  return r.config
}

const SETTINGS: PoolSettings = {
  pool_mode: 'transaction', pool_size: 7, min_pool_size: 0, reserve_pool_size: 0, reserve_pool_timeout: 5,
  max_db_connections: 0, max_user_connections: 0, server_round_robin: false, server_reset_query: 'DISCARD ALL',
  server_reset_query_always: false, server_check_query: 'select 1', server_check_delay: 30, server_login_retry: 15,
  server_lifetime: 3600, server_idle_timeout: 600, query_timeout: 0, idle_transaction_timeout: 0, transaction_timeout: 0, client_idle_timeout: 0,
}

const noServers: ServerFactory = { openServer: () => assert.fail('the console must not open servers') }

class FakeClient implements PooledClient {
  prev: PooledClient | null = null
  next: PooledClient | null = null
  list: object | null = null
  state: ClientState = ClientState.Login
  server: PooledServer | null = null
  waitSinceMs = 0
  requestAtMs = NOW
  readonly connectedAtMs = NOW - 60_000
  constructor(readonly id: string) {}
  onServerAssigned(): void {}
  onPoolReady(): void {}
  fail(_err: ClientFailure): void {}
  isWaitNoticeSent = false
  notice(): void {}
}

class FakeServer implements PooledServer {
  prev: PooledServer | null = null
  next: PooledServer | null = null
  list: object | null = null
  state: ServerState = ServerState.Login
  client: FakeClient | null = null
  closeOnRelease = false
  connectedAtMs = NOW - 120_000
  idleSinceMs = NOW
  readyAtMs = NOW - 1_000
  readonly isReady = true
  readonly cancelsInFlight = 0
  readonly isCancelUnsure = false
  readonly isIdleInTransaction = false
  readonly transactionStartUs = 0
  readonly lifetimeFactor = 1
  readonly retireAtMs = 0
  constructor(readonly id: string, readonly backendPid: number) {}
  runInternal(): void {}
  close(): void {}
}

interface Fixture {
  view: Omit<ConsoleView, 'isShuttingDown' | 'isSuspended'> & {
    isShuttingDown: boolean; isSuspended: boolean; pausedDb: Set<string>; isGlobalPaused: boolean; shutdowns: ShutdownMode[]
    reloadResult: { ok: boolean; errors: string[] }; setCalls: Array<[string, string]>; setResult: SetOutcome; facts: Map<string, SocketFacts>
    serverList: ServerInfo[]
    switchoverCalls: Array<[string, string | null, number | null]>; switchoverResult: SwitchoverReport
    fleetSwitchoverCalls: Array<[string, string | null, number | null]>; fleetSwitchoverResult: FleetSwitchoverResult
  }
  run(sql: string, opts?: ConsoleOptions): Promise<Reply>
}

/**
 * Pool app/alice: clients C-1 (active, linked to S-1), C-2 (active, idle), C-3 (waiting 2.5 s);
 * servers S-1 active, S-2 and S-3 idle, S-4 used, S-5 tested, S-6 logging in.
 * Pool reports/bob: nothing on its lists. Console client C-9 on 'pgbouncer'; C-10 still logging in.
 */
async function fixture(ini = INI): Promise<Fixture> {
  const config = await loadConfig(ini)
  const appCount = new SharedCount()
  const aliceCount = new SharedCount()
  const app = new Pool('app', 'alice', SETTINGS, appCount, aliceCount, noServers)
  const reports = new Pool('reports', 'bob', { ...SETTINGS, pool_mode: 'session' }, new SharedCount(), new SharedCount(), noServers)
  const l = app.lists
  const [c1, c2, c3] = [new FakeClient('C-1'), new FakeClient('C-2'), new FakeClient('C-3')]
  l.moveClient(c1, ClientState.Active)
  l.moveClient(c2, ClientState.Active)
  c3.waitSinceMs = NOW - 2_500
  l.moveClient(c3, ClientState.Waiting)
  const servers = [1, 2, 3, 4, 5, 6].map((n) => new FakeServer(`S-${n}`, 4000 + n))
  const states = [ServerState.Active, ServerState.Idle, ServerState.Idle, ServerState.Used, ServerState.Tested, ServerState.Login]
  servers.forEach((s, i) => l.moveServer(s, states[i]))
  servers[0].client = c1
  c1.server = servers[0]
  servers[0].closeOnRelease = true
  appCount.servers = 6
  aliceCount.servers = 6
  // What ServerConn.info() would say of each: the pool app/alice, logged in to 10.0.0.1:5433 as alice.
  const serverList: ServerInfo[] = servers.map((s) => ({
    id: s.id, database: 'app', poolUser: 'alice', user: 'alice', host: '10.0.0.1', port: 5433, state: s.state,
    linkedClientId: s.client?.id ?? null, applicationName: '', connectedAtMs: s.connectedAtMs, readyAtMs: s.readyAtMs,
    closeOnRelease: s.closeOnRelease, backendPid: s.backendPid, localAddr: '', localPort: 0,
  }))

  const clients: ClientInfo[] = [
    { id: 'C-1', database: 'app', user: 'alice', addr: '10.1.0.1', port: 50001, state: 'active', connectedAtMs: NOW - 60_000, requestAtMs: NOW - 5_000, linkedServerId: 'S-1', applicationName: 'billing' },
    { id: 'C-2', database: 'app', user: 'alice', addr: '10.1.0.2', port: 50002, state: 'active', connectedAtMs: NOW - 60_000, requestAtMs: NOW - 5_000, linkedServerId: null, applicationName: '' },
    { id: 'C-3', database: 'app', user: 'alice', addr: '10.1.0.3', port: 50003, state: 'waiting', connectedAtMs: NOW - 60_000, requestAtMs: NOW - 2_500, linkedServerId: null, applicationName: '', waitSinceMs: NOW - 2_500 },
    { id: 'C-9', database: 'pgbouncer', user: 'admin', addr: 'unix', port: 0, state: 'active', connectedAtMs: NOW, requestAtMs: NOW, linkedServerId: null, applicationName: 'psql' },
    { id: 'C-10', database: 'app', user: 'carol', addr: '10.1.0.4', port: 50004, state: 'login', connectedAtMs: NOW, requestAtMs: NOW, linkedServerId: null, applicationName: '' },
  ]
  const fact = (fd: number, pendingIn: number, pendingOut: number, remoteAddr: string, isTls = false): SocketFacts =>
    ({ fd, pendingIn, pendingOut, remoteAddr, isTls, params: new Map([['client_encoding', 'UTF8'], ['TimeZone', 'UTC']]) })
  // C-2 has bytes waiting to be sent; C-3 is on TLS; S-2 resolved its host to 10.0.0.1 and has input waiting.
  const facts = new Map<string, SocketFacts>([
    ['C-1', fact(11, 0, 0, '10.1.0.1')], ['C-2', fact(12, 0, 300, '10.1.0.2')], ['C-3', fact(-1, 0, 0, '10.1.0.3', true)],
    ['C-9', fact(19, 0, 0, '')], ['C-10', fact(20, 0, 0, '10.1.0.4')],
    ...[1, 2, 3, 4, 5, 6].map((n) => [`S-${n}`, fact(30 + n, n === 2 ? 40 : 0, 0, '10.0.0.1')] as [string, SocketFacts]),
  ])
  const primary = new Host('10.0.0.1', 5432, 'postgresql', NOW - 90_000)
  primary.record({ ok: true, inRecovery: false, patroni: 'primary', latencyMs: 2.345, error: null }, { rise: 2, fall: 2, banMs: 5000 }, NOW - 90_000)
  const standby = new Host('10.0.0.2', 5432, 'postgresql', NOW - 90_000)
  standby.record({ ok: true, inRecovery: true, patroni: 'primary', latencyMs: 3, error: null }, { rise: 2, fall: 2, banMs: 5000 }, NOW - 60_000)
  standby.bannedUntilMs = NOW + 4_000
  standby.lastError = 'connection refused'
  standby.region = 'eu-west'
  primary.servers = 3
  const view = {
    switchoverCalls: [] as Array<[string, string | null, number | null]>,
    switchoverResult: {
      database: 'app', from: '10.0.0.1:5432', to: '10.0.0.2:5432', ok: true, error: null, startedAtMs: NOW - 5_000, totalMs: 812, cancelled: 0,
      phases: [{ name: 'hold', ms: 1, note: '2 pool(s)' }, { name: 'drain', ms: 40, note: 'all finished' }, { name: 'promote', ms: 700, note: 'through Patroni' }, { name: 'retarget', ms: 70, note: 'new primary 10.0.0.2:5432' }, { name: 'resume', ms: 1, note: '' }],
    } as SwitchoverReport,
    hosts: () => [{ host: primary, databases: ['app', 'app_ro'] }, { host: standby, databases: ['app_ro'] }],
    async switchover(db: string, to: string | null, timeoutMs: number | null) {
      view.switchoverCalls.push([db, to, timeoutMs])
      if (db === 'nosuch') throw new Error('database nosuch has no several hosts to switch over between')
      return view.switchoverResult
    },
    switchovers: () => [view.switchoverResult],
    fleet: () => [],
    peers: () => [],
    peerPools: () => [],
    fleetCommand: () => Promise.reject(new Error('not in a fleet: [tidepool] fleet_etcd is not set')),
    fleetSwitchoverCalls: [] as Array<[string, string | null, number | null]>,
    fleetSwitchoverResult: {
      rows: [{ node: 'a', outcome: 'ok', ms: 1700, held_ms: 1650, phases: 'hold=0 drain=5 promote=1600 retarget=40 resume=1' }, { node: 'b', outcome: 'ok', ms: 1710, held_ms: 1660, phases: 'hold=1 drain=6 promote=1610 retarget=40 resume=1' }],
      missing: [], timeoutMs: 4000, error: null, primary: '10.0.0.2:5432', promoteMs: 1590,
    } as FleetSwitchoverResult,
    async fleetSwitchover(db: string, to: string | null, timeoutMs: number | null) {
      view.fleetSwitchoverCalls.push([db, to, timeoutMs])
      return view.fleetSwitchoverResult
    },
    isSuspended: false,
    setCalls: [] as Array<[string, string]>,
    setResult: { ok: true, warnings: [] } as SetOutcome,
    facts,
    suspend: async () => { view.isSuspended = true },
    hasPausedDatabases: () => view.pausedDb.size > 0,
    set(key: string, value: string) {
      view.setCalls.push([key, value])
      return view.setResult
    },
    sockets: () => view.facts,
    listenerSockets: () => [{ fd: 7, addr: '127.0.0.1', port: 6432 }],
    memoryUsage: () => ({ rss: 50 * 1024 * 1024, heapTotal: 20 * 1024 * 1024, heapUsed: 12 * 1024 * 1024, external: 3 * 1024 * 1024, arrayBuffers: 1024 * 1024 }),
    pausedDb: new Set<string>(),
    isGlobalPaused: false,
    shutdowns: [] as ShutdownMode[],
    reloadResult: { ok: true, errors: [] as string[] },
    isShuttingDown: false,
    version: 'tidepool 0.1.0',
    pools: (nowMs: number) => [reports, app].map((p) => p.row(nowMs)),
    serverList,
    servers: () => view.serverList,
    clients: () => clients,
    config: () => config,
    pause(db: string | null) {
      if (db === null) view.isGlobalPaused = true
      else view.pausedDb.add(db)
    },
    resume(db: string | null) {
      if (db === null) { view.isGlobalPaused = false; view.isSuspended = false }
      else view.pausedDb.delete(db)
    },
    isPaused: (db: string | null) => (db === null ? view.isGlobalPaused : view.pausedDb.has(db)),
    stats: () => [{
      database: 'app',
      totals: Object.assign(new PoolStats(), { serverAssignments: 5, xacts: 6, queries: 15, received: 1000, sent: 2000, xactTimeUs: 600.4, queryTimeUs: 300, waitTimeUs: 50, clientParses: 9, serverParses: 10, binds: 11, clientLogins: 16 }),
      averages: { serverAssignments: 1, xacts: 2, queries: 3, received: 4, sent: 5, xactTimeUs: 6, queryTimeUs: 7, waitTimeUs: 8, clientParses: 12, serverParses: 13, binds: 14, clientLogins: 17 },
    }],
    reload: async () => view.reloadResult,
    reconnect: () => {},
    waitClose: async () => {},
    setDisabled: () => {},
    isDisabled: () => false,
    kill: () => {},
    killClient: () => false,
    shutdown(mode: ShutdownMode) {
      view.shutdowns.push(mode)
      view.isShuttingDown = true
    },
  }
  return { view, run: async (sql, opts) => parseReply(await runConsoleQuery(sql, view, { nowMs: NOW, ...opts })) }
}

// ---- tests ----

for (const c of COLUMN_CASES) {
  test(`${c.sql}: PgBouncer's columns in order, with its type OIDs`, async () => {
    const fx = await fixture()
    const r = await fx.run(c.sql)
    assert.equal(r.error, null)
    assert.deepEqual(r.columns?.map((x) => x.name), c.names)
    assert.deepEqual(r.columns?.map((x) => x.typeOid), oids(c.types))
    assert.equal(r.tag, 'SHOW')
  })
}

test('SHOW POOLS counts each list of the real pools, sorted by database and user, with the console pool', async () => {
  const fx = await fixture()
  const rows = records(await fx.run('SHOW POOLS'))
  assert.deepEqual(rows.map((x) => `${x.database}/${x.user}`), ['app/alice', 'pgbouncer/pgbouncer', 'reports/bob'])
  assert.deepEqual(rows[0], {
    database: 'app', user: 'alice', cl_active: '2', cl_waiting: '1', cl_active_cancel_req: '0', cl_waiting_cancel_req: '0',
    sv_active: '1', sv_active_cancel: '0', sv_being_canceled: '0', sv_idle: '2', sv_used: '1', sv_tested: '1', sv_login: '1',
    maxwait: '2', maxwait_us: '500000', pool_mode: 'transaction', load_balance_hosts: 'round-robin',
  })
  assert.equal(rows[1].cl_active, '1', 'the console client')
  assert.equal(rows[1].pool_mode, 'statement')
  assert.equal(rows[2].maxwait, '0')
  assert.equal(rows[2].pool_mode, 'session')
  assert.equal(rows[2].load_balance_hosts, null, 'one host: NULL')
})

test('SHOW DATABASES: configured entries, the admin database, counts and pause state', async () => {
  const fx = await fixture()
  fx.view.pausedDb.add('reports')
  const rows = records(await fx.run('SHOW DATABASES'))
  assert.deepEqual(rows.map((x) => x.name), ['app', 'pgbouncer', 'reports'])
  assert.deepEqual(rows[0], {
    name: 'app', host: '10.0.0.1,10.0.0.2', port: '5433', database: 'appdb', force_user: null, pool_size: '7',
    min_pool_size: '0', reserve_pool_size: '0', server_lifetime: '3600', pool_mode: 'transaction',
    load_balance_hosts: 'round-robin', max_connections: '0', current_connections: '6', max_client_connections: '0',
    current_client_connections: '3', paused: '0', disabled: '0', reserve_pool: '0',
  })
  assert.deepEqual(rows[1], {
    name: 'pgbouncer', host: null, port: '6432', database: 'pgbouncer', force_user: 'pgbouncer', pool_size: '2',
    min_pool_size: '0', reserve_pool_size: '0', server_lifetime: '3600', pool_mode: 'statement', load_balance_hosts: null,
    max_connections: '0', current_connections: '0', max_client_connections: '0', current_client_connections: '1',
    paused: '0', disabled: '0', reserve_pool: '0',
  })
  assert.equal(rows[2].force_user, 'reporter')
  assert.equal(rows[2].pool_size, '20', 'default_pool_size')
  assert.equal(rows[2].max_connections, '4')
  assert.equal(rows[2].pool_mode, null, 'no override: NULL')
  assert.equal(rows[2].paused, '1')
})

test('SHOW DATABASES lists names made on demand through the * entry', async () => {
  const fx = await fixture(INI.replace('[users]', '* = host=10.0.0.5\n[users]'))
  const rows = records(await fx.run('SHOW DATABASES'))
  assert.deepEqual(rows.map((x) => x.name), ['app', 'pgbouncer', 'reports'], 'the * entry itself is not a row')
})

test('SHOW CLIENTS: pooled clients (not those still logging in), idle when active without a server', async () => {
  const fx = await fixture()
  const rows = records(await fx.run('SHOW CLIENTS'))
  assert.deepEqual(rows.map((x) => `${x.ptr}:${x.state}`), ['C-1:active', 'C-2:idle', 'C-3:waiting', 'C-9:idle'])
  const [c1, , c3] = rows
  assert.equal(c1.type, 'C')
  assert.equal(c1.user, 'alice')
  assert.equal(c1.database, 'app')
  assert.equal(c1.replication, 'none')
  assert.equal(c1.addr, '10.1.0.1')
  assert.equal(c1.port, '50001')
  assert.equal(c1.link, 'S-1')
  assert.equal(c1.application_name, 'billing')
  assert.equal(c1.id, '1')
  assert.equal(c1.connect_time, formatTime(NOW - 60_000))
  assert.equal(c1.request_time, formatTime(NOW - 5_000))
  assert.equal(c1.wait, '0')
  assert.deepEqual([c3.wait, c3.wait_us], ['2', '500000'])
})

test('SHOW SERVERS: per pool active, idle, used, tested, then new (logging in), linked to their clients', async () => {
  const fx = await fixture()
  const rows = records(await fx.run('SHOW SERVERS'))
  assert.deepEqual(rows.map((x) => `${x.ptr}:${x.state}`), ['S-1:active', 'S-2:idle', 'S-3:idle', 'S-4:used', 'S-5:tested', 'S-6:new'])
  const s1 = rows[0]
  assert.equal(s1.type, 'S')
  assert.equal(s1.user, 'alice')
  assert.equal(s1.database, 'app')
  assert.equal(s1.addr, '10.0.0.1')
  assert.equal(s1.port, '5433')
  assert.equal(s1.link, 'C-1')
  assert.equal(s1.remote_pid, '4001')
  assert.equal(s1.close_needed, '1')
  assert.equal(s1.id, '1')
  assert.equal(s1.connect_time, formatTime(NOW - 120_000))
  assert.equal(rows[1].link, '')
  assert.equal(rows[1].close_needed, '0')
})

test('SHOW SERVERS and SOCKETS put servers in PgBouncer\'s state order whatever order the view lists them in', async () => {
  const fx = await fixture()
  const before = [(await fx.run('SHOW SERVERS')).rows, (await fx.run('SHOW SOCKETS')).rows]
  // Logging in first, active last; the two idle ones (S-2, S-3) keep their order, as on their list.
  const [s1, s2, s3, s4, s5, s6] = fx.view.serverList
  fx.view.serverList = [s6, s5, s2, s4, s3, s1]
  assert.deepEqual([(await fx.run('SHOW SERVERS')).rows, (await fx.run('SHOW SOCKETS')).rows], before)
})

test('SHOW USERS: overrides as text, limits, server and client counts', async () => {
  const fx = await fixture()
  const rows = records(await fx.run('SHOW USERS'))
  assert.deepEqual(rows.map((x) => x.name), ['alice', 'bob', 'pgbouncer'])
  assert.deepEqual(rows[0], {
    name: 'alice', pool_size: '3', reserve_pool_size: '', pool_mode: 'session', max_user_connections: '9',
    current_connections: '6', max_user_client_connections: '0', current_client_connections: '3',
  })
  assert.deepEqual(rows[1], {
    name: 'bob', pool_size: '', reserve_pool_size: '', pool_mode: null, max_user_connections: '0',
    current_connections: '0', max_user_client_connections: '0', current_client_connections: '0',
  })
})

test('SHOW LISTS: one row per list, in PgBouncer 1.25 order', async () => {
  const fx = await fixture()
  const rows = (await fx.run('SHOW LISTS')).rows
  assert.deepEqual(rows.map((r) => r[0]), LIST_NAMES)
  const items = Object.fromEntries(rows.map((r) => [r[0], r[1]]))
  assert.equal(items.databases, '3')
  assert.equal(items.users, '3')
  assert.equal(items.pools, '3')
  assert.equal(items.used_clients, '5')
  assert.equal(items.login_clients, '1')
  assert.equal(items.used_servers, '6')
  assert.equal(items.free_clients, '0')
})

test('SHOW CONFIG, SHOW VERSION and SHOW STATE', async () => {
  const fx = await fixture()
  const cfg = await fx.run('SHOW CONFIG')
  const expected = configRows(fx.view.config()).map((r) => [r.key, r.value, r.default, r.changeable])
  assert.deepEqual(cfg.rows, expected)
  assert.ok(cfg.rows.some((r) => r[0] === 'default_pool_size' && r[1] === '20'))
  assert.deepEqual((await fx.run('SHOW VERSION')).rows, [['tidepool 0.1.0']])
  assert.deepEqual((await fx.run('SHOW STATE')).rows, [['active', 'yes'], ['paused', 'no'], ['suspended', 'no']])
  fx.view.isGlobalPaused = true
  assert.deepEqual((await fx.run('SHOW STATE')).rows, [['active', 'no'], ['paused', 'yes'], ['suspended', 'no']])
})

test('SHOW HELP is a NOTICE "Console usage" listing commands, then CommandComplete SHOW', async () => {
  const fx = await fixture()
  const r = await fx.run('SHOW HELP')
  assert.equal(r.codes, 'NCZ')
  assert.equal(r.tag, 'SHOW')
  assert.equal(r.notices[0].severity, 'NOTICE')
  assert.equal(r.notices[0].code, '00000')
  assert.equal(r.notices[0].message, 'Console usage')
  for (const cmd of ['SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION', 'PAUSE [<db>]', 'RESUME [<db>]', 'RELOAD', 'SHUTDOWN']) {
    assert.ok(r.notices[0].detail?.includes(`\t${cmd}\n`) || r.notices[0].detail?.includes(`\t${cmd}`), cmd)
  }
})

test('SHOW of a parameter clients ask servers for gets PgBouncer\'s fixed value', async () => {
  const fx = await fixture()
  const r = await fx.run('show client_encoding')
  assert.deepEqual(r.columns?.map((c) => c.name), ['client_encoding'])
  assert.deepEqual(r.rows, [['UTF-8']])
})

// Spelling: case, spaces, a trailing ';', quoted words, SELECT as SHOW.
for (const sql of ['show pools', 'SHOW POOLS;', '  Show\tPools  ;  ', 'SHOW "pools"', '"show" pools', 'SELECT pools']) {
  test(`the console accepts ${JSON.stringify(sql)}`, async () => {
    const fx = await fixture()
    const r = await fx.run(sql)
    assert.equal(r.error, null, r.error?.message)
    assert.deepEqual(r.columns?.map((c) => c.name), POOLS)
  })
}

// Errors as PgBouncer sends them: ERROR, its SQLSTATE, its text word for word.
const ERROR_CASES: Array<{ name: string; sql: string; code: string; message: string; setup?: (fx: Fixture) => void; opts?: ConsoleOptions }> = [
  { name: 'unknown command', sql: 'hello', code: '08P01', message: "invalid command 'hello', use SHOW HELP;" },
  { name: 'unknown SHOW', sql: 'SHOW FOO;', code: '08P01', message: "invalid command 'SHOW FOO;', use SHOW HELP;" },
  { name: 'two statements', sql: 'SHOW POOLS; SHOW USERS', code: '08P01', message: "invalid command 'SHOW POOLS; SHOW USERS', use SHOW HELP;" },
  { name: 'empty query', sql: '', code: '08P01', message: "invalid command '', use SHOW HELP;" },
  { name: 'bare SHOW', sql: 'SHOW', code: '08P01', message: "invalid command 'SHOW', use SHOW HELP;" },
  { name: 'RELOAD with an argument', sql: 'RELOAD now', code: '08P01', message: "invalid command 'RELOAD now', use SHOW HELP;" },
  { name: 'SHUTDOWN with a bad mode', sql: 'SHUTDOWN soon', code: '08P01', message: "invalid command 'SHUTDOWN soon', use SHOW HELP;" },
  { name: 'a command word longer than PgBouncer reads', sql: 'abcdefghijklmnopq', code: '08P01', message: 'bad arguments' },
  { name: 'second PAUSE', sql: 'PAUSE', code: '08P01', message: 'already suspended/paused', setup: (fx) => { fx.view.isGlobalPaused = true } },
  { name: 'PAUSE db while paused', sql: 'PAUSE app', code: '08P01', message: 'already suspended/paused', setup: (fx) => { fx.view.isGlobalPaused = true } },
  { name: 'PAUSE of an unknown database', sql: 'PAUSE nosuch', code: '08P01', message: 'no such database: nosuch' },
  { name: 'PAUSE of the console', sql: 'PAUSE pgbouncer', code: '08P01', message: 'cannot pause admin db: pgbouncer' },
  { name: 'RESUME when not paused', sql: 'RESUME', code: '08P01', message: 'pooler is not paused/suspended' },
  { name: 'RESUME during shutdown', sql: 'RESUME', code: '08P01', message: 'pooler is shutting down', setup: (fx) => { fx.view.isGlobalPaused = true; fx.view.isShuttingDown = true } },
  { name: 'RESUME of a database not paused', sql: 'RESUME app', code: '08P01', message: 'database app is not paused' },
  { name: 'RESUME of an unknown database', sql: 'RESUME nosuch', code: '08P01', message: 'no such database: nosuch' },
  { name: 'RELOAD that fails', sql: 'RELOAD', code: 'F0000', message: 'RELOAD failed, see logs for additional details', setup: (fx) => { fx.view.reloadResult = { ok: false, errors: ['x.ini:3: bad'] } } },
  { name: 'PAUSE by a stats user', sql: 'PAUSE', code: '08P01', message: 'admin access needed', opts: { isAdmin: false } },
  { name: 'SHUTDOWN by a stats user', sql: 'SHUTDOWN', code: '08P01', message: 'admin access needed', opts: { isAdmin: false } },
  { name: 'SHOW FDS by a stats user', sql: 'SHOW FDS', code: '08P01', message: 'admin access needed', opts: { isAdmin: false } },
  { name: 'SUSPEND by a stats user', sql: 'SUSPEND', code: '08P01', message: 'admin access needed', opts: { isAdmin: false } },
  { name: 'SUSPEND with an argument', sql: 'SUSPEND app', code: '08P01', message: "invalid command 'SUSPEND app', use SHOW HELP;" },
  { name: 'SUSPEND while paused', sql: 'SUSPEND', code: '08P01', message: 'already suspended/paused', setup: (fx) => { fx.view.isGlobalPaused = true } },
  { name: 'SUSPEND again', sql: 'SUSPEND', code: '08P01', message: 'already suspended/paused', setup: (fx) => { fx.view.isSuspended = true } },
  { name: 'PAUSE while suspended', sql: 'PAUSE', code: '08P01', message: 'already suspended/paused', setup: (fx) => { fx.view.isSuspended = true } },
  { name: 'SUSPEND with a paused database', sql: 'SUSPEND', code: '08P01', message: 'cannot suspend with paused databases', setup: (fx) => { fx.view.pausedDb.add('app') } },
  { name: 'SET by a stats user', sql: 'SET default_pool_size = 30', code: '08P01', message: 'admin access needed', opts: { isAdmin: false } },
  { name: 'SET that the view refuses', sql: 'SET nosuch = 1', code: '08P01', message: 'SET failed', setup: (fx) => { fx.view.setResult = { ok: false, reason: 'unknown parameter: nosuch' } } },
  { name: 'SET of an empty key', sql: 'SET "" = 1', code: '08P01', message: 'bad arguments' },
  { name: 'SET of a key longer than PgBouncer reads', sql: `SET ${'k'.repeat(64)} = 1`, code: '08P01', message: 'bad arguments' },
  { name: 'SET of a value longer than PgBouncer reads', sql: `SET verbose = '${'v'.repeat(254)}'`, code: '08P01', message: 'bad arguments' },
  { name: 'SET without a value', sql: 'SET verbose', code: '08P01', message: "invalid command 'SET verbose', use SHOW HELP;" },
  { name: 'SET of a dotted word', sql: 'SET query_timeout = 1.5', code: '08P01', message: "invalid command 'SET query_timeout = 1.5', use SHOW HELP;" },
  { name: 'KILL of a database that does not exist', sql: 'KILL nosuchdb', code: '08P01', message: 'no such database: nosuchdb' },
  { name: 'KILL_CLIENT of an id nobody has', sql: 'KILL_CLIENT 999', code: '08P01', message: 'client 999 not found' },
]

for (const c of ERROR_CASES) {
  test(`error: ${c.name} (${JSON.stringify(c.sql)})`, async () => {
    const fx = await fixture()
    c.setup?.(fx)
    const wasPaused = fx.view.isGlobalPaused
    const r = await fx.run(c.sql, c.opts)
    assert.equal(r.codes, 'EZ')
    assert.equal(r.error?.severity, 'ERROR')
    assert.equal(r.error?.code, c.code)
    assert.equal(r.error?.message, c.message)
    assert.equal(fx.view.isGlobalPaused, wasPaused, 'a refused command changes nothing')
    assert.deepEqual(fx.view.shutdowns, [])
    if (c.code !== '08P01' || c.message !== 'SET failed') assert.deepEqual(fx.view.setCalls, [])
  })
}

test('RELOAD failure carries the errors as DETAIL', async () => {
  const fx = await fixture()
  fx.view.reloadResult = { ok: false, errors: ['x.ini:3: bad', 'x.ini:4: worse'] }
  const r = await fx.run('RELOAD')
  assert.equal(r.error?.detail, 'x.ini:3: bad\nx.ini:4: worse')
})

test('PAUSE, PAUSE again, RESUME, RESUME again: PgBouncer\'s tags and errors, state changed through the view', async () => {
  const fx = await fixture()
  const steps: Array<[string, string]> = [
    ['PAUSE', 'tag PAUSE'],
    ['PAUSE', 'error already suspended/paused'],
    ['RESUME', 'tag RESUME'],
    ['RESUME', 'error pooler is not paused/suspended'],
    ['PAUSE app', 'tag PAUSE'],
    ['PAUSE app', 'tag PAUSE'], // PgBouncer lets a database be paused twice
    ['RESUME', 'error pooler is not paused/suspended'], // RESUME without a name does not resume a database
    ['RESUME app', 'tag RESUME'],
    ['RESUME app', 'error database app is not paused'],
  ]
  for (const [sql, expected] of steps) {
    const r = await fx.run(sql)
    assert.equal(r.error !== null ? `error ${r.error.message}` : `tag ${r.tag}`, expected, sql)
  }
  assert.equal(fx.view.isGlobalPaused, false)
  assert.deepEqual([...fx.view.pausedDb], [])
})

test('PAUSE answers only once the view says the servers are released', async () => {
  const fx = await fixture()
  let release!: () => void
  const released = new Promise<void>((resolve) => { release = resolve })
  fx.view.pause = (db) => {
    fx.view.isGlobalPaused = db === null
    return released
  }
  let isAnswered = false
  const reply = runConsoleQuery('PAUSE', fx.view).then((b) => { isAnswered = true; return b })
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(isAnswered, false)
  assert.equal((await fx.run('PAUSE')).error?.message, 'already suspended/paused', 'paused from the moment it was asked')
  release()
  assert.equal(parseReply(await reply).tag, 'PAUSE')
})

test('RELOAD that succeeds answers RELOAD', async () => {
  const fx = await fixture()
  const r = await fx.run('reload;')
  assert.equal(r.codes, 'CZ')
  assert.equal(r.tag, 'RELOAD')
})

test('SHUTDOWN answers nothing, as PgBouncer; WAIT_FOR_SERVERS and WAIT_FOR_CLIENTS answer SHUTDOWN', async () => {
  const fx = await fixture()
  assert.equal((await runConsoleQuery('SHUTDOWN', fx.view)).length, 0)
  assert.equal((await fx.run('shutdown wait_for_servers')).tag, 'SHUTDOWN')
  assert.equal((await fx.run('SHUTDOWN WAIT_FOR_CLIENTS;')).tag, 'SHUTDOWN')
  assert.deepEqual(fx.view.shutdowns, ['immediate', 'transactions', 'clients'])
})

test('a stats user may SHOW', async () => {
  const fx = await fixture()
  const r = await fx.run('SHOW POOLS', { isAdmin: false })
  assert.equal(r.error, null)
  assert.equal(r.rows.length, 3)
})

test('SET of a parameter clients set by habit is acknowledged and ignored, even for a stats user', async () => {
  const fx = await fixture()
  const ok = await fx.run("SET client_encoding = 'UTF8'", { isAdmin: false })
  assert.equal(ok.codes, 'NCZ')
  assert.equal(ok.notices[0].message, 'SET ignored')
  assert.equal(ok.tag, 'SET')
  assert.deepEqual(fx.view.setCalls, [])
})

test('SET key = value goes to the view, unquoted; the tag is PgBouncer\'s SET key=value; warnings become NOTICEs', async () => {
  const fx = await fixture()
  const r = await fx.run('SET default_pool_size = 30')
  assert.equal(r.codes, 'CZ')
  assert.equal(r.tag, 'SET default_pool_size=30')
  assert.equal((await fx.run("set server_reset_query to 'DISCARD ALL';")).tag, 'SET server_reset_query=DISCARD ALL')
  assert.equal((await fx.run("SET application_name = 'it''s'")).tag, "SET application_name=it's")
  assert.equal((await fx.run('SET "pool_mode" = "session"')).tag, 'SET pool_mode=session')
  assert.deepEqual(fx.view.setCalls, [['default_pool_size', '30'], ['server_reset_query', 'DISCARD ALL'], ['application_name', "it's"], ['pool_mode', 'session']])
  fx.view.setResult = { ok: true, warnings: ['tcp_keepcnt is accepted but not applied'] }
  const warned = await fx.run('SET tcp_keepcnt = 3')
  assert.equal(warned.codes, 'NCZ')
  assert.equal(warned.notices[0].message, 'tcp_keepcnt is accepted but not applied')
  fx.view.setResult = { ok: false, reason: 'listen_port cannot be changed at runtime; set it in the config file and restart' }
  const refused = await fx.run('SET listen_port = 7000')
  assert.equal(refused.error?.message, 'SET failed')
  assert.equal(refused.error?.detail, 'listen_port cannot be changed at runtime; set it in the config file and restart')
})

test('SUSPEND answers once the view has suspended; SHOW STATE says so; RESUME undoes it', async () => {
  const fx = await fixture()
  assert.equal((await fx.run('SUSPEND')).tag, 'SUSPEND')
  assert.equal(fx.view.isSuspended, true)
  assert.deepEqual((await fx.run('SHOW STATE')).rows, [['active', 'no'], ['paused', 'no'], ['suspended', 'yes']])
  assert.equal((await fx.run('RESUME')).tag, 'RESUME')
  assert.equal(fx.view.isSuspended, false)
  assert.equal((await fx.run('RESUME')).error?.message, 'pooler is not paused/suspended')
})

test('SHOW SOCKETS: per pool clients then servers with PgBouncer\'s cl_/sv_ states, the console\'s pool in order, login clients last', async () => {
  const fx = await fixture()
  const rows = records(await fx.run('SHOW SOCKETS'))
  assert.deepEqual(rows.map((r) => `${r.ptr} ${r.state}`), [
    'C-1 cl_active', 'C-2 cl_active', 'C-3 cl_waiting',
    'S-1 sv_active', 'S-2 sv_idle', 'S-3 sv_idle', 'S-4 sv_used', 'S-5 sv_tested', 'S-6 sv_login',
    'C-9 cl_active', 'C-10 cl_login',
  ])
  const c2 = rows[1]
  assert.deepEqual([c2.send_avail, c2.recv_pos, c2.pkt_avail, c2.pkt_pos, c2.pkt_remain, c2.send_pos, c2.send_remain], ['300', '0', '0', '0', '0', '0', '0'])
  assert.equal(rows[4].recv_pos, '40')
  assert.equal(rows[4].pkt_avail, '40')
  assert.equal(rows[3].link, 'C-1')
  assert.equal(rows[0].link, 'S-1')
})

test('SHOW ACTIVE_SOCKETS: only sockets with bytes waiting, or linked to a peer now', async () => {
  const fx = await fixture()
  const rows = records(await fx.run('SHOW ACTIVE_SOCKETS'))
  assert.deepEqual(rows.map((r) => `${r.ptr} ${r.state}`), ['C-1 cl_active', 'C-2 cl_active', 'S-1 sv_active', 'S-2 sv_idle'])
})

test('SHOW FDS: listeners, then sockets in PgBouncer\'s order, TLS left out, and never a secret', async () => {
  const fx = await fixture()
  const rows = records(await fx.run('SHOW FDS'))
  assert.deepEqual(rows.map((r) => `${r.fd} ${r.task}`), ['7 pooler', '20 client', '11 client', '12 client', '31 server', '32 server', '33 server', '34 server', '35 server', '36 server'])
  assert.deepEqual(rows[0], {
    fd: '7', task: 'pooler', user: null, database: null, addr: '127.0.0.1', port: '6432', cancel: '0', link: '0',
    client_encoding: null, std_strings: null, datestyle: null, timezone: null, password: null, scram_client_key: null, scram_server_key: null,
  })
  assert.deepEqual(rows[2], {
    fd: '11', task: 'client', user: 'alice', database: 'app', addr: '10.1.0.1', port: '50001', cancel: '0', link: '31',
    client_encoding: 'UTF8', std_strings: null, datestyle: null, timezone: 'UTC', password: null, scram_client_key: null, scram_server_key: null,
  })
  assert.equal(rows[4].link, '11')
  assert.equal(rows[4].addr, '10.0.0.1')
  for (const r of rows) assert.deepEqual([r.password, r.scram_client_key, r.scram_server_key, r.cancel], [null, null, null, '0'])
})

test('SHOW MEM: counts of tidepool\'s objects, socket buffer bytes, and process memory in KiB', async () => {
  const fx = await fixture()
  const rows = (await fx.run('SHOW MEM')).rows
  const byName = new Map(rows.map((r) => [r[0], r.slice(1)]))
  assert.deepEqual([...byName.keys()], ['user_cache', 'db_cache', 'pool_cache', 'server_cache', 'client_cache',
    'socket_recv_buffers', 'socket_send_buffers', 'node_heap', 'node_external', 'node_array_buffers', 'node_rss'])
  assert.deepEqual(byName.get('server_cache'), ['0', '6', '0', '0'])
  assert.deepEqual(byName.get('client_cache'), ['0', '5', '0', '0'])
  assert.deepEqual(byName.get('pool_cache'), ['0', '3', '0', '0'])
  assert.deepEqual(byName.get('socket_send_buffers'), ['1', '300', '0', '300'])
  assert.deepEqual(byName.get('socket_recv_buffers'), ['1', '40', '0', '40'])
  assert.deepEqual(byName.get('node_heap'), ['1024', '12288', '8192', String(20 * 1024 * 1024)])
  assert.deepEqual(byName.get('node_rss'), ['1024', '51200', '0', String(50 * 1024 * 1024)])
})

test('SHOW DNS_HOSTS: one row per configured host name, with the addresses live servers resolved it to; DNS_ZONES is empty', async () => {
  const fx = await fixture(INI.replace('host=10.0.0.9', 'host=db.example.com,10.0.0.8,/var/run/postgresql'))
  assert.deepEqual((await fx.run('SHOW DNS_HOSTS')).rows, [['db.example.com', '0', '']])
  const named = await fixture(INI.replace('host=10.0.0.1,10.0.0.2', 'host=db.internal,other.internal'))
  // The fixture's servers target 10.0.0.1; point them at db.internal as if it resolved there.
  for (const s of named.view.serverList) s.host = 'db.internal'
  assert.deepEqual((await named.run('SHOW DNS_HOSTS')).rows, [['db.internal', '0', '10.0.0.1'], ['other.internal', '0', '']])
  assert.deepEqual((await fx.run('SHOW DNS_ZONES')).rows, [])
})

test('an exception in the view becomes an ERROR reply, never a rejected promise', async () => {
  const fx = await fixture()
  fx.view.pools = () => { throw new Error('boom') }
  const r = await fx.run('SHOW POOLS')
  assert.equal(r.error?.code, 'XX000')
  assert.equal(r.error?.message, 'admin command failed: boom')
})

test('formatTime writes local time as PgBouncer does: YYYY-MM-DD HH:MM:SS ZONE', () => {
  assert.match(formatTime(NOW), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+$/)
})


// PgBouncer's column lists, in order, from its src/stats.c (the doc says only "subset of SHOW
// STATS" for the other three, and the names differ): 1.25.2's plus client_login_count, added after
// it (pgbouncer commit 565e2092, "Add client login counter stat"; doc/usage.md on master).
const STATS_COLUMNS = ['database', 'total_server_assignment_count', 'total_xact_count', 'total_query_count', 'total_received', 'total_sent',
  'total_xact_time', 'total_query_time', 'total_wait_time', 'total_client_parse_count', 'total_server_parse_count', 'total_bind_count', 'total_client_login_count',
  'avg_server_assignment_count', 'avg_xact_count', 'avg_query_count', 'avg_recv', 'avg_sent', 'avg_xact_time', 'avg_query_time',
  'avg_wait_time', 'avg_client_parse_count', 'avg_server_parse_count', 'avg_bind_count', 'avg_client_login_count']
const STATS_TOTALS_COLUMNS = ['database', 'server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent',
  'xact_time', 'query_time', 'wait_time', 'client_parse_count', 'server_parse_count', 'bind_count', 'client_login_count']
const STATS_AVERAGES_COLUMNS = ['database', 'server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent',
  'xact_time', 'query_time', 'wait_time', 'avg_client_parse_count', 'avg_server_parse_count', 'avg_bind_count', 'avg_client_login_count']
// SHOW TOTALS's rows are named after PgBouncer's struct fields (client_bytes, ps_bind_count, ...).
const TOTALS_FIELDS = ['server_assignment_count', 'xact_count', 'query_count', 'client_bytes', 'server_bytes', 'xact_time', 'query_time',
  'wait_time', 'ps_client_parse_count', 'ps_server_parse_count', 'ps_bind_count', 'client_login_count']

test('SHOW STATS, STATS_TOTALS, STATS_AVERAGES and TOTALS have PgBouncer\'s columns and the counters', async () => {
  const fx = await fixture()
  const run = (sql: string) => fx.run(sql)
  const stats = await run('SHOW STATS')
  const names = (r: { columns: Array<{ name: string }> | null }) => (r.columns ?? []).map((c) => c.name)
  // total_requests is appended on purpose: Debian's prometheus-pgbouncer-exporter 1.7 reads it.
  assert.deepEqual(names(stats), [...STATS_COLUMNS, 'total_requests'])
  assert.deepEqual((stats.columns ?? []).map((c) => c.typeOid), [25, ...STATS_COLUMNS.slice(1).map(() => 20), 20])
  assert.equal(stats.rows[0][25], '15', 'total_requests equals total_query_count')
  assert.deepEqual(stats.rows[0].slice(0, 13), ['app', '5', '6', '15', '1000', '2000', '600', '300', '50', '9', '10', '11', '16'])
  assert.deepEqual(stats.rows[0].slice(13, 25), ['1', '2', '3', '4', '5', '6', '7', '8', '12', '13', '14', '17'])
  const totals = await run('SHOW STATS_TOTALS')
  assert.deepEqual(names(totals), STATS_TOTALS_COLUMNS)
  assert.deepEqual(totals.rows[0], ['app', '5', '6', '15', '1000', '2000', '600', '300', '50', '9', '10', '11', '16'])
  const avgs = await run('SHOW STATS_AVERAGES')
  assert.deepEqual(names(avgs), STATS_AVERAGES_COLUMNS)
  assert.deepEqual(avgs.rows[0], ['app', '1', '2', '3', '4', '5', '6', '7', '8', '12', '13', '14', '17'])
  const all = await run('SHOW TOTALS')
  assert.deepEqual(names(all), ['name', 'value'])
  assert.deepEqual(all.rows.map((r: Array<string | null>) => r[0]), [...TOTALS_FIELDS.map((f) => `total_${f}`), ...TOTALS_FIELDS.map((f) => `avg_${f}`)])
  assert.ok(all.rows.some((r: Array<string | null>) => r[0] === 'total_xact_count' && r[1] === '6'))
  assert.ok(all.rows.some((r: Array<string | null>) => r[0] === 'total_client_login_count' && r[1] === '16'))
})

// ---- tidepool's own: hosts and switchover ----

test('SHOW HOSTS lists each monitored host with role, health, agreement of the role sources, its databases and region', async () => {
  const fx = await fixture()
  const r = await fx.run('SHOW HOSTS')
  // region comes last: scripts that read the earlier columns by position keep working.
  assert.deepEqual(r.columns?.map((c) => c.name), ['host', 'port', 'backend', 'role', 'health', 'role_sources_agree', 'last_change', 'check_ms', 'servers', 'banned_until', 'last_error', 'databases', 'region'])
  assert.deepEqual(r.rows[0], ['10.0.0.1', '5432', 'postgresql', 'primary', 'up', 'yes', new Date(NOW - 90_000).toISOString(), '2.3', '3', null, null, 'app,app_ro', null])
  assert.equal(r.rows[1][12], 'eu-west')
  assert.deepEqual(r.rows[1].slice(3, 6), ['unknown', 'banned', 'no'])
  assert.equal(r.rows[1][9], new Date(NOW + 4_000).toISOString())
  assert.equal(r.rows[1][10], 'connection refused')
})

test('SWITCHOVER db TO host TIMEOUT s runs the switchover and answers one row per phase', async () => {
  const fx = await fixture()
  const r = await fx.run(`SWITCHOVER app TO '10.0.0.2:5432' TIMEOUT 12.5;`)
  assert.equal(r.error, null)
  assert.deepEqual(fx.view.switchoverCalls, [['app', '10.0.0.2:5432', 12_500]])
  assert.deepEqual(r.columns?.map((c) => c.name), ['phase', 'ms', 'note'])
  assert.deepEqual(r.rows.map((row) => row[0]), ['hold', 'drain', 'promote', 'retarget', 'resume'])
  assert.equal(r.tag, 'SWITCHOVER')
  await fx.run('switchover app to pg2')
  await fx.run('SWITCHOVER app')
  assert.deepEqual(fx.view.switchoverCalls.slice(1), [['app', 'pg2', null], ['app', null, null]])
})

test('SWITCHOVER: admins only, bad arguments, a failed switchover is an ERROR with its phases, and SHOW SWITCHOVER keeps the last one', async () => {
  const fx = await fixture()
  assert.equal((await fx.run('SWITCHOVER app', { isAdmin: false })).error?.message, 'admin access needed')
  assert.equal((await fx.run('SWITCHOVER app TIMEOUT 0')).error?.message, 'bad arguments')
  assert.match((await fx.run('SWITCHOVER app TIMEOUT soon')).error?.message ?? '', /^invalid command/)
  assert.match((await fx.run('SWITCHOVER nosuch')).error?.message ?? '', /no several hosts/)
  fx.view.switchoverResult = { ...fx.view.switchoverResult, ok: false, to: null, error: 'no new primary known within 1000 ms', phases: fx.view.switchoverResult.phases.filter((p) => p.name !== 'retarget') }
  const failed = await fx.run('SWITCHOVER app')
  assert.equal(failed.error?.code, '08P01')
  assert.equal(failed.error?.message, 'switchover of app failed: no new primary known within 1000 ms')
  assert.match(failed.error?.detail ?? '', /promote 700 ms \(through Patroni\)/)
  const show = await fx.run('SHOW SWITCHOVER')
  assert.deepEqual(show.columns?.map((c) => c.name), ['database', 'from', 'to', 'result', 'error', 'started', 'total_ms', 'hold_ms', 'drain_ms', 'promote_ms', 'retarget_ms', 'resume_ms', 'cancelled'])
  assert.deepEqual(show.rows[0].slice(0, 5), ['app', '10.0.0.1:5432', null, 'failed', 'no new primary known within 1000 ms'])
  assert.equal(show.rows[0][10], null, 'a phase that never ran is NULL')
})

test('FLEET SWITCHOVER db TO host TIMEOUT s: one row per node; an abort, a silent node and a failed node are ERRORs with the rows as DETAIL', async () => {
  const fx = await fixture()
  const r = await fx.run(`FLEET SWITCHOVER app TO '10.0.0.2:5432' TIMEOUT 4;`)
  assert.equal(r.error, null)
  assert.deepEqual(fx.view.fleetSwitchoverCalls, [['app', '10.0.0.2:5432', 4_000]])
  assert.deepEqual(r.columns?.map((c) => c.name), ['node', 'outcome', 'held_ms', 'ms', 'phases'])
  assert.deepEqual(r.rows.map((row) => row.slice(0, 3)), [['a', 'ok', '1650'], ['b', 'ok', '1660']])
  assert.equal(r.tag, 'FLEET')
  await fx.run('fleet switchover app')
  assert.deepEqual(fx.view.fleetSwitchoverCalls[1], ['app', null, null])
  assert.equal((await fx.run('FLEET SWITCHOVER app', { isAdmin: false })).error?.message, 'admin access needed')
  assert.equal((await fx.run('FLEET SWITCHOVER app TIMEOUT 0')).error?.message, 'bad arguments')
  assert.match((await fx.run('FLEET SWITCHOVER')).error?.message ?? '', /^invalid command/)

  const base = fx.view.fleetSwitchoverResult
  fx.view.fleetSwitchoverResult = { ...base, rows: base.rows.map((x) => ({ ...x, outcome: 'aborted by a: could not hold: b (a switchover of app is running)' })), error: 'could not hold: b (a switchover of app is running)', primary: null, promoteMs: null }
  const aborted = await fx.run('FLEET SWITCHOVER app')
  assert.equal(aborted.error?.code, '57014')
  assert.equal(aborted.error?.message, 'FLEET SWITCHOVER app aborted, every node released: could not hold: b (a switchover of app is running)')
  assert.match(aborted.error?.detail ?? '', /^answered: a aborted by a: .* \(held 1650 ms\), b /)
  fx.view.fleetSwitchoverResult = { ...base, rows: base.rows.slice(0, 1), missing: ['ghost'], error: 'no hold from ghost within 2400 ms' }
  assert.equal((await fx.run('FLEET SWITCHOVER app')).error?.message, 'FLEET SWITCHOVER app: no answer from ghost within 4000 ms (no hold from ghost within 2400 ms)')
  fx.view.fleetSwitchoverResult = { ...base, rows: [base.rows[0]!, { ...base.rows[1]!, outcome: 'no new primary known within 4000 ms' }] }
  assert.equal((await fx.run('FLEET SWITCHOVER app')).error?.message, 'FLEET SWITCHOVER app: failed on b (no new primary known within 4000 ms)')
})
