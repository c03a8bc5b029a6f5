// Loading pgbouncer.ini into a frozen Config: the settings table and its defaults, value types
// (units, booleans, enums, ranges), [databases] and [users] lines, auth_file, cross-setting
// checks, messages with file:line, deep freezing, diffConfig and the SHOW CONFIG rows.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { diffConfig, loadConfig, loadConfigFromText } from '../../src/config/load.ts'
import { defaultSettings, SETTINGS, type Settings } from '../../src/config/settings.ts'
import { formatSeconds } from '../../src/config/setting-types.ts'
import { configRows } from '../../src/config/show.ts'
import { checkBuildSupport } from '../../src/config/build-support.ts'
import type { Config, LoadResult } from '../../src/config/types.ts'

interface Ctx { after(fn: () => void): void }

function tempDir(t: Ctx): string {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-config-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Loads `text` as <tmp>/tidepool.ini, with `files` written beside it first. */
async function load(t: Ctx, text: string, files: Record<string, string> = {}): Promise<{ r: LoadResult; file: string; dir: string }> {
  const dir = tempDir(t)
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(join(dir, name), content)
  const file = join(dir, 'tidepool.ini')
  return { r: await loadConfigFromText(text, file), file, dir }
}

function mustLoad(r: LoadResult): Config {
  if (!r.ok) assert.fail(`config rejected:\n${r.errors.join('\n')}`)
  return r.config
}

/** Warnings other than the one every md5 config without auth_file gets. */
function warningsOf(r: LoadResult): string[] {
  return r.warnings.filter((w) => !w.endsWith('no user can log in'))
}

function errorsOf(r: LoadResult): string[] {
  if (r.ok) assert.fail('config was accepted but should have been rejected')
  return r.errors
}

// ---- the table ----

test('settings table: one row per Settings field, unique names, defaults that parse', () => {
  const names = SETTINGS.map((r) => r.name)
  assert.equal(new Set(names).size, names.length, 'duplicate row')
  const defaults = defaultSettings()
  assert.deepEqual(Object.keys(defaults).sort(), [...names].sort())
  for (const row of SETTINGS) {
    assert.ok(row.doc.length > 10 && !row.doc.includes('\n'), `${row.name}: one-line doc`)
    if (row.section === 'tidepool' && row.type.kind === 'millis') assert.match(row.name, /_ms$/)
  }
})

const defaultCases: Array<[keyof Settings, unknown]> = [
  ['listen_port', 6432], ['listen_addr', ''], ['unix_socket_dir', '/tmp'], ['unix_socket_mode', 0o777],
  ['pool_mode', 'session'], ['max_client_conn', 100], ['default_pool_size', 20], ['reserve_pool_timeout', 5],
  ['track_extra_parameters', ['IntervalStyle']], ['ignore_startup_parameters', []], ['stats_period', 60],
  ['max_prepared_statements', 200], ['auth_type', 'md5'], ['server_reset_query', 'DISCARD ALL'],
  ['server_check_delay', 30], ['server_lifetime', 3600], ['server_idle_timeout', 600], ['server_connect_timeout', 15],
  ['server_login_retry', 15], ['client_login_timeout', 60], ['autodb_idle_timeout', 3600], ['query_timeout', 0],
  ['query_wait_timeout', 120], ['cancel_wait_timeout', 10], ['client_idle_timeout', 0], ['idle_transaction_timeout', 0],
  ['transaction_timeout', 0], ['suspend_timeout', 10], ['pkt_buf', 4096], ['max_packet_size', 2147483647],
  ['listen_backlog', 128], ['sbuf_loopcnt', 5], ['tcp_keepalive', true], ['log_connections', true],
  ['log_disconnections', true], ['log_pooler_errors', true], ['log_stats', true], ['verbose', 0],
  ['client_tls_sslmode', 'disable'], ['server_tls_sslmode', 'prefer'], ['job_name', 'pgbouncer'],
  ['log_format', 'text'], ['http_listen_addr', '127.0.0.1'], ['http_listen_port', 0], ['http_token', ''],
  ['janitor_interval_ms', 333], ['session_state_policy', 'pin'],
]

for (const [name, want] of defaultCases) {
  test(`default: ${name} = ${JSON.stringify(want)}`, async (t) => {
    const cfg = mustLoad((await load(t, '[pgbouncer]\n')).r)
    assert.deepEqual(cfg.settings[name], want)
  })
}

test('default auth_query is PgBouncer\'s pg_authid lookup', () => {
  assert.match(defaultSettings().auth_query, /^SELECT rolname, CASE WHEN rolvaliduntil < now\(\) THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=\$1 AND rolcanlogin$/)
})

// ---- value types ----

const secondsCases: Array<[string, number]> = [
  ['30', 30], ['0', 0], ['1.5', 1.5], ['.25', 0.25], ['2.', 2], ['1e2', 100],
  ['250us', 0.00025], ['100ms', 0.1], ['30s', 30], ['5min', 300], ['2h', 7200], ['1d', 86400], ['1.5h', 5400], ['10 s', 10],
]

for (const [text, want] of secondsCases) {
  test(`seconds: "${text}" is ${want}s`, async (t) => {
    const cfg = mustLoad((await load(t, `[pgbouncer]\nquery_wait_timeout = ${text}\n`)).r)
    assert.equal(cfg.settings.query_wait_timeout, want)
  })
}

const badSeconds = ['soon', '-1', '5m', '5 mins', '1,5', 'ms', '', '10sec', 'Infinity']
for (const text of badSeconds) {
  test(`seconds: "${text}" is refused with file:line`, async (t) => {
    const { r, file } = await load(t, `[pgbouncer]\n\nquery_wait_timeout = ${text}\n`)
    assert.deepEqual(errorsOf(r), [`${file}:3: query_wait_timeout: expected seconds, got ${JSON.stringify(text)}`])
  })
}

const boolCases: Array<[string, boolean]> = [
  ['1', true], ['0', false], ['yes', true], ['no', false], ['on', true], ['off', false],
  ['true', true], ['false', false], ['TRUE', true], ['Off', false], ['2', true],
]
for (const [text, want] of boolCases) {
  test(`bool: "${text}" is ${want}`, async (t) => {
    const cfg = mustLoad((await load(t, `[pgbouncer]\nserver_round_robin = ${text}\nlog_stats = ${text}\n`)).r)
    assert.equal(cfg.settings.server_round_robin, want)
    assert.equal(cfg.settings.log_stats, want)
  })
}

const badValueCases: Array<{ line: string; message: string }> = [
  { line: 'server_round_robin = maybe', message: 'server_round_robin: expected a boolean (0/1, yes/no, on/off, true/false), got "maybe"' },
  { line: 'pool_mode = sessions', message: 'pool_mode: expected one of session, transaction, statement, got "sessions"' },
  { line: 'auth_type = password', message: 'auth_type: expected one of trust, any, plain, md5, scram-sha-256, cert, hba, pam, ldap, got "password"' },
  { line: 'server_tls_sslmode = on', message: 'server_tls_sslmode: expected one of disable, allow, prefer, require, verify-ca, verify-full, got "on"' },
  { line: 'listen_port = 70000', message: 'listen_port: must be between 0 and 65535, got 70000' },
  { line: 'listen_port = http', message: 'listen_port: expected an integer, got "http"' },
  { line: 'listen_port =', message: 'listen_port: expected an integer, got ""' },
  { line: 'max_client_conn = -5', message: 'max_client_conn: must be between 0 and 2147483647, got -5' },
  { line: 'default_pool_size = 1.5', message: 'default_pool_size: expected an integer, got "1.5"' },
  { line: 'unix_socket_mode = 0789', message: 'unix_socket_mode: expected a file mode such as 0777, got "0789"' },
  { line: 'peer_id = 20000', message: 'peer_id: must be between 0 and 16383, got 20000' },
]
for (const c of badValueCases) {
  test(`refused: ${c.line}`, async (t) => {
    const { r, file } = await load(t, `[pgbouncer]\n${c.line}\n`)
    assert.deepEqual(errorsOf(r), [`${file}:2: ${c.message}`])
  })
}

test('[tidepool] values are typed by the same table', async (t) => {
  const { r, file } = await load(t, '[pgbouncer]\n[tidepool]\nlog_format = yaml\njanitor_interval_ms = 0\nsession_state_policy = error\n')
  assert.deepEqual(errorsOf(r), [
    `${file}:3: log_format: expected one of text, json, got "yaml"`,
    `${file}:4: janitor_interval_ms: must be between 1 and 2147483647, got 0`,
  ])
  const cfg = mustLoad((await load(t, '[pgbouncer]\n[tidepool]\nlog_format = JSON\njanitor_interval_ms = 100\nhttp_listen_port = 8080\n')).r)
  assert.equal(cfg.settings.log_format, 'json')
  assert.equal(cfg.settings.janitor_interval_ms, 100)
  assert.equal(cfg.settings.http_listen_port, 8080)
})

test('workers: auto or a count from 1 to 128; SHOW CONFIG writes auto back', async (t) => {
  const { r, file } = await load(t, '[pgbouncer]\n[tidepool]\nworkers = 0\n')
  assert.deepEqual(errorsOf(r), [`${file}:3: workers: must be between 1 and 128, got 0`])
  assert.match(errorsOf((await load(t, '[pgbouncer]\n[tidepool]\nworkers = many\n')).r)[0], /workers: expected an integer/)
  const auto = mustLoad((await load(t, '[pgbouncer]\n[tidepool]\nworkers = AUTO\n')).r)
  assert.equal(auto.settings.workers, 0)
  assert.equal(configRows(auto).find((row) => row.key === 'workers')?.value, 'auto')
  assert.equal(mustLoad((await load(t, '[pgbouncer]\n')).r).settings.workers, 1, 'one process unless asked')
  assert.equal(mustLoad((await load(t, '[pgbouncer]\n[tidepool]\nworkers = 4\n')).r).settings.workers, 4)
})

test('enum values are matched without case and stored in canonical spelling', async (t) => {
  const cfg = mustLoad((await load(t, '[pgbouncer]\npool_mode = Transaction\nauth_type = SCRAM-SHA-256\nauth_file = u.txt\n', { 'u.txt': '' })).r)
  assert.equal(cfg.settings.pool_mode, 'transaction')
  assert.equal(cfg.settings.auth_type, 'scram-sha-256')
})

test('lists split on commas and drop blanks', async (t) => {
  const cfg = mustLoad((await load(t, '[pgbouncer]\nignore_startup_parameters = extra_float_digits, options ,,search_path\nadmin_users = admin\n')).r)
  assert.deepEqual(cfg.settings.ignore_startup_parameters, ['extra_float_digits', 'options', 'search_path'])
  assert.deepEqual(cfg.settings.admin_users, ['admin'])
})

test('unix_socket_mode reads octal like C', async (t) => {
  for (const [text, want] of [['0700', 0o700], ['0', 0], ['511', 511], ['0x1ff', 511]] as const) {
    const cfg = mustLoad((await load(t, `[pgbouncer]\nunix_socket_mode = ${text}\n`)).r)
    assert.equal(cfg.settings.unix_socket_mode, want, text)
  }
})

// ---- keys, sections, warnings ----

test('an unknown key is a warning with file:line, and the config still loads', async (t) => {
  const { r, file } = await load(t, '[pgbouncer]\nlisten_port = 7000\nquery_wait_timout = 5\n')
  const cfg = mustLoad(r)
  assert.deepEqual(warningsOf(r), [`${file}:3: unknown setting 'query_wait_timout'`])
  assert.equal(cfg.settings.listen_port, 7000)
  assert.equal(cfg.settings.query_wait_timeout, 120)
})

test('a key in the wrong section is a warning naming the right one', async (t) => {
  const { r, file } = await load(t, '[pgbouncer]\nlog_format = json\n[tidepool]\nlisten_port = 1\n')
  const cfg = mustLoad(r)
  assert.deepEqual(warningsOf(r), [
    `${file}:2: unknown setting 'log_format' in [pgbouncer] (it belongs in [tidepool])`,
    `${file}:4: unknown setting 'listen_port' in [tidepool] (it belongs in [pgbouncer])`,
  ])
  assert.equal(cfg.settings.log_format, 'text')
  assert.equal(cfg.settings.listen_port, 6432)
})

test('setting keys and section names are matched without case', async (t) => {
  const cfg = mustLoad((await load(t, '[PgBouncer]\nListen_Port = 7001\nPOOL_MODE = statement\n')).r)
  assert.equal(cfg.settings.listen_port, 7001)
  assert.equal(cfg.settings.pool_mode, 'statement')
})

test('a setting given twice: the later wins, with a warning naming both lines', async (t) => {
  const { r, file } = await load(t, '[pgbouncer]\nlisten_port = 1\nlisten_port = 2\n')
  assert.equal(mustLoad(r).settings.listen_port, 2)
  assert.deepEqual(warningsOf(r), [`${file}:3: listen_port is set again (first at ${file}:2); the later value wins`])
})

test('unknown sections are warnings', async (t) => {
  const { r, file } = await load(t, '[pgbouncer]\n[peers]\n1 = host=/tmp/a\n[extras]\nx = 1\n')
  mustLoad(r)
  assert.deepEqual(warningsOf(r), [`${file}:4: unknown section [extras]; its entries are ignored`])
})

test('[peers]: host, port (6432 by default) and pool_size, keyed by peer id', async (t) => {
  const { r } = await load(t, '[pgbouncer]\npeer_id = 2\n[peers]\n1 = host=host1.example.com\n2 = host=/tmp/pgbouncer-2  port=5555 pool_size=3\n')
  const c = mustLoad(r)
  assert.deepEqual([...c.peers.values()].map(({ pos: _pos, ...p }) => p), [
    { peer_id: 1, host: 'host1.example.com', port: 6432, pool_size: null },
    { peer_id: 2, host: '/tmp/pgbouncer-2', port: 5555, pool_size: 3 },
  ])
})

const BAD_PEERS: Array<[string, RegExp]> = [
  ['0 = host=a', /\[peers\] 0: a peer id must be a number from 1 to 65535/],
  ['x = host=a', /a peer id must be a number/],
  ['65536 = host=a', /a peer id must be a number/],
  ['1 = port=6432', /\[peers\] 1: host is required/],
  ['1 = host=a port=0', /port: /],
  ['1 = host=a dbname=x', /unknown peer parameter 'dbname'/],
  ['1 = host=@abstract', /abstract-namespace unix sockets/],
]
for (const [line, want] of BAD_PEERS) {
  test(`[peers] refuses ${JSON.stringify(line)}`, async (t) => {
    const { r } = await load(t, `[pgbouncer]\n[peers]\n${line}\n`)
    assert.match(errorsOf(r).join('\n'), want)
  })
}

test('no [pgbouncer] section is an error, as in PgBouncer', async (t) => {
  const { r, file } = await load(t, '[databases]\napp = host=x\n')
  assert.deepEqual(errorsOf(r), [`${file}: no [pgbouncer] section`])
})

test('every error is reported, not only the first', async (t) => {
  const { r, file } = await load(t, '[pgbouncer]\nlisten_port = x\npool_mode = y\nbroken line\n')
  assert.deepEqual(errorsOf(r), [
    `${file}:4: expected "key = value": no '=' on the line`,
    `${file}:2: listen_port: expected an integer, got "x"`,
    `${file}:3: pool_mode: expected one of session, transaction, statement, got "y"`,
  ])
})

test('positions record where each explicit setting came from; conffile defaults to the file', async (t) => {
  const { r, file, dir } = await load(t, '[pgbouncer]\n%include extra.ini\nverbose = 1\n', { 'extra.ini': 'listen_port = 7002\n' })
  const cfg = mustLoad(r)
  assert.equal(cfg.file, file)
  assert.equal(cfg.settings.conffile, file)
  assert.deepEqual(cfg.positions.get('listen_port'), { file: join(dir, 'extra.ini'), line: 1 })
  assert.deepEqual(cfg.positions.get('verbose'), { file, line: 3 })
  assert.equal(cfg.positions.has('pool_mode'), false)
})

test('service_name and job_name are one setting', async (t) => {
  const cfg = mustLoad((await load(t, '[pgbouncer]\nservice_name = edge\n')).r)
  assert.equal(cfg.settings.job_name, 'edge')
  assert.equal(cfg.settings.service_name, 'edge')
})

test('loadConfig reads from disk; a missing file is an error, not an exception', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'pgbouncer.ini')
  fs.writeFileSync(file, '[pgbouncer]\nlisten_port = 7003\n')
  assert.equal(mustLoad(await loadConfig(file)).settings.listen_port, 7003)
  const missing = join(dir, 'nope.ini')
  assert.deepEqual(errorsOf(await loadConfig(missing)), [`${missing}: cannot read config file: no such file`])
})

