#!/usr/bin/env node
// The test runner behind `npm test`: typechecks, lists the test files itself (Node 20's --test does
// not expand globs) and runs them one file at a time under node:test with tsx as the loader.
//
// Usage: node scripts/run-tests.mjs [--no-typecheck] [--update-floor] [unit|property|integration|compat|ha|fuzz|<dir or file>...]
// Default: every *.test.ts under test/unit, test/property, test/integration, test/compat, test/ha and test/fuzz.
//
// A run fails, besides on a failed test: when a target (or a default folder) holds no test file,
// or a test file defines no test, so a typo or an emptied folder or file cannot pass; and when a folder of test/ run whole ran fewer tests
// than its floor in test/test-floor.json, so a file that silently stops defining its tests cannot
// pass either (raise the floor deliberately: --update-floor writes the counts of a green run).
// Every skipped test, and every test that skipped a part of itself (a diagnostic "skipped: ..."),
// is listed by name at the end: a skip is never silent.
//
// One file at a time (--test-concurrency=1) because every integration file starts its own
// PostgreSQL and CI has 2 cores. scripts/test-exit.mjs ends a file whose tests are done but which
// still holds a socket (a timed-out test leaves its clients open); the harness's 'exit' listener then
// stops that file's PostgreSQL. Not --test-force-exit: it exits before the file's last results reach
// the runner, which then counted fewer tests than ran. Last, we sweep for any postmaster (or Patroni, or an etcd of
// test/harness/etcd.ts: test/ha and the fleet tests) of this run that survived anyway, found by TIDEPOOL_TEST_RUN_ID in its data dir path, and remove those dirs.
// Must not: touch clusters of other runs (another engineer's tests on the same machine).

import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const DEFAULT_DIRS = ['unit', 'property', 'integration', 'compat', 'ha', 'fuzz']
// Matches PG_DIR_PREFIX in test/harness/postgres.ts.
const PG_DIR_PREFIX = 'tidepool-pg-'
// A test without its own { timeout } still cannot hang CI forever.
const DEFAULT_TEST_TIMEOUT_MS = 300_000
const FLOOR_FILE = join(root, 'test', 'test-floor.json')

function listTests(path) {
  if (!existsSync(path)) return []
  if (statSync(path).isFile()) return path.endsWith('.test.ts') ? [path] : []
  const found = []
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue
    const full = join(path, entry.name)
    if (entry.isDirectory()) found.push(...listTests(full))
    else if (entry.isFile() && entry.name.endsWith('.test.ts')) found.push(full)
  }
  return found.sort()
}

function targetPath(arg) {
  const underTest = join(root, 'test', arg)
  if (existsSync(underTest)) return underTest
  const asGiven = resolve(arg)
  if (existsSync(asGiven)) return asGiven
  console.error(`run-tests: no such test folder or file: ${arg}`)
  process.exit(2)
}

function sweep(runId) {
  const marker = `${PG_DIR_PREFIX}${runId}-`
  const pids = () => spawnSync('pgrep', ['-f', '--', marker], { encoding: 'utf8' }).stdout
    .split('\n').map((s) => Number.parseInt(s, 10)).filter((n) => Number.isInteger(n) && n !== process.pid)
  // A postmaster whose test process just died shuts itself down (parent-death signal); give it time.
  let left = pids()
  for (const until = Date.now() + 3_000; left.length > 0 && Date.now() < until; left = pids()) spawnSync('sleep', ['0.1'])
  if (left.length > 0) {
    console.error(`run-tests: ${left.length} process(es) of this run (PostgreSQL, Patroni, etcd) outlived their test file; stopping them: ${left.join(' ')}`)
    // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its backends down with it
    // (etcd, a Go program, exits on it too).
    for (const pid of left) { try { process.kill(pid, 'SIGQUIT') } catch { /* gone */ } }
    const deadline = Date.now() + 5_000
    while ((left = pids()).length > 0 && Date.now() < deadline) spawnSync('sleep', ['0.1'])
    for (const pid of left) { try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } }
  }
  const tmp = tmpdir()
  for (const name of readdirSync(tmp)) {
    if (name.startsWith(marker)) rmSync(join(tmp, name), { recursive: true, force: true })
  }
}

const args = process.argv.slice(2)
const typecheck = !args.includes('--no-typecheck')
const updateFloor = args.includes('--update-floor')
const targets = args.filter((a) => !a.startsWith('--'))
const unknownFlags = args.filter((a) => a.startsWith('--') && a !== '--no-typecheck' && a !== '--update-floor')
if (unknownFlags.length > 0) {
  console.error(`run-tests: unknown option(s) ${unknownFlags.join(' ')}\nusage: node scripts/run-tests.mjs [--no-typecheck] [--update-floor] [unit|property|integration|compat|ha|fuzz|<path>...]`)
  process.exit(2)
}

