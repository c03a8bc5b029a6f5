// The client compatibility matrix (issue #6, docs/compatibility.md): real drivers against tidepool
// in transaction mode. Each driver has a probe program in test/compat/drivers that runs the same
// checks and prints one JSON line per check; this file runs each probe and asserts every check.
// Checks that fail through tidepool for a documented reason are asserted to fail that way, so the
// table in docs/compatibility.md cannot go stale silently in either direction.
// Drivers come from Debian's packages (installed by .ci/run and scripts/run-tests.mjs) and npm.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { sharedPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TidepoolOptions } from '../harness/tidepool.ts'
import { runCommand } from '../harness/clients.ts'

const DIR = join(import.meta.dirname, 'drivers')
const USER = TEST_USERS.scram

/** The checks every probe runs, in its order. */
const CHECKS = [
  'login', 'simple_query', 'parameters', 'transactions', 'prepared_outside_tx', 'prepared_inside_tx',
  'prepared_repeated', 'copy_in', 'copy_out', 'listen_notify', 'cancel', 'error_recovery',
  'streaming_200k', 'concurrent_100',
]

interface Driver {
  name: string
  cmd: string
  args: string[]
  env?: Record<string, string>
  /** files the probe needs, with the Debian package that brings them */
  needs: Array<[string, string]>
  /** extra checks and whether each must pass; a failing one's detail must match the RegExp */
  extra?: Record<string, true | RegExp>
}

const PYTHON = '/usr/bin/python3' // Debian's, whose dist-packages hold python3-psycopg*; not a pyenv shim
const JDBC_JAR = '/usr/share/java/postgresql.jar'

const DRIVERS: Driver[] = [
  { name: 'psycopg 3', cmd: PYTHON, args: ['-P', join(DIR, 'psycopg3.py')], needs: [[PYTHON, 'python3'], ['/usr/lib/python3/dist-packages/psycopg/__init__.py', 'python3-psycopg']] },
  // -P: psycopg2.py must not shadow the psycopg2 package it imports
  { name: 'psycopg2', cmd: PYTHON, args: ['-P', join(DIR, 'psycopg2.py')], needs: [[PYTHON, 'python3'], ['/usr/lib/python3/dist-packages/psycopg2/__init__.py', 'python3-psycopg2']] },
  // single-file source launch: java 11+ compiles pgjdbc.java in memory, no javac needed
  { name: 'PgJDBC', cmd: 'java', args: ['-cp', JDBC_JAR, join(DIR, 'pgjdbc.java')], needs: [['/usr/bin/java', 'default-jre-headless'], [JDBC_JAR, 'libpostgresql-jdbc-java']] },
  {
    name: 'ruby-pg', cmd: 'ruby', args: [join(DIR, 'ruby-pg.rb')], needs: [['/usr/lib/ruby/vendor_ruby/pg.rb', 'ruby-pg']],
    extra: { sql_deallocate_of_prepare: true },
  },
  {
    name: 'DBD::Pg', cmd: 'perl', args: [join(DIR, 'dbd-pg.pl')], needs: [['/usr/lib/x86_64-linux-gnu/perl5/5.36/DBD/Pg.pm', 'libdbd-pg-perl']],
    extra: { deallocate_in_tx: true, deallocate_in_tx_without_server_prepare: true },
  },
  { name: 'PHP pgsql', cmd: 'php', args: [join(DIR, 'php-pgsql.php')], needs: [['/usr/bin/php', 'php-cli'], ['/usr/share/php8.2-pgsql/pgsql/pgsql.ini', 'php-pgsql']] },
  { name: 'node-postgres', cmd: process.execPath, args: ['--import', 'tsx', join(DIR, 'node-postgres.ts')], needs: [] },
  { name: 'postgres.js prepare: true', cmd: process.execPath, args: ['--import', 'tsx', join(DIR, 'postgres-js.ts')], env: { PREPARE: 'true' }, needs: [] },
  { name: 'postgres.js prepare: false', cmd: process.execPath, args: ['--import', 'tsx', join(DIR, 'postgres-js.ts')], env: { PREPARE: 'false' }, needs: [] },
]

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