test('an %include cycle rejects the config', async (t) => {
  const { r } = await load(t, '[pgbouncer]\n%include a.ini\n', { 'a.ini': '%include b.ini\n', 'b.ini': '%include a.ini\n' })
  const errors = errorsOf(r)
  assert.equal(errors.length, 1)
  assert.match(errors[0], /b\.ini:1: %include cycle: /)
})

// ---- cross-setting checks ----

test('auth_type pam is refused', async (t) => {
  const { r, file } = await load(t, '[pgbouncer]\n\nauth_type = pam\n')
  assert.deepEqual(errorsOf(r), [`${file}:3: auth_type pam is not supported`])
})

test('client TLS without key and certificate is refused', async (t) => {
  const { r, file } = await load(t, '[pgbouncer]\nclient_tls_sslmode = require\nclient_tls_key_file = k.pem\n')
  assert.deepEqual(errorsOf(r), [`${file}:2: client_tls_sslmode require needs client_tls_key_file and client_tls_cert_file`])
})

// ---- auth_file ----

test('auth_file is read relative to the config file\'s directory', async (t) => {
  const { r } = await load(t, '[pgbouncer]\nauth_type = md5\nauth_file = users/list.txt\n', {})
  errorsOf(r) // not there yet
  const dir = tempDir(t)
  fs.mkdirSync(join(dir, 'users'))
  fs.writeFileSync(join(dir, 'users', 'list.txt'), '"alice" "secret"\n"bob" "md5abc"\n')
  const cfg = mustLoad(await loadConfigFromText('[pgbouncer]\nauth_type = md5\nauth_file = users/list.txt\n', join(dir, 'tidepool.ini')))
  assert.deepEqual([...cfg.userlist.values()], [{ name: 'alice', password: 'secret' }, { name: 'bob', password: 'md5abc' }])
  assert.equal(cfg.settings.auth_file, 'users/list.txt', 'the setting keeps what was written')
})

