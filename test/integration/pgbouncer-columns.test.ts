// Every SHOW of tidepool's console against PgBouncer's, column by column: Debian's PgBouncer 1.18
// runs beside tidepool in front of the same PostgreSQL and answers the same SHOWs through its own
// console. Tools such as pgbouncer_exporter read the columns by name (and some by position), so a
// name that differs is a broken dashboard.
// Newer PgBouncers added and renamed columns; those lists are encoded below from PgBouncer 1.25.2's
// src/admin.c and src/stats.c (doc/usage.md lists the same columns but says only "subset of SHOW
// STATS" for STATS_TOTALS and STATS_AVERAGES, whose names differ), plus client_login_count, added
// after 1.25.2 (pgbouncer commit 565e2092 "Add client login counter stat", doc/usage.md on master).
// tidepool may append its documented extras (docs/architecture.md, "Differences from PgBouncer").
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import type pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { PGBOUNCER_BIN, startPgBouncer } from '../harness/pgbouncer.ts'
import { hasBinary } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const SOCKET_COLUMNS = ['type', 'user', 'database', 'replication', 'state', 'addr', 'port', 'local_addr', 'local_port',
  'connect_time', 'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls',
  'application_name', 'prepared_statements', 'id']
const SOCKET_DEBUG = ['recv_pos', 'pkt_pos', 'pkt_remain', 'send_pos', 'send_remain', 'pkt_avail', 'send_avail']
const TOTALS_FIELDS = ['server_assignment_count', 'xact_count', 'query_count', 'client_bytes', 'server_bytes', 'xact_time', 'query_time',
  'wait_time', 'ps_client_parse_count', 'ps_server_parse_count', 'ps_bind_count', 'client_login_count']

interface Expected {
  /** PgBouncer's newest columns (1.25.2, plus client_login_count); absent: 1.18's are still current. */
  newest?: string[]
  /** Columns of 1.18 that newer PgBouncers renamed or dropped. */
  dropped?: string[]
  /** tidepool's own columns, after PgBouncer's, each documented. */
  extras?: string[]
  /** For views whose rows are the list (LISTS, TOTALS): the first column's values, in order. */
  newestRows?: string[]
}

