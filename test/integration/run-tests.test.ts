// scripts/run-tests.mjs (what `npm test` runs) and .ci/run, run on a throwaway copy of the repo
// with fake test files: an empty or mistyped target fails, a folder that ran fewer tests than its
// floor fails, every skip is named in the summary, and neither the runner nor .ci/run stops a
// process it did not start (a PgBouncer running for someone else on the same machine).
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startPgBouncer, type TestPgBouncer } from '../harness/pgbouncer.ts'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const RUNNER_FILES = ['run-tests.mjs', 'test-reporter.mjs', 'test-summary.mjs', 'test-exit.mjs', 'unit-sandbox.mjs']

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

/** A copy of the runner in a temp dir laid out like the repo, with `tests` as test/<path> files. */
function fakeRepo(t: { after: (fn: () => void) => void }, tests: Record<string, string>, floor?: Record<string, number>): string {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-runner-test-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'scripts'))
  for (const f of RUNNER_FILES) copyFileSync(join(REPO, 'scripts', f), join(dir, 'scripts', f))
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'))
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n')
  mkdirSync(join(dir, 'test'))
  for (const [path, body] of Object.entries(tests)) {
    mkdirSync(dirname(join(dir, 'test', path)), { recursive: true })
    writeFileSync(join(dir, 'test', path), body)
  }
  if (floor !== undefined) writeFileSync(join(dir, 'test', 'test-floor.json'), JSON.stringify(floor))
  return dir
}

interface Run { code: number | null; out: string }

function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => { out += String(d) })
    child.stderr.on('data', (d) => { out += String(d) })
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', fail)
    child.on('close', (code) => { clearTimeout(timer); done({ code, out }) })
  })
}

function runner(dir: string, ...args: string[]): Promise<Run> {
  // Not NODE_TEST_CONTEXT: node:test would take the runner's run for a nested one and skip it.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env
  return run(process.execPath, [join(dir, 'scripts', 'run-tests.mjs'), '--no-typecheck', ...args], { cwd: dir, env })
}

const TWO_TESTS = "import { test } from 'node:test'\ntest('one', () => {})\ntest('two', () => {})\n"

test('a target without test files fails the run: an empty folder, a mistyped name, an empty default folder', { timeout: 120_000 }, async (t) => {
  const dir = fakeRepo(t, { 'unit/a.test.ts': TWO_TESTS, 'integration/README.md': 'no tests here\n' })
  const emptyDir = await runner(dir, 'integration')
  assert.equal(emptyDir.code, 1, emptyDir.out)
  assert.match(emptyDir.out, /no test files found in test\/integration/)
  const typo = await runner(dir, 'unti')
  assert.notEqual(typo.code, 0, typo.out)
  assert.match(typo.out, /no such test folder or file: unti/)
  // The default run covers six folders; this copy has tests in one only.
  const all = await runner(dir)
  assert.equal(all.code, 1, all.out)
  assert.match(all.out, /no test files found in test\/property, test\/integration, test\/compat, test\/ha, test\/fuzz/)
  const fine = await runner(dir, 'unit')
  assert.equal(fine.code, 0, fine.out)
  assert.match(fine.out, /run-tests: 2 test\(s\) ran: unit 2/)
})

test('a folder run whole that ran fewer tests than its floor fails; --update-floor records a green run\'s counts', { timeout: 120_000 }, async (t) => {
  // b.test.ts used to define three tests; now it defines none (a refactor that lost them).
  const dir = fakeRepo(t, { 'unit/a.test.ts': TWO_TESTS, 'unit/b.test.ts': "import { test } from 'node:test'\nif (process.env.NEVER) test('gone', () => {})\n" }, { unit: 5 })
  const below = await runner(dir, 'unit')
  assert.equal(below.code, 1, below.out)
  assert.match(below.out, /test\/unit ran 2 tests, fewer than its floor of 5 in test\/test-floor\.json/)
  assert.match(below.out, /test\/unit\/b\.test\.ts defines no tests/)
  // A single file is not a whole folder: no floor applies.
  const oneFile = await runner(dir, join(dir, 'test', 'unit', 'a.test.ts'))
  assert.equal(oneFile.code, 0, oneFile.out)
  const update = await runner(dir, '--update-floor', 'unit')
  assert.equal(update.code, 1, 'a run below the floor does not lower it')
  rmSync(join(dir, 'test', 'unit', 'b.test.ts'))
  writeFileSync(join(dir, 'test', 'test-floor.json'), JSON.stringify({ unit: 1, integration: 7 }))
  const raised = await runner(dir, '--update-floor', 'unit')
  assert.equal(raised.code, 0, raised.out)
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'test', 'test-floor.json'), 'utf8')), { integration: 7, unit: 2 })
})