test('auth_file with an absolute path', async (t) => {
  const dir = tempDir(t)
  fs.writeFileSync(join(dir, 'u.txt'), '"carol" "x"\n')
  const cfg = mustLoad((await load(t, `[pgbouncer]\nauth_file = ${join(dir, 'u.txt')}\n`)).r)
  assert.deepEqual([...cfg.userlist.keys()], ['carol'])
})

for (const authType of ['plain', 'md5', 'scram-sha-256']) {
  test(`a missing auth_file is an error with auth_type ${authType}`, async (t) => {
    const { r, file, dir } = await load(t, `[pgbouncer]\nauth_type = ${authType}\nauth_file = missing.txt\n`)
    assert.deepEqual(errorsOf(r), [`${file}:3: auth_file: cannot read ${join(dir, 'missing.txt')}: no such file`])
  })
}

for (const authType of ['trust', 'any', 'cert', 'hba']) {
  test(`a missing auth_file is only a warning with auth_type ${authType}`, async (t) => {
    const { r, file, dir } = await load(t, `[pgbouncer]\nauth_type = ${authType}\nauth_file = missing.txt\n`)
    const cfg = mustLoad(r)
    assert.deepEqual(r.warnings, [`${file}:3: auth_file: cannot read ${join(dir, 'missing.txt')}: no such file`])
    assert.equal(cfg.userlist.size, 0)
  })
}

