// `tidepool bench` end to end, as a user runs it: the CLI as a child process initialises each
// workload in the embedded PostgreSQL, runs it straight to PostgreSQL and through a tidepool, and
// writes the report; the report's embedded data must be the run's numbers, and headless Chromium
// must draw its charts. Bad input must end in one line and a non-zero exit. No worker process may
// outlive its command: each command runs with a tag in its environment, and no process carrying
// the tag may be left once it has exited.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import { runCommand, waitFor, type RunResult } from '../harness/clients.ts'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { freePort } from '../harness/ports.ts'
import { startTidepool } from '../harness/tidepool.ts'
import type { BenchResults } from '../../src/bench/results.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))
const TAG = `tidepool-bench-test-${process.pid}-${Date.now()}`
const tmp = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-bench-test-'))
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }))

/** pids of live processes started with our tag in their environment (the CLI and its workers). */
function tagged(): number[] {
  const found: number[] = []
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      if (fs.readFileSync(`/proc/${name}/environ`, 'latin1').includes(TAG)) found.push(Number(name))
    } catch { /* gone or not ours */ }
  }
  return found
}

async function bench(args: string[], timeoutMs = 90_000): Promise<RunResult> {
  const env = { ...process.env, TIDEPOOL_BENCH_TEST_TAG: TAG }
  const r = await runCommand(process.execPath, ['--import', 'tsx', join(root, 'src', 'main.ts'), 'bench', ...args], env, timeoutMs)
  // Workers leave when the CLI's IPC channel closes; give them a moment, then none may be left.
  await waitFor(() => tagged().length === 0, { timeoutMs: 10_000, what: 'bench processes to exit' }).catch(() => {
    const left = tagged()
    for (const pid of left) { try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } }
    assert.fail(`bench processes left behind: ${left.join(' ')}`)
  })
  return r
}

const out = (r: RunResult): string => `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`

/** The one-line failure of a bad input: non-zero, one line on stderr, no stack trace. */
function assertOneLineFailure(r: RunResult, pattern: RegExp): void {
  assert.notEqual(r.code, 0, out(r))
  assert.ok(r.code !== null, `killed at the deadline\n${out(r)}`)
  const lines = r.stderr.trim().split('\n')
  assert.equal(lines.length, 1, out(r))
  assert.match(lines[0], /^tidepool bench: /, out(r))
  assert.match(lines[0], pattern, out(r))
  assert.doesNotMatch(r.stderr, /\n\s+at /, out(r))
}

const CUSTOM = `# a key-value workload for the test
[params]
rows = 500

[init]
DROP TABLE IF EXISTS bench_kv;
CREATE TABLE bench_kv (k INT8 PRIMARY KEY, v TEXT NOT NULL, n INT8 NOT NULL DEFAULT 0);
INSERT INTO bench_kv (k, v)
  SELECT g, 'v' || g::TEXT FROM generate_series(1, \${rows}) AS g;

[op read weight=70]
SELECT v FROM bench_kv WHERE k = \${int(1, rows)};

[op bump weight=30]
-- two statements: one transaction
UPDATE bench_kv SET n = n + 1, v = \${text(8)} WHERE k = \${int(1, rows)};
INSERT INTO bench_kv (k, v) VALUES (\${int(1000000, 2000000000)}, \${pick('a', 'b')}) ON CONFLICT (k) DO NOTHING;

[op fail weight=5]
SELECT 1 / \${int(0, 0)};
`

interface Case {
  workload: string
  /** tidepool's pool_mode and pool size for the pooled target (default transaction, 3) */
  poolMode?: string
  poolSize?: number
  init: string[]
  run: string[]
  ops: string[]
}

const CASES: Case[] = [
  { workload: 'flights', init: ['--flights', '300'], run: ['--duration', '2', '--batch-size', '5'], ops: ['schedule', 'status', 'inventory', 'price'] },
  // Named prepared statements through transaction pooling (tidepool maps them per server).
  { workload: 'event-logs', poolMode: 'transaction', poolSize: 6, init: ['--sources', '50', '--events', '500'], run: ['--duration', '2', '--prepare', '--batch-size', '5'], ops: ['insert', 'read'] },
  { workload: 'train-events', init: ['--stations', '40', '--trains', '20', '--events', '500'], run: ['--iterations', '600', '--think-time', '5'], ops: ['movement', 'station', 'train'] },
  { workload: 'custom', init: [], run: ['--duration', '2', '--rows', '400'], ops: ['read', 'bump', 'fail'] },
]

let reportForBrowser: { html: string; results: BenchResults } | null = null