function settings(extra: Record<string, string | number> = {}): TidepoolOptions {
  return {
    settings: {
      pool_mode: 'transaction', default_pool_size: 5, max_client_conn: 500, auth_type: 'scram-sha-256',
      // PgJDBC sends extra_float_digits at startup; PgBouncer needs the same line (see the last test)
      ignore_startup_parameters: 'extra_float_digits', ...extra,
    },
    // no user= here: the server login is the client's own user, with its password from auth_file
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
    userlist: { [USER.user]: USER.password },
  }
}

function probeEnv(port: number, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  // None of the caller's PG* settings (PGSERVICE, PGSSLMODE...) may reach a probe.
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v
  return { ...env, PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: USER.user, PGPASSWORD: USER.password, PGDATABASE: 'app', ...extra }
}

interface Result { check: string; ok: boolean; detail: string }

function parse(stdout: string): Map<string, Result> {
  const out = new Map<string, Result>()
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    const r = JSON.parse(line) as Result
    out.set(r.check, r)
  }
  return out
}

async function runProbe(d: Driver, port: number, only: string[] = []): Promise<{ results: Map<string, Result>; output: string }> {
  const missing = d.needs.filter(([file]) => !existsSync(file)).map(([file, pkg]) => `${file} (Debian package ${pkg})`)
  assert.equal(missing.length, 0, `${d.name}: missing ${missing.join(', ')}; scripts/run-tests.mjs and .ci/run install them`)
  const r = await runCommand(d.cmd, [...d.args, ...only], probeEnv(port, d.env), 150_000)
  const output = `exit ${r.code}\nstdout:\n${r.stdout}\nstderr (last 2000 chars):\n${r.stderr.slice(-2000)}`
  return { results: parse(r.stdout), output }
}

for (const d of DRIVERS) {
  test(`${d.name}: every check gives its documented result through tidepool in transaction mode`, { timeout: 180_000 }, async (t) => {
    const tp = await startTidepool(t, pgi, settings())
    const { results, output } = await runProbe(d, tp.port)
    t.diagnostic(`[log] ${d.name} probe:\n${output}`)
    const problems: string[] = []
    for (const c of CHECKS) {
      const r = results.get(c)
      if (r === undefined) problems.push(`${c}: no result (probe crashed or timed out?)`)
      else if (!r.ok) problems.push(`${c}: ${r.detail}`)
    }
    for (const [c, want] of Object.entries(d.extra ?? {})) {
      const r = results.get(c)
      if (r === undefined) problems.push(`${c}: no result`)
      else if (want === true && !r.ok) problems.push(`${c}: ${r.detail}`)
      else if (want !== true && r.ok) problems.push(`${c}: passed, but docs/compatibility.md says it fails through tidepool; update the doc and this test`)
      else if (want !== true && !want.test(r.detail)) problems.push(`${c}: failed differently than documented: ${r.detail}`)
    }
    const unknown = [...results.keys()].filter((c) => !CHECKS.includes(c) && !(c in (d.extra ?? {})))
    if (unknown.length > 0) problems.push(`checks this test does not know: ${unknown.join(', ')}`)
    assert.equal(problems.length, 0, `${d.name}:\n  ${problems.join('\n  ')}\n${output}`)
    // Every client gone: no server may be left attached to one.
    const counts = tp.poolCounts('app', USER.user)
    assert.equal(counts.sv_active, 0, `servers still active after the probe: ${JSON.stringify(counts)}`)
  })
}

test('PgJDBC without ignore_startup_parameters = extra_float_digits fails its login, as with PgBouncer', { timeout: 60_000 }, async (t) => {
  const opts = settings()
  const { ignore_startup_parameters: _dropped, ...rest } = opts.settings ?? {}
  const tp = await startTidepool(t, pgi, { ...opts, settings: rest })
  const jdbc = DRIVERS.find((d) => d.name === 'PgJDBC') as Driver
  const { results, output } = await runProbe(jdbc, tp.port, ['login'])
  const login = results.get('login')
  assert.ok(login !== undefined && !login.ok && /unsupported startup parameter: extra_float_digits/.test(login.detail), output)
})