test('a broken auth_file line is an error where logins need the file', async (t) => {
  const { r, dir } = await load(t, '[pgbouncer]\nauth_type = md5\nauth_file = u.txt\n', { 'u.txt': '"alice" "a"\nbob b\n' })
  assert.deepEqual(errorsOf(r), [`${join(dir, 'u.txt')}:2: expected "user" "password", the user name in double quotes`])
})

test('md5 without auth_file or auth_user warns that nobody can log in', async (t) => {
  const { r, file } = await load(t, '[pgbouncer]\n')
  mustLoad(r)
  assert.deepEqual(r.warnings, [`${file}: auth_type md5 with neither auth_file nor auth_user set: no user can log in`])
})

test('trust and cert without auth_file or auth_user warn too (they admit only known users); an entry\'s auth_user counts', async (t) => {
  for (const authType of ['trust', 'cert']) {
    const { r, file } = await load(t, `[pgbouncer]\nauth_type = ${authType}\n`)
    mustLoad(r)
    assert.deepEqual(r.warnings, [`${file}: auth_type ${authType} with neither auth_file nor auth_user set: no user can log in`])
  }
  const { r } = await load(t, '[databases]\napp = host=a auth_user=lookup\n[pgbouncer]\nauth_type = trust\n')
  assert.deepEqual(mustLoad(r) && r.warnings, [])
  const any = await load(t, '[pgbouncer]\nauth_type = any\n')
  assert.deepEqual(mustLoad(any.r) && any.r.warnings, [])
})