describe('tidepool bench', { timeout: 240_000 }, () => {
  let pgi: PgInstance

  for (const c of CASES) {
    test(`${c.workload}: init, run direct and through tidepool, report`, { timeout: 120_000 }, async (t) => {
      pgi ??= await sharedPostgres()
      const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user, default_pool_size: c.poolSize ?? 3, max_client_conn: 100, pool_mode: c.poolMode ?? 'transaction' } })
      const direct = pgi.url('app')
      const pooled = `postgres://${pgi.user}:${encodeURIComponent(pgi.password)}@127.0.0.1:${tp.port}/app`
      const file = c.workload === 'custom' ? ['--file', join(tmp, 'kv.workload')] : []
      if (c.workload === 'custom') fs.writeFileSync(join(tmp, 'kv.workload'), CUSTOM)
      const dir = join(tmp, c.workload)

      const init = await bench(['init', c.workload, '--url', direct, ...file, ...c.init])
      assert.equal(init.code, 0, out(init))
      assert.match(init.stdout, new RegExp(`^${c.workload}: initialised in`), out(init))

      const run = await bench(['run', c.workload, ...file, '--target', `direct=${direct}`, '--target', `pooled=${pooled}`,
        '--workers', '2', '--connections', '3', '--interval', '500', '--pause', '0', '--seed', '7', '--out', dir, ...c.run])
      assert.equal(run.code, 0, out(run))
      assert.match(run.stdout, /elapsed\s+id\s+threads\s+tot_ops\s+tot_ops\/s\s+mean\(ms\)\s+p50\(ms\)\s+p90\(ms\)\s+p95\(ms\)\s+p99\(ms\)\s+max\(ms\)/, out(run))
      assert.match(run.stdout, /comparison \(ratios to direct\)/, out(run))
      assert.match(run.stderr, /\[direct\] .* ops\/s/, 'a progress line while it runs')

      const results = JSON.parse(fs.readFileSync(join(dir, 'results.json'), 'utf8')) as BenchResults
      assert.deepEqual(results.targets.map((x) => x.name), ['direct', 'pooled'])
      const [d, p] = results.targets
      assert.equal(d.pooler, null)
      assert.match(p.pooler ?? '', /^tidepool /)
      for (const x of results.targets) {
        assert.equal(x.threads, 6)
        assert.deepEqual(x.ops.map((o) => o.id), [...c.ops, '__cycle__'])
        for (const o of x.ops) assert.ok(o.count + o.errors > 0, `${x.name} ${o.id} ran: ${JSON.stringify(o)}`)
        // The custom workload's op `fail` divides by zero, to show errors are counted by SQLSTATE.
        const failed = x.ops.find((o) => o.id === 'fail')?.errors ?? 0
        assert.deepEqual(x.errors, failed > 0 ? { '22012': failed } : {}, `${x.name}: errors by SQLSTATE`)
        for (const o of x.ops) if (o.id !== 'fail' && o.id !== '__cycle__') assert.equal(o.errors, 0, `${x.name} ${o.id}: no errors`)
        const cycle = x.ops.at(-1)!
        assert.ok(cycle.p50 > 0 && cycle.p50 <= cycle.p99 && cycle.p99 <= cycle.max, JSON.stringify(cycle))
        if (c.run.includes('--iterations')) assert.equal(cycle.count, 600, 'iterations are cycles per target')
        const seriesCycles = (x.client.latency.__cycle__.count as number[]).reduce((a, b) => a + b, 0)
        assert.ok(seriesCycles > 0 && seriesCycles <= cycle.count, `series ${seriesCycles} vs total ${cycle.count}`)
        assert.ok(x.db.columns.commits_per_s.some((v) => v !== null && v > 0), 'commits were sampled')
        assert.ok(x.db.columns.cpu_pct.some((v) => v !== null && v > 0), `CPU of the local server was sampled: ${JSON.stringify(x.notes)}`)
        assert.ok(fs.readFileSync(join(dir, `series-${x.name}.csv`), 'utf8').startsWith('t_s,ops_per_s,errors_per_s,'))
        assert.ok(fs.readFileSync(join(dir, `db-${x.name}.csv`), 'utf8').startsWith('t_s,sessions,'))
      }
      // Straight, the database has a session per client; through a pool, never more than its size.
      const most = (col: Array<number | null>) => Math.max(...col.map((v) => v ?? 0))
      assert.ok(most(d.db.columns.sessions) >= 6, `direct sessions: ${JSON.stringify(d.db.columns.sessions)}`)
      assert.ok(most(p.db.columns.sessions) <= (c.poolSize ?? 3), `pooled sessions: ${JSON.stringify(p.db.columns.sessions)}`)
      assert.ok(most(p.db.columns.pool_cl_active) > 0, 'pool stats sampled from the console')
      assert.ok(most(p.db.columns.pool_sv_active) <= (c.poolSize ?? 3))
      assert.equal(d.db.columns.pool_cl_active, undefined)

      const rep = await bench(['report', dir])
      assert.equal(rep.code, 0, out(rep))
      const html = fs.readFileSync(join(dir, 'report.html'), 'utf8')
      const embedded = /<script type="application\/json" id="bench-data">(.*?)<\/script>/s.exec(html)
      assert.ok(embedded, 'the report embeds its data')
      assert.deepEqual(JSON.parse(embedded[1]), results, 'the report holds the numbers of the run')
      for (const x of results.targets) {
        for (const o of x.ops) assert.ok(html.includes(`<td>${o.id}</td><td>${x.threads}</td><td>${o.count}</td><td>${o.opsPerS.toFixed(2)}</td>`), `table row ${x.name} ${o.id}`)
      }
      assert.ok(!/<script[^>]+src=|<link[^>]+href=/.test(html), 'self-contained: nothing loaded from elsewhere')
      assert.ok(html.includes('uPlot'), 'uPlot is inlined')
      if (c.workload === 'flights') reportForBrowser = { html: join(dir, 'report.html'), results }
    })
  }

  test('the HTML report renders its charts in headless Chromium', { timeout: 60_000 }, async (t) => {
    assert.ok(reportForBrowser, 'the flights run produced a report')
    const profile = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-bench-chromium-'))
    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      viewport: { width: 1400, height: 900 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
    t.after(async () => {
      await browser.close()
      fs.rmSync(profile, { recursive: true, force: true })
    })
    const page = await browser.newPage()
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(String(e)))
    await page.goto(`file://${reportForBrowser.html}`)
    await page.waitForFunction('window.benchCharts !== undefined')
    assert.deepEqual(errors, [])
    // Runs in the page (this project compiles without the DOM types, hence a string).
    const drawn = await page.evaluate(`(() => {
      const canvases = [...document.querySelectorAll('.uplot canvas')]
      const inked = canvases.filter((c) => {
        const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height)
        let n = 0
        for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0 && (data[i] < 200 || data[i + 1] < 200 || data[i + 2] < 200)) n++
        return n > 200
      })
      return { plots: document.querySelectorAll('.uplot').length, legends: document.querySelectorAll('.uplot .u-legend').length, canvases: canvases.length, inked: inked.length }
    })()`) as { plots: number; legends: number; canvases: number; inked: number }
    // Two targets, at least throughput, latency, per-op latency, sessions, commits and CPU each.
    assert.ok(drawn.plots >= 12, JSON.stringify(drawn))
    assert.equal(drawn.legends, drawn.plots, JSON.stringify(drawn))
    assert.equal(drawn.inked, drawn.canvases, `every chart has data drawn: ${JSON.stringify(drawn)}`)
    const shot = join(os.tmpdir(), `tidepool-bench-report-${process.pid}.png`)
    await page.screenshot({ path: shot, fullPage: true })
    t.diagnostic(`screenshot: ${shot}`)
  })

  test('bad input: one line, a non-zero exit, no stack trace', { timeout: 90_000 }, async () => {
    pgi ??= await sharedPostgres()
    const closed = await freePort()
    const unreachable = await bench(['run', 'flights', '--target', `nowhere=postgres://u:p@127.0.0.1:${closed}/app`, '--duration', '1'])
    assertOneLineFailure(unreachable, /target nowhere \(postgres:\/\/u:\*\*\*@127\.0\.0\.1:\d+\/app\): cannot connect: .*ECONNREFUSED/)
    assert.equal(unreachable.code, 1)

    const wrongPassword = await bench(['run', 'flights', '--target', `direct=${pgi.url('app', pgi.user, 'not-the-password')}`, '--duration', '1'])
    assertOneLineFailure(wrongPassword, /target direct .*cannot connect: password authentication failed for user "postgres" \(SQLSTATE 28P01\)/)
    assert.equal(wrongPassword.code, 1)

    const bad = join(tmp, 'bad.workload')
    fs.writeFileSync(bad, '[params]\nrows = 10\n\n[op read weight=80]\nSELECT v FROM kv WHERE k = ${int(1, rows};\n')
    const syntax = await bench(['run', 'custom', '--file', bad, '--target', pgi.url('app'), '--duration', '1'])
    assertOneLineFailure(syntax, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:5: `))
    assert.equal(syntax.code, 2)

    const zero = await bench(['run', 'flights', '--target', pgi.url('app'), '--workers', '0'])
    assertOneLineFailure(zero, /--workers must be a whole number from 1 to 1024, got 0/)
    assert.equal(zero.code, 2)

    const notInitialised = await bench(['run', 'flights', '--target', `fresh=${pgi.url('postgres')}`, '--duration', '1'])
    assertOneLineFailure(notInitialised, /target fresh: table bench_flights is missing: run `tidepool bench init flights` first/)
  })
})