test('skipped tests and tests that skipped a part of themselves are named in the summary', { timeout: 120_000 }, async (t) => {
  const dir = fakeRepo(t, {
    'integration/s.test.ts': [
      "import { test } from 'node:test'",
      "test('runs', () => {})",
      "test('needs pg_foo', { skip: 'pg_foo is not installed' }, () => {})",
      "test('direct TLS half and half', (t) => { t.diagnostic('skipped: the psql part (no psql with libpq 17 here)') })",
      "test('plain diagnostics are not skips', (t) => { t.diagnostic('took 3 ms') })",
    ].join('\n'),
  })
  const r = await runner(dir, 'integration')
  assert.equal(r.code, 0, r.out)
  assert.match(r.out, /run-tests: 3 test\(s\) ran: integration 3/)
  assert.match(r.out, /run-tests: 2 skip\(s\):\n {2}- "needs pg_foo" \(test\/integration\/s\.test\.ts\): pg_foo is not installed\n {2}- part of "direct TLS half and half" \(test\/integration\/s\.test\.ts\): the psql part \(no psql with libpq 17 here\)/)
  assert.doesNotMatch(r.out, /plain diagnostics are not skips"/)
})

/** A PgBouncer started outside this run, as one serving someone else on the machine. */
async function foreignPgBouncer(t: Parameters<typeof startPgBouncer>[0]): Promise<TestPgBouncer> {
  const pgb = await startPgBouncer(t, pgi, { foreign: true })
  return pgb
}

async function assertAlive(pgb: TestPgBouncer, after: string): Promise<void> {
  assert.equal(pgb.proc.exitCode, null, `the foreign pgbouncer still runs after ${after}`)
  assert.equal(pgb.proc.signalCode, null, `the foreign pgbouncer was not signalled by ${after}`)
  const c = await pgb.console()
  assert.equal((await c.query('SHOW VERSION')).rows.length, 1)
}

test('the runner leaves a PgBouncer it did not start running', { timeout: 120_000 }, async (t) => {
  const pgb = await foreignPgBouncer(t)
  const dir = fakeRepo(t, { 'integration/a.test.ts': TWO_TESTS })
  const r = await runner(dir, 'integration')
  assert.equal(r.code, 0, r.out)
  await assertAlive(pgb, 'scripts/run-tests.mjs')
})

test('.ci/run stops no service and kills no process it did not start', { timeout: 120_000 }, async (t) => {
  const pgb = await foreignPgBouncer(t)
  const dir = fakeRepo(t, {})
  mkdirSync(join(dir, '.ci'))
  copyFileSync(join(REPO, '.ci', 'run'), join(dir, '.ci', 'run'))
  // Stand-ins record their calls: npm (the suite itself is not what is tested here), apt-get
  // (nothing is installed), systemctl and service (so that even a .ci/run that tried stops nothing).
  const bin = join(dir, 'bin')
  mkdirSync(bin)
  const calls = join(dir, 'calls.log')
  for (const name of ['npm', 'apt-get', 'systemctl', 'service']) {
    writeFileSync(join(bin, name), `#!/bin/sh\necho "${name} $*" >> '${calls}'\n${name === 'apt-get' ? 'exit 1' : 'exit 0'}\n`)
    chmodSync(join(bin, name), 0o755)
  }
  const r = await run('bash', [join(dir, '.ci', 'run')], { cwd: dir, env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` } })
  assert.equal(r.code, 0, r.out)
  const log = readFileSync(calls, 'utf8')
  assert.match(log, /^npm test$/m, `.ci/run got as far as npm test:\n${r.out}`)
  assert.doesNotMatch(log, /^(systemctl|service) /m, 'no service was asked to stop')
  await assertAlive(pgb, '.ci/run')
})

test('.ci/run, scripts/ and test/harness call no pkill, killall or service stop', () => {
  const harness = readdirSync(join(REPO, 'test', 'harness')).filter((f) => f.endsWith('.ts')).map((f) => `test/harness/${f}`)
  const files = ['.ci/run', ...RUNNER_FILES.map((f) => `scripts/${f}`), 'package.json', ...harness]
  for (const f of files) {
    // Comments may name them (to say why not); code may not call them.
    const text = readFileSync(join(REPO, f), 'utf8').split('\n').filter((l) => !/^\s*(#|\/\/|\/\*|\*)/.test(l)).join('\n')
    assert.doesNotMatch(text, /\b(pkill|killall)\b|systemctl\s+stop|service\s+\S+\s+stop/, f)
  }
})