// ---- [databases] and [users] ----

test('[databases]: a full entry', async (t) => {
  const cfg = mustLoad((await load(t, [
    '[databases]',
    "app = host=db1.example.com port=5433 dbname=appdb user=svc password='p w' pool_size=10 min_pool_size=2 reserve_pool=3 max_db_connections=50 pool_mode=transaction connect_query='SET x = ''y''' application_name=tp client_encoding=UTF8 datestyle=ISO timezone=UTC server_lifetime=120 auth_user=au auth_dbname=authdb load_balance_hosts=disable max_db_client_connections=9",
    '[pgbouncer]',
  ].join('\n'))).r)
  const app = cfg.databases.get('app')
  assert.ok(app !== undefined)
  assert.deepEqual({ ...app, pos: undefined }, {
    name: 'app', hosts: ['db1.example.com'], ports: [5433], dbname: 'appdb', user: 'svc', password: 'p w',
    auth_user: 'au', auth_query: null, auth_dbname: 'authdb', pool_size: 10, min_pool_size: 2, reserve_pool_size: 3,
    max_db_connections: 50, max_db_client_connections: 9, pool_mode: 'transaction', load_balance_hosts: 'disable',
    connect_query: "SET x = 'y'", application_name: 'tp', client_encoding: 'UTF8', datestyle: 'ISO', timezone: 'UTC',
    server_lifetime: 120, target_session_attrs: null, backend: null, patroni_urls: [], health_urls: [], host_regions: [], require_auth: null, extra: {}, pos: undefined,
  })
  assert.equal(app.pos.line, 2)
})

test('[databases]: high-availability keys, and their errors', async (t) => {
  const cfg = mustLoad((await load(t, [
    '[databases]',
    'rw = host=pg1,pg2 target_session_attrs=read-write patroni_urls=http://pg1:8008,http://pg2:8008',
    'crdb = host=c1,c2,c3 port=26257 backend=cockroachdb health_urls=http://c1:8080/health?ready=1,http://c2:8080/health?ready=1,http://c3:8080/health?ready=1',
    '[pgbouncer]',
  ].join('\n'))).r)
  const rw = cfg.databases.get('rw')
  assert.equal(rw?.target_session_attrs, 'read-write')
  assert.deepEqual(rw?.patroni_urls, ['http://pg1:8008', 'http://pg2:8008'])
  assert.equal(cfg.databases.get('crdb')?.backend, 'cockroachdb')
  assert.equal(cfg.databases.get('crdb')?.health_urls.length, 3)
  for (const [line, error] of [
    ['x = host=a,b target_session_attrs=master', /target_session_attrs/],
    ['x = host=a,b patroni_urls=http://a:8008', /patroni_urls: 1 URLs for 2 hosts/],
    ['x = host=a patroni_urls=ftp://a', /patroni_urls: "ftp:\/\/a" is not an http/],
    ['x = host=a backend=mysql', /backend/],
  ] as const) {
    const r = (await load(t, `[databases]\n${line}\n[pgbouncer]\n`)).r
    assert.equal(r.ok, false, line)
    if (!r.ok) assert.match(r.errors.join('\n'), error)
  }
})

test('require_auth, per entry and as server_require_auth: libpq\'s list and ! forms, kept as the methods allowed', async (t) => {
  const cfg = mustLoad((await load(t, [
    '[databases]',
    'a = host=x require_auth=scram-sha-256',
    'b = host=x require_auth=!password,!none',
    'c = host=x require_auth=md5,SCRAM-SHA-256',
    'd = host=x',
    '[tidepool]',
    'server_require_auth = none',
    'server_scram_max_iterations = 5000',
    '[pgbouncer]',
  ].join('\n'))).r)
  assert.deepEqual(cfg.databases.get('a')?.require_auth, ['scram-sha-256'])
  assert.deepEqual(cfg.databases.get('b')?.require_auth, ['md5', 'scram-sha-256'])
  assert.deepEqual(cfg.databases.get('c')?.require_auth, ['md5', 'scram-sha-256'])
  assert.equal(cfg.databases.get('d')?.require_auth, null)
  assert.deepEqual(cfg.settings.server_require_auth, ['none'])
  assert.equal(cfg.settings.server_scram_max_iterations, 5000)
  for (const [line, error] of [
    ['x = host=a require_auth=gss', /require_auth: expected methods among/],
    ['x = host=a require_auth=md5,!password', /cannot be mixed/],
    ['x = host=a require_auth=md5,md5', /more than once/],
    ['x = host=a require_auth=!password,!md5,!scram-sha-256,!none', /leaves no method/],
  ] as const) {
    const r = (await load(t, `[databases]\n${line}\n[pgbouncer]\n`)).r
    assert.equal(r.ok, false, line)
    if (!r.ok) assert.match(r.errors.join('\n'), error)
  }
})