const targetPaths = targets.length > 0 ? targets.map(targetPath) : DEFAULT_DIRS.map((d) => join(root, 'test', d))
const empty = targetPaths.filter((p) => listTests(p).length === 0)
if (empty.length > 0) {
  // Without files, `node --test` would fall back to its own default patterns; and a target with
  // none is a typo or a folder emptied by mistake, which must not pass as a green run.
  console.error(`run-tests: no test files found in ${empty.map((p) => relative(root, p) || '.').join(', ')}`)
  process.exit(1)
}
const files = [...new Set(targetPaths.flatMap(listTests))]
// The folders of test/ that run whole: their counts are held to the floor.
const wholeDirs = targetPaths.map((p) => relative(join(root, 'test'), p)).filter((d) => DEFAULT_DIRS.includes(d))

if (typecheck) {
  console.log('run-tests: npx tsc --noEmit')
  const tsc = spawnSync('npx', ['--no-install', 'tsc', '--noEmit', '-p', root], { cwd: root, stdio: 'inherit' })
  if (tsc.status !== 0) {
    console.error('run-tests: type errors, not running tests')
    process.exit(tsc.status ?? 1)
  }
}

if (typecheck) {
  // npm run lint: ESLint's layer and SQLSTATE rules, then scripts/import-cycles.ts.
  console.log('run-tests: npm run lint')
  const lint = spawnSync('npm', ['run', '--silent', 'lint'], { cwd: root, stdio: 'inherit' })
  if (lint.status !== 0) {
    console.error('run-tests: lint errors, not running tests')
    process.exit(lint.status ?? 1)
  }
}

// Integration tests drive psql and pgbench, which come from Debian's postgresql-client; test/ha runs
// Debian's PostgreSQL 15 server, Patroni and etcd; test/compat runs Debian's drivers (JDBC, psycopg,
// psycopg2, ruby-pg, DBD::Pg, PHP pgsql). On a fresh machine where we are root, install
// them rather than fail (what .ci/run does too).
const hasCommand = (name) => spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0
const NEEDED = ['psql', 'pgbench', 'openssl', 'prometheus-pgbouncer-exporter', '/usr/lib/postgresql/15/bin/pg_basebackup', 'patroni', 'etcd', 'chromium',
  // test/ha/keepalived.test.ts: the floating address in network namespaces
  '/usr/sbin/keepalived', '/usr/sbin/ip',
  // test/compat's drivers: a file of each package, since most of them bring no command
  'java', '/usr/share/java/postgresql.jar', '/usr/lib/python3/dist-packages/psycopg/__init__.py', '/usr/lib/python3/dist-packages/psycopg2/__init__.py',
  '/usr/lib/ruby/vendor_ruby/pg.rb', '/usr/lib/x86_64-linux-gnu/perl5/5.36/DBD/Pg.pm', 'php', '/usr/share/php8.2-pgsql/pgsql/pgsql.ini']
if (NEEDED.some((c) => !hasCommand(c))) {
  if (process.getuid?.() === 0 && hasCommand('apt-get')) {
    console.log(`run-tests: some of ${NEEDED.join(', ')} are missing; installing them with apt-get`)
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    spawnSync('apt-get', ['update', '-q'], { stdio: 'inherit', env })
    // postgresql-15 would create and start a cluster `main` on 5432; createcluster.conf, which
    // comes with postgresql-common, says not to.
    spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'postgresql-common'], { stdio: 'inherit', env })
    spawnSync('sed', ['-i', '-E', 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/', '/etc/postgresql-common/createcluster.conf'], { stdio: 'inherit' })
    spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'postgresql-client', 'openssl', 'prometheus-pgbouncer-exporter', 'postgresql-15', 'patroni', 'etcd-server', 'chromium',
      'keepalived', 'iproute2', 'default-jre-headless', 'libpostgresql-jdbc-java', 'python3-psycopg', 'python3-psycopg2', 'ruby-pg', 'libdbd-pg-perl', 'php-cli', 'php-pgsql'], { stdio: 'inherit', env })
    // Under systemd the packages start their services (etcd on 2379). They are left running: the
    // tests run their own on free ports, and stop nothing they did not start.
  }
  if (NEEDED.some((c) => !hasCommand(c))) {
    console.error(`run-tests: the tests need ${NEEDED.join(', ')} (Debian: apt-get install postgresql-client openssl prometheus-pgbouncer-exporter postgresql-15 patroni etcd-server chromium keepalived iproute2 default-jre-headless libpostgresql-jdbc-java python3-psycopg python3-psycopg2 ruby-pg libdbd-pg-perl php-cli php-pgsql)`)
    process.exit(1)
  }
}