const EXPECTED: Record<string, Expected> = {
  POOLS: { newest: ['database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active',
    'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us', 'pool_mode', 'load_balance_hosts'] },
  DATABASES: {
    newest: ['name', 'host', 'port', 'database', 'force_user', 'pool_size', 'min_pool_size', 'reserve_pool_size', 'server_lifetime',
      'pool_mode', 'load_balance_hosts', 'max_connections', 'current_connections', 'max_client_connections', 'current_client_connections',
      'paused', 'disabled'],
    // reserve_pool became reserve_pool_size in 1.24; tidepool keeps the old name at the end for
    // Debian 12's prometheus-pgbouncer-exporter 1.7 (docs/architecture.md).
    dropped: ['reserve_pool'],
    extras: ['reserve_pool'],
  },
  // pinned: session state holds the client's server (docs/architecture.md, "Differences from PgBouncer").
  CLIENTS: { newest: SOCKET_COLUMNS, extras: ['pinned'] },
  SERVERS: { newest: SOCKET_COLUMNS },
  SOCKETS: { newest: [...SOCKET_COLUMNS, ...SOCKET_DEBUG] },
  ACTIVE_SOCKETS: { newest: [...SOCKET_COLUMNS, ...SOCKET_DEBUG] },
  USERS: { newest: ['name', 'pool_size', 'reserve_pool_size', 'pool_mode', 'max_user_connections', 'current_connections',
    'max_user_client_connections', 'current_client_connections'] },
  LISTS: { newestRows: ['databases', 'users', 'peers', 'pools', 'peer_pools', 'free_clients', 'used_clients', 'login_clients',
    'free_servers', 'used_servers', 'dns_names', 'dns_zones', 'dns_queries', 'dns_pending'] },
  CONFIG: {},
  VERSION: {},
  // 1.19+: not in 1.18.
  STATE: { newest: ['key', 'value'], newestRows: ['active', 'paused', 'suspended'] },
  PEERS: { newest: ['peer_id', 'host', 'port', 'pool_size'] },
  // doc/usage.md says "database" for the first column; src/admin.c sends "peer_id".
  PEER_POOLS: { newest: ['peer_id', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active_cancel', 'sv_login'] },
  STATS: {
    newest: ['database', 'total_server_assignment_count', 'total_xact_count', 'total_query_count', 'total_received', 'total_sent',
      'total_xact_time', 'total_query_time', 'total_wait_time', 'total_client_parse_count', 'total_server_parse_count', 'total_bind_count',
      'total_client_login_count', 'avg_server_assignment_count', 'avg_xact_count', 'avg_query_count', 'avg_recv', 'avg_sent',
      'avg_xact_time', 'avg_query_time', 'avg_wait_time', 'avg_client_parse_count', 'avg_server_parse_count', 'avg_bind_count',
      'avg_client_login_count'],
    // total_query_count's name before 1.8, read by Debian 12's exporter (docs/architecture.md).
    extras: ['total_requests'],
  },
  STATS_TOTALS: { newest: ['database', 'server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time',
    'query_time', 'wait_time', 'client_parse_count', 'server_parse_count', 'bind_count', 'client_login_count'] },
  STATS_AVERAGES: { newest: ['database', 'server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time',
    'query_time', 'wait_time', 'avg_client_parse_count', 'avg_server_parse_count', 'avg_bind_count', 'avg_client_login_count'] },
  TOTALS: { newestRows: [...TOTALS_FIELDS.map((f) => `total_${f}`), ...TOTALS_FIELDS.map((f) => `avg_${f}`)] },
  FDS: { newest: ['fd', 'task', 'user', 'database', 'addr', 'port', 'cancel', 'link', 'client_encoding', 'std_strings', 'datestyle',
    'timezone', 'password', 'scram_client_key', 'scram_server_key'] },
  // MEM's rows are PgBouncer's allocator caches ("subject to change", doc/usage.md); only columns compared.
  MEM: {},
  DNS_HOSTS: {},
  DNS_ZONES: {},
}

/** tidepool's SHOWs that PgBouncer has no counterpart of. */
const TIDEPOOL_ONLY = ['HOSTS', 'SWITCHOVER']

function isSubsequence(sub: string[], of: string[]): boolean {
  let i = 0
  for (const x of of) if (i < sub.length && sub[i] === x) i++
  return i === sub.length
}

interface Answer { columns: string[]; firsts: string[] }

async function show(c: pg.Client, what: string): Promise<Answer | Error> {
  try {
    const r = await c.query({ text: `SHOW ${what}`, rowMode: 'array' })
    return { columns: r.fields.map((f) => f.name), firsts: r.rows.map((row: unknown[]) => String(row[0])) }
  } catch (err) {
    return err as Error
  }
}

test('every SHOW has PgBouncer\'s columns, in its order: 1.18\'s live, newer ones as documented, tidepool\'s extras after', { timeout: 60_000 }, async (t) => {
  assert.ok(hasBinary(PGBOUNCER_BIN), `${PGBOUNCER_BIN} is installed (.ci/run installs Debian's pgbouncer)`)
  const pgb = await startPgBouncer(t, pgi)
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user } })
  const ref = await pgb.console()
  const ours = await tp.connect(t, { database: 'pgbouncer' })
  // Some traffic so that STATS and the socket views have rows on both sides.
  await (await tp.connect(t)).query('SELECT 1')

  // Every SHOW that PgBouncer 1.18's SHOW HELP lists is covered here.
  const notices: string[] = []
  ref.on('notice', (n) => { notices.push(`${n.message ?? ''} ${(n as { detail?: string }).detail ?? ''}`) })
  await ref.query('SHOW HELP')
  const listed = [...notices.join('\n').matchAll(/SHOW ([A-Z_|]+)/g)].flatMap((m) => m[1].split('|')).filter((s) => s !== 'HELP')
  assert.ok(listed.length > 10, `SHOW HELP listed the SHOWs: ${notices.join(' / ')}`)
  for (const s of listed) assert.ok(s in EXPECTED, `PgBouncer 1.18's SHOW ${s} is compared`)

  const problems: string[] = []
  for (const [what, exp] of Object.entries(EXPECTED)) {
    const theirs = await show(ref, what)
    const mine = await show(ours, what)
    if (mine instanceof Error) {
      problems.push(`SHOW ${what}: tidepool answered ${mine.message}`)
      continue
    }
    if (theirs instanceof Error) {
      // Newer than 1.18: the encoded list is all there is to compare with.
      assert.ok(exp.newest !== undefined || exp.newestRows !== undefined, `SHOW ${what} is not in 1.18 (${theirs.message}): encode PgBouncer's newer list`)
    } else {
      const kept = theirs.columns.filter((c) => !(exp.dropped ?? []).includes(c))
      const newest = exp.newest ?? theirs.columns
      // A check of the encoded lists: 1.18's columns still come in the same order in the newer one.
      if (!isSubsequence(kept, newest)) problems.push(`SHOW ${what}: 1.18's ${kept.join(',')} is not in order within the encoded newer list ${newest.join(',')}`)
      if (exp.newestRows !== undefined && !isSubsequence(theirs.firsts, exp.newestRows)) {
        problems.push(`SHOW ${what}: 1.18's rows ${theirs.firsts.join(',')} are not in order within the encoded newer rows`)
      }
    }
    const newest = exp.newest ?? (theirs instanceof Error ? [] : theirs.columns)
    const want = [...newest, ...(exp.extras ?? [])]
    if (mine.columns.join(',') !== want.join(',')) problems.push(`SHOW ${what}: tidepool has\n    ${mine.columns.join(',')}\n  PgBouncer\n    ${want.join(',')}`)
    if (exp.newestRows !== undefined && mine.firsts.join(',') !== exp.newestRows.join(',')) {
      problems.push(`SHOW ${what}: tidepool's rows\n    ${mine.firsts.join(',')}\n  PgBouncer's\n    ${exp.newestRows.join(',')}`)
    }
  }
  for (const what of TIDEPOOL_ONLY) {
    assert.ok(!((await show(ref, what)) instanceof Error && (await show(ours, what)) instanceof Error), `tidepool answers SHOW ${what}`)
  }
  assert.deepEqual(problems, [])
})

test('a client login counts in total_client_login_count of its database; a refused one does not', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user, max_db_client_connections: 2 } })
  await tp.connect(t)
  await tp.connect(t)
  await assert.rejects(tp.connect(t), /max_db_client_connections/)
  const admin = await tp.connect(t, { database: 'pgbouncer' })
  const row = (await admin.query('SHOW STATS_TOTALS')).rows.find((r) => r.database === 'app')
  assert.equal(row?.client_login_count, '2')
  const totals = (await admin.query('SHOW TOTALS')).rows.find((r) => r.name === 'total_client_login_count')
  assert.equal(totals?.value, '2')
})