const dbCases: Array<{ name: string; line: string; hosts: string[]; ports: number[]; dbname?: string | null; other?: Record<string, unknown> }> = [
  { name: 'empty value: unix socket, default port', line: 'foodb =', hosts: [], ports: [], dbname: null },
  { name: 'unix socket with a port', line: 'foodb = port=5433', hosts: [], ports: [5433] },
  { name: 'socket directory as host', line: 'foodb = host=/var/run/postgresql', hosts: ['/var/run/postgresql'], ports: [5432] },
  { name: 'several hosts, default port', line: 'foodb = host=a,b,c', hosts: ['a', 'b', 'c'], ports: [5432, 5432, 5432] },
  { name: 'several hosts, one port for all', line: 'foodb = host=a,b port=6000', hosts: ['a', 'b'], ports: [6000, 6000] },
  { name: 'several hosts, a port each', line: 'foodb = host=a,b port=6000,6001', hosts: ['a', 'b'], ports: [6000, 6001] },
  { name: 'IPv6 address', line: 'foodb = host=2001:db8::1', hosts: ['2001:db8::1'], ports: [5432] },
  { name: 'blanks around = and between pairs', line: 'foodb =   host = x    dbname =  y  ', hosts: ['x'], ports: [5432], dbname: 'y' },
  { name: 'backslash escapes inside quotes', line: "foodb = host=x password='it\\'s \\\\ \\d'", hosts: ['x'], ports: [5432], other: { password: "it's \\ \\d" } },
  { name: 'quoted auth_query', line: "foodb = host=x auth_query='SELECT u, p FROM f($1)'", hosts: ['x'], ports: [5432], other: { auth_query: 'SELECT u, p FROM f($1)' } },
  { name: 'keys in any case', line: 'foodb = HOST=x DbName=y', hosts: ['x'], ports: [5432], dbname: 'y' },
]

for (const c of dbCases) {
  test(`[databases]: ${c.name}`, async (t) => {
    const cfg = mustLoad((await load(t, `[databases]\n${c.line}\n[pgbouncer]\n`)).r)
    const db = cfg.databases.get('foodb')
    assert.ok(db !== undefined)
    assert.deepEqual(db.hosts, c.hosts)
    assert.deepEqual(db.ports, c.ports)
    if (c.dbname !== undefined) assert.equal(db.dbname, c.dbname)
    for (const [k, v] of Object.entries(c.other ?? {})) assert.equal((db as unknown as Record<string, unknown>)[k], v, k)
  })
}

test('[databases]: the * fallback entry', async (t) => {
  const cfg = mustLoad((await load(t, '[databases]\n* = host=fallback port=5439\napp = host=x\n[pgbouncer]\n')).r)
  const star = cfg.databases.get('*')
  assert.ok(star !== undefined)
  assert.equal(star.name, '*')
  assert.deepEqual(star.hosts, ['fallback'])
  assert.equal(star.dbname, null, 'the client\'s database name is used')
  assert.deepEqual([...cfg.databases.keys()], ['*', 'app'])
})

test('[databases]: names keep their case and may be quoted', async (t) => {
  const cfg = mustLoad((await load(t, '[databases]\nMyDb = host=x\n"odd db" = host=y\n[pgbouncer]\n')).r)
  assert.deepEqual([...cfg.databases.keys()], ['MyDb', 'odd db'])
})

const badDbCases: Array<{ line: string; message: string }> = [
  { line: 'app = host=x port=abc', message: '[databases] app: port: expected an integer, got "abc"' },
  { line: 'app = host=x port=0', message: '[databases] app: port: must be between 1 and 65535, got 0' },
  { line: 'app = host=a,b,c port=1,2', message: '[databases] app: port: 2 ports for 3 hosts; give one port for all, or one per host' },
  { line: 'app = host=a,,b', message: '[databases] app: host: empty name in the list "a,,b"' },
  { line: 'app = host=x pool_size=-1', message: '[databases] app: pool_size: must be between 0 and 2147483647, got -1' },
  { line: 'app = host=x pool_mode=sometimes', message: '[databases] app: pool_mode: expected one of session, transaction, statement, got "sometimes"' },
  { line: 'app = host=x server_lifetime=forever', message: '[databases] app: server_lifetime: expected seconds, got "forever"' },
  { line: "app = host=x password='open", message: '[databases] app: unterminated quoted value for password' },
  { line: 'app = host=x user=', message: '[databases] app: empty value for user' },
  { line: 'app = host x', message: '[databases] app: expected \'=\' after "host"' },
  { line: 'pgbouncer = host=x', message: '[databases] pgbouncer: the name "pgbouncer" is reserved for the admin console' },
]