const runId = `r${randomBytes(4).toString('hex')}`
const summaryDir = mkdtempSync(join(tmpdir(), 'tidepool-run-tests-'))
const summaryFile = join(summaryDir, 'summary.json')
const nodeArgs = [
  '--import', 'tsx', '--import', join(root, 'scripts', 'test-exit.mjs'), '--import', join(root, 'scripts', 'unit-sandbox.mjs'), '--test', '--test-concurrency=1',
  `--test-reporter=${join(root, 'scripts', 'test-reporter.mjs')}`, '--test-reporter-destination=stdout',
  `--test-reporter=${join(root, 'scripts', 'test-summary.mjs')}`, `--test-reporter-destination=${summaryFile}`,
  `--test-timeout=${DEFAULT_TEST_TIMEOUT_MS}`,
  ...files.map((f) => relative(root, f)),
]
console.log(`run-tests: ${files.length} file(s), run id ${runId}`)
const child = spawn(process.execPath, nodeArgs, {
  cwd: root, stdio: 'inherit', env: { ...process.env, TIDEPOOL_TEST_RUN_ID: runId },
})

// Ctrl-C reaches the child through the terminal's process group; we stay to sweep after it.
const forward = (signal) => { child.kill(signal) }
process.on('SIGINT', forward)
process.on('SIGTERM', forward)
process.on('SIGHUP', forward)

/** Lists the skips, holds each folder run whole to its floor; false when the run must fail. */
function checkSummary(testsOk) {
  let summary
  try {
    summary = JSON.parse(readFileSync(summaryFile, 'utf8'))
  } catch (err) {
    console.error(`run-tests: no test summary (${err.message}): the run cannot be counted`)
    return false
  }
  const ranByDir = {}
  for (const [file, n] of Object.entries(summary.files)) {
    const dir = relative(join(root, 'test'), resolve(root, file)).split(/[\\/]/)[0]
    ranByDir[dir] = (ranByDir[dir] ?? 0) + n.ran
  }
  const ran = Object.values(ranByDir).reduce((a, b) => a + b, 0)
  console.log(`\nrun-tests: ${ran} test(s) ran: ${Object.entries(ranByDir).map(([d, n]) => `${d} ${n}`).join(', ')}`)
  if (summary.skips.length > 0) {
    console.log(`run-tests: ${summary.skips.length} skip(s):`)
    for (const sk of summary.skips) {
      console.log(`  - ${sk.partial ? 'part of ' : ''}${JSON.stringify(sk.name)} (${relative(root, resolve(root, sk.file ?? '?'))})${sk.reason ? `: ${sk.reason}` : ''}`)
    }
  }
  let ok = true
  for (const file of summary.empty) {
    console.error(`run-tests: ${relative(root, resolve(root, file))} defines no tests`)
    ok = false
  }
  const floor = existsSync(FLOOR_FILE) ? JSON.parse(readFileSync(FLOOR_FILE, 'utf8')) : {}
  for (const dir of wholeDirs) {
    const want = floor[dir]
    if (typeof want === 'number' && (ranByDir[dir] ?? 0) < want) {
      console.error(`run-tests: test/${dir} ran ${ranByDir[dir] ?? 0} tests, fewer than its floor of ${want} in ${relative(root, FLOOR_FILE)}: a file stopped defining its tests? (after removing tests on purpose: --update-floor)`)
      ok = false
    }
  }
  if (updateFloor && testsOk && ok) {
    for (const dir of wholeDirs) floor[dir] = ranByDir[dir] ?? 0
    writeFileSync(FLOOR_FILE, JSON.stringify(Object.fromEntries(Object.entries(floor).sort()), null, 2) + '\n')
    console.log(`run-tests: ${relative(root, FLOOR_FILE)} updated for ${wholeDirs.join(', ')}`)
  } else if (updateFloor) {
    console.error('run-tests: --update-floor writes only after a green run')
  }
  return ok
}

child.on('exit', (code, signal) => {
  sweep(runId)
  const testsOk = code === 0 && signal === null
  const countsOk = checkSummary(testsOk)
  rmSync(summaryDir, { recursive: true, force: true })
  process.exit(!testsOk ? (code ?? 1) : countsOk ? 0 : 1)
})