for (const c of badDbCases) {
  test(`[databases]: refused: ${c.line}`, async (t) => {
    const { r, file } = await load(t, `[pgbouncer]\n[databases]\n${c.line}\n`)
    assert.deepEqual(errorsOf(r), [`${file}:3: ${c.message}`])
  })
}

test('[databases]: an unknown parameter is a warning and kept in extra', async (t) => {
  const { r, file } = await load(t, '[databases]\napp = host=x sslmode=require\n[pgbouncer]\n')
  const cfg = mustLoad(r)
  assert.deepEqual(r.warnings.filter((w) => w.includes('[databases]')), [`${file}:2: [databases] app: unknown connection parameter 'sslmode' (ignored)`])
  assert.deepEqual(cfg.databases.get('app')?.extra, { sslmode: 'require' })
})

test('[databases]: a name defined twice keeps the later line, with a warning', async (t) => {
  const { r, file } = await load(t, '[databases]\napp = host=a\napp = host=b\n[pgbouncer]\n')
  const cfg = mustLoad(r)
  assert.deepEqual(cfg.databases.get('app')?.hosts, ['b'])
  assert.ok(r.warnings.includes(`${file}:3: [databases] app is defined again (first at ${file}:2); the later line wins`))
})

test('[users]: per-user settings', async (t) => {
  const cfg = mustLoad((await load(t, '[pgbouncer]\n[users]\nalice = pool_mode=session pool_size=3 reserve_pool_size=1 max_user_connections=7 max_user_client_connections=9 query_timeout=30 idle_transaction_timeout=1.5 transaction_timeout=5min client_idle_timeout=60\nbob =\n')).r)
  const alice = cfg.users.get('alice')
  assert.ok(alice !== undefined)
  assert.deepEqual({ ...alice, pos: undefined }, {
    name: 'alice', pool_mode: 'session', pool_size: 3, reserve_pool_size: 1, max_user_connections: 7,
    max_user_client_connections: 9, query_timeout: 30, idle_transaction_timeout: 1.5, transaction_timeout: 300,
    client_idle_timeout: 60, extra: {}, pos: undefined,
  })
  assert.equal(cfg.users.get('bob')?.pool_mode, null)
})

test('[users]: bad values are errors with file:line', async (t) => {
  const { r, file } = await load(t, '[pgbouncer]\n[users]\nalice = pool_mode=fast pool_size=x\n')
  assert.deepEqual(errorsOf(r), [
    `${file}:3: [users] alice: pool_mode: expected one of session, transaction, statement, got "fast"`,
    `${file}:3: [users] alice: pool_size: expected an integer, got "x"`,
  ])
})

// ---- freezing ----

test('the Config is deep-frozen: every assignment throws in strict mode', async (t) => {
  const cfg = mustLoad((await load(t, '[databases]\napp = host=a,b\n[users]\nalice = pool_size=1\n[pgbouncer]\nauth_type = trust\nauth_file = u.txt\nadmin_users = root\n', { 'u.txt': '"alice" "x"\n' })).r)
  const attempts: Array<[string, () => void]> = [
    ['config.file', () => { (cfg as { file: string }).file = 'x' }],
    ['a setting', () => { (cfg.settings as Settings).listen_port = 1 }],
    ['a new setting', () => { (cfg.settings as unknown as Record<string, unknown>).extra = 1 }],
    ['a list setting', () => { (cfg.settings.admin_users as string[]).push('x') }],
    ['databases.set', () => { (cfg.databases as Map<string, never>).set('x', undefined as never) }],
    ['databases.delete', () => { (cfg.databases as Map<string, unknown>).delete('app') }],
    ['databases.clear', () => { (cfg.databases as Map<string, unknown>).clear() }],
    ['a database entry', () => { (cfg.databases.get('app') as { dbname: string | null }).dbname = 'x' }],
    ['a database host list', () => { (cfg.databases.get('app')?.hosts as string[]).push('c') }],
    ['a database extra', () => { (cfg.databases.get('app')?.extra as Record<string, string>).x = 'y' }],
    ['a database pos', () => { (cfg.databases.get('app')?.pos as { line: number }).line = 0 }],
    ['users.set', () => { (cfg.users as Map<string, never>).set('x', undefined as never) }],
    ['a user entry', () => { (cfg.users.get('alice') as { pool_size: number | null }).pool_size = 9 }],
    ['userlist.delete', () => { (cfg.userlist as Map<string, unknown>).delete('alice') }],
    ['a userlist secret', () => { (cfg.userlist.get('alice') as { password: string }).password = 'y' }],
    ['positions.set', () => { (cfg.positions as Map<string, never>).set('x', undefined as never) }],
  ]
  for (const [what, attempt] of attempts) assert.throws(attempt, TypeError, what)
  assert.equal(cfg.settings.listen_port, 6432)
  assert.deepEqual([...cfg.databases.keys()], ['app'])
  assert.equal(cfg.userlist.get('alice')?.password, 'x')
})

test('two loads share no mutable state (defaults are fresh each time)', async (t) => {
  const a = mustLoad((await load(t, '[pgbouncer]\n')).r)
  const b = mustLoad((await load(t, '[pgbouncer]\ntrack_extra_parameters = search_path\n')).r)
  assert.deepEqual(a.settings.track_extra_parameters, ['IntervalStyle'])
  assert.deepEqual(b.settings.track_extra_parameters, ['search_path'])
  assert.deepEqual(defaultSettings().track_extra_parameters, ['IntervalStyle'])
})

// ---- diffConfig ----

test('diffConfig sorts changed settings by how they apply', async (t) => {
  const a = mustLoad((await load(t, '[databases]\napp = host=a\ngone = host=g\n[users]\nalice = pool_size=1\n[pgbouncer]\nauth_type = trust\nauth_file = u.txt\n', { 'u.txt': '"alice" "1"\n' })).r)
  const b = mustLoad((await load(t, '[databases]\napp = host=b\nnew = host=n\n[users]\nalice = pool_size=1\n[pgbouncer]\nauth_type = trust\nauth_file = u.txt\nquery_wait_timeout = 5\nlisten_port = 7000\ntrack_extra_parameters = search_path\n', { 'u.txt': '"alice" "2"\n' })).r)
  const d = diffConfig(a, b)
  assert.deepEqual(d.restart.sort(), ['listen_port', 'track_extra_parameters'])
  // conffile differs too: each load above lives in its own temp dir.
  assert.deepEqual(d.live.sort(), ['conffile', 'databases.app', 'databases.gone', 'databases.new', 'query_wait_timeout', 'userlist.alice'])
})

test('diffConfig: the same config, with lines moved, has no changes', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'tidepool.ini')
  const a = mustLoad(await loadConfigFromText('[databases]\napp = host=a\n[pgbouncer]\nlisten_port = 7000\n', file))
  const b = mustLoad(await loadConfigFromText('[pgbouncer]\n\n\nlisten_port = 7000\n[databases]\n\napp = host=a\n', file))
  assert.deepEqual(diffConfig(a, b), { live: [], restart: [] })
})

// ---- SHOW CONFIG ----

test('SHOW CONFIG rows: PgBouncer\'s columns and spelling', async (t) => {
  const cfg = mustLoad((await load(t, '[pgbouncer]\nquery_wait_timeout = 1500ms\nserver_round_robin = yes\nignore_startup_parameters = a, b\n[tidepool]\nhttp_token = s3cret\n')).r)
  const rows = configRows(cfg)
  assert.equal(rows.length, SETTINGS.length)
  const get = (key: string) => rows.find((r) => r.key === key)
  assert.deepEqual(get('query_wait_timeout'), { key: 'query_wait_timeout', value: '1.5', default: '120', changeable: 'yes' })
  assert.deepEqual(get('server_round_robin'), { key: 'server_round_robin', value: '1', default: '0', changeable: 'yes' })
  assert.deepEqual(get('listen_port'), { key: 'listen_port', value: '6432', default: '6432', changeable: 'no' })
  assert.deepEqual(get('unix_socket_mode'), { key: 'unix_socket_mode', value: '511', default: '0777', changeable: 'no' })
  assert.deepEqual(get('ignore_startup_parameters'), { key: 'ignore_startup_parameters', value: 'a,b', default: '', changeable: 'yes' })
  assert.deepEqual(get('conffile'), { key: 'conffile', value: cfg.file, default: '', changeable: 'yes' })
  assert.equal(get('http_token')?.value, '********', 'secrets are masked')
  assert.ok(!JSON.stringify(rows).includes('s3cret'))
  // PgBouncer lists its keys alphabetically; ours follow.
  const firstTidepool = rows.findIndex((r) => SETTINGS.find((row) => row.name === r.key)?.section === 'tidepool')
  const pgb = rows.slice(0, firstTidepool).map((r) => r.key)
  assert.deepEqual(pgb, [...pgb].sort())
  assert.equal(rows[0].key, 'admin_users')
})

const gCases: Array<[number, string]> = [
  [0, '0'], [120, '120'], [3600, '3600'], [0.1, '0.1'], [1.5, '1.5'], [86400, '86400'],
  [123456, '123456'], [1234567, '1.23457e+06'], [0.00025, '0.00025'], [0.00001, '1e-05'], [1 / 3, '0.333333'],
]
for (const [v, want] of gCases) {
  test(`seconds render like printf %g: ${v} -> ${want}`, () => {
    assert.equal(formatSeconds(v), want)
  })
}

test('target_session_attrs that needs a role but gives no user to check with is refused', async (t) => {
  const bad = mustLoad((await load(t, '[databases]\nrw = host=a,b target_session_attrs=read-write\n[pgbouncer]\n')).r)
  assert.match(checkBuildSupport(bad).errors.join('\n'), /rw: target_session_attrs read-write needs user=/)
  const good = mustLoad((await load(t, '[databases]\nrw = host=a,b target_session_attrs=read-write user=svc\nany = host=a,b\n[pgbouncer]\n')).r)
  assert.deepEqual(checkBuildSupport(good).errors, [])
})
