// One tidepool node in region eu in front of a cluster spread over two regions: the primary pg0 and
// the standby pg2 in us, the standby pg1 in eu (streaming replication, PostgreSQL 15). Under steady
// read and write load:
//   - reads (read-only entry) stay on pg1, the eu standby; writes go to the primary in us;
//   - pg1 killed: reads move to pg2 across the region, only transactions in flight fail;
//   - pg1 back: new server connections go home at once, the remote ones retire within
//     region_failback_ms, and every read lands on pg1 again, with no error;
//   - SHOW HOSTS, /metrics and /api/hosts.json show each host's region.
// The distance between the regions is made twice: by a user-space delay proxy in front of the us
// hosts (test/harness/fault-proxy.ts, tidepool in this process), and with network namespaces: tidepool
// runs in a namespace of its own, reaching eu over one veth pair and us over another with
// `tc netem delay` on both ends (or, on a kernel without netem, the same proxy behind the us veth).
// Read latency per region is printed as a diagnostic (the figures of docs/deploy.md).
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type pg from 'pg'
import { runPsql, waitFor } from '../harness/clients.ts'
import { startReplicatedCluster, pgQuery, SUPERUSER, type ReplNode } from '../harness/replication.ts'
import { startTidepool, writeConfig, type TestTidepool, type TidepoolOptions } from '../harness/tidepool.ts'
import { connectClient, describeLoad, LOAD_TABLE_SQL, startLoad } from '../harness/load.ts'
import { startFaultProxy } from '../harness/fault-proxy.ts'
import { freePort } from '../harness/ports.ts'

const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Array<{ name: string; metrics: Array<{ value: string; labels?: Record<string, string> }> }>

const FAST = { janitor_interval_ms: 100, health_check_interval_ms: 200, health_check_timeout_ms: 2000, health_check_rise: 1, health_check_fall: 2, host_ban_ms: 2000 }
const ONE_WAY_DELAY_MS = 10
const FAILBACK_MS = 2000

interface Sample { port: number; ms: number; atMs: number }
interface Addr { host: string; port: number }

/** A tidepool node as the scenario sees it: where clients and HTTP reach it, and its log. */
interface Node {
  host: string
  port: number
  httpPort: number
  log(): string
}

/** How tidepool reaches the three PostgreSQL servers (pg0 us, pg1 eu, pg2 us), and how it is started. */
interface Front {
  reach: [Addr, Addr, Addr]
  start(opts: TidepoolOptions): Promise<Node>
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!
}

function p95(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(s.length * 0.95))]!
}

const fmt = (x: number): string => x.toFixed(1)

async function hostsJson(node: Node): Promise<Array<{ host: string; port: number; role: string; health: string; region: string | null }>> {
  return await (await fetch(`http://${node.host}:${node.httpPort}/api/hosts.json`)).json() as Array<{ host: string; port: number; role: string; health: string; region: string | null }>
}

async function hostState(node: Node, a: Addr): Promise<string> {
  const h = (await hostsJson(node)).find((x) => x.host === a.host && Number(x.port) === a.port)
  return h === undefined ? 'none' : `${h.role}/${h.health}`
}

async function scenario(t: TestContext, cluster: { primary: ReplNode; eu: ReplNode; us: ReplNode }, front: Front): Promise<string> {
  const { primary, eu, us } = cluster
  const [pPrimary, pEu, pUs] = front.reach
  const entry = (attrs: string) => `host=${front.reach.map((a) => a.host).join(',')} port=${front.reach.map((a) => a.port).join(',')} host_regions=us,eu,us dbname=app user=${SUPERUSER.user} password=${SUPERUSER.password} target_session_attrs=${attrs}`
  const node = await front.start({
    settings: { default_pool_size: 4, query_wait_timeout: 30, server_connect_timeout: 3, admin_users: SUPERUSER.user },
    databases: { app: entry('read-write'), app_ro: entry('read-only') },
    tidepool: { ...FAST, node_region: 'eu', region_failback_ms: FAILBACK_MS },
  })
  await waitFor(async () => (await hostState(node, pPrimary)) === 'primary/up' && (await hostState(node, pEu)) === 'replica/up' && (await hostState(node, pUs)) === 'replica/up',
    { timeoutMs: 20_000, intervalMs: 50, what: 'every host checked' })

  const reads: Sample[] = []
  const writes: Sample[] = []
  const ro = startLoad({
    clients: 4,
    connect: () => connectClient(node.port, 'app_ro', node.host),
    tx: async (c: pg.Client) => {
      const t0 = performance.now()
      const r = await c.query('SELECT inet_server_port() AS port, count(*) AS n FROM load_tx')
      const port = r.rows[0].port as number
      reads.push({ port, ms: performance.now() - t0, atMs: Date.now() })
      return port
    },
  })
  const rw = startLoad({
    clients: 2,
    connect: () => connectClient(node.port, 'app', node.host),
    tx: async (c: pg.Client, client: number, seq: number) => {
      const t0 = performance.now()
      const r = await c.query('INSERT INTO load_tx (client, seq, port) VALUES ($1, $2, inet_server_port()) RETURNING port', [client, seq])
      const port = r.rows[0].port as number
      writes.push({ port, ms: performance.now() - t0, atMs: Date.now() })
      return port
    },
    thinkMs: 20,
  })
  let stopped = false
  const stopLoad = async () => {
    if (stopped) return
    stopped = true
    await Promise.all([ro.stop(), rw.stop()])
  }
  t.after(stopLoad)
  t.after(() => t.diagnostic(`reads: ${describeLoad(ro.stats)}\nwrites: ${describeLoad(rw.stats)}`))

  // 1. Home: every read on the eu standby, every write on the primary in us.
  await Promise.all([ro.progress(30, 30_000), rw.progress(5, 30_000)])
  const home = reads.slice()
  assert.deepEqual([...new Set(home.map((s) => s.port))], [eu.port], 'reads stay in eu')
  assert.deepEqual([...new Set(writes.map((s) => s.port))], [primary.port], 'writes go to the primary in us')
  assert.equal(ro.stats.failed + rw.stats.failed, 0)

  // 2. The eu standby dies: reads cross to us; at most the reads in flight at the kill fail.
  const killedAt = Date.now()
  eu.kill()
  await waitFor(() => reads.filter((s) => s.atMs > killedAt && s.port === us.port).length >= 40, { timeoutMs: 30_000, intervalMs: 20, what: 'reads to move to the us standby' })
  const crossedAt = reads.find((s) => s.atMs > killedAt && s.port === us.port)!.atMs
  const failedAtKill = ro.stats.failed
  assert.ok(failedAtKill <= 4, `only reads in flight at the kill fail (4 clients): ${ro.stats.failures.map((f) => f.error).join('; ')}`)
  const away = reads.filter((s) => s.atMs > crossedAt)
  assert.deepEqual([...new Set(away.map((s) => s.port))], [us.port], 'once across, every read runs in us')

  // 3. The eu standby is back: new connections go home at once, the remote ones retire within
  //    region_failback_ms, and reads come home without an error.
  await eu.start()
  await waitFor(async () => (await hostState(node, pEu)) === 'replica/up', { timeoutMs: 20_000, intervalMs: 20, what: 'tidepool to see pg1 up again' })
  const upAt = Date.now()
  await waitFor(() => {
    const last = reads.filter((s) => s.atMs > upAt).slice(-40)
    return last.length === 40 && last.every((s) => s.port === eu.port)
  }, { timeoutMs: FAILBACK_MS + 15_000, intervalMs: 20, what: 'reads to come home to pg1' })
  const lastRemote = reads.filter((s) => s.atMs > upAt && s.port === us.port).at(-1)?.atMs ?? upAt
  const firstHome = reads.find((s) => s.atMs > upAt && s.port === eu.port)?.atMs ?? NaN
  assert.ok(lastRemote - upAt <= FAILBACK_MS + 3_000, `the last remote read came ${lastRemote - upAt} ms after pg1 was up (region_failback_ms ${FAILBACK_MS})`)
  assert.equal(ro.stats.failed, failedAtKill, 'coming home fails no read')
  assert.equal(rw.stats.failed, 0, 'writes never failed')
  assert.ok(node.log().includes('pool.region_failback') && node.log().includes(`outside region eu retire within ${FAILBACK_MS} ms`), 'the move home is logged')
  await waitFor(async () => Number((await pgQuery(us.port, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'app' AND application_name <> 'tidepool health check'`))[0].n) === 0,
    { timeoutMs: 10_000, intervalMs: 100, what: 'no pooled server connection left on the us standby' })
  assert.deepEqual([...new Set(writes.map((s) => s.port))], [primary.port])
  await stopLoad()

  // 4. The region of each host, in SHOW HOSTS (last column), /metrics and /api/hosts.json.
  const shown = await runPsql({ host: node.host, port: node.port, user: SUPERUSER.user, password: SUPERUSER.password, db: 'pgbouncer', sql: 'SHOW HOSTS' })
  assert.equal(shown.code, 0, shown.stderr)
  const esc = (x: string) => x.replace(/\./g, '\\.')
  assert.match(shown.stdout, new RegExp(`^${esc(pEu.host)}\\|${pEu.port}\\|postgresql\\|replica\\|up\\|yes\\|.*\\|eu$`, 'm'))
  assert.match(shown.stdout, new RegExp(`^${esc(pPrimary.host)}\\|${pPrimary.port}\\|postgresql\\|primary\\|up\\|yes\\|.*\\|us$`, 'm'))
  const metrics = parsePrometheus(await (await fetch(`http://${node.host}:${node.httpPort}/metrics`)).text())
  const up = metrics.find((f) => f.name === 'tidepool_host_up')?.metrics ?? []
  const keyed = (a: Addr, region: string) => `${a.host}:${a.port} ${region}`
  const want = [keyed(pPrimary, 'us'), keyed(pEu, 'eu'), keyed(pUs, 'us')].sort()
  assert.deepEqual(up.map((m) => `${m.labels?.host} ${m.labels?.region}`).sort(), want)
  assert.deepEqual((await hostsJson(node)).map((h) => `${h.host}:${h.port} ${h.region}`).sort(), want)

  // Figures: read latency by where the read ran (a read in us pays the delay both ways).
  const latency = (xs: Sample[]) => `n=${xs.length} median ${fmt(median(xs.map((s) => s.ms)))} ms, p95 ${fmt(p95(xs.map((s) => s.ms)))} ms`
  const homeMs = median(home.map((s) => s.ms))
  const awayMs = median(away.map((s) => s.ms))
  const figures = [
    `reads at home (eu standby): ${latency(home)}`,
    `reads across (us standby, pg1 down): ${latency(away)}`,
    `reads home again: ${latency(reads.filter((s) => s.atMs > lastRemote))}`,
    `writes (primary in us): ${latency(writes)}`,
    `kill → first read in us: ${crossedAt - killedAt} ms; reads failed at the kill: ${failedAtKill}`,
    `pg1 up → first read home: ${firstHome - upAt} ms; → last read in us: ${lastRemote - upAt} ms (region_failback_ms ${FAILBACK_MS})`,
  ].join('\n')
  t.diagnostic(`[figures]\n${figures}`)
  if (process.env.TIDEPOOL_TEST_LOG === '1') process.stderr.write(`${figures}\n`)
  assert.ok(awayMs >= 2 * ONE_WAY_DELAY_MS, `a read in us pays the delay both ways: ${awayMs} ms`)
  assert.ok(homeMs < awayMs, `reads at home are faster: ${homeMs} ms vs ${awayMs} ms`)
  return figures
}

async function cluster(t: TestContext): Promise<{ primary: ReplNode; eu: ReplNode; us: ReplNode }> {
  const { primary, replicas: [eu, us] } = await startReplicatedCluster(t, { replicas: 2 })
  assert.ok(eu && us)
  await pgQuery(primary.port, LOAD_TABLE_SQL, [], 'app')
  return { primary, eu, us }
}

test('regions (delay proxy): reads stay in the node\'s region, cross over while its standby is down, and come home when it is back', { timeout: 120_000 }, async (t) => {
  const c = await cluster(t)
  // The us hosts are reached through the delay; the eu standby directly.
  const [toPrimary, toUs] = await Promise.all([startFaultProxy({ host: '127.0.0.1', port: c.primary.port }), startFaultProxy({ host: '127.0.0.1', port: c.us.port })])
  t.after(() => Promise.all([toPrimary.close(), toUs.close()]))
  toPrimary.set({ delayMs: ONE_WAY_DELAY_MS })
  toUs.set({ delayMs: ONE_WAY_DELAY_MS })
  let tp: TestTidepool | null = null
  let started: TidepoolOptions = {}
  await scenario(t, c, {
    reach: [{ host: '127.0.0.1', port: toPrimary.port }, { host: '127.0.0.1', port: c.eu.port }, { host: '127.0.0.1', port: toUs.port }],
    async start(opts) {
      const httpPort = await freePort()
      started = { ...opts, tidepool: { ...opts.tidepool, http_listen_port: httpPort } }
      tp = await startTidepool(t, c.primary, started)
      const node = tp
      return { host: '127.0.0.1', port: node.port, httpPort, log: () => node.logs.join('\n') }
    },
  })

  // RELOAD of a file whose host_regions do not match host= is refused whole, with the reason.
  assert.ok(tp !== null)
  const node: TestTidepool = tp
  node.rewrite({ ...started, databases: { ...started.databases, app_ro: started.databases!.app_ro!.replace('host_regions=us,eu,us', 'host_regions=us,eu') } })
  const admin = await connectClient(node.port, 'pgbouncer')
  t.after(() => admin.end().catch(() => {}))
  await assert.rejects(admin.query('RELOAD'), (e: { message: string; detail?: string }) =>
    e.message === 'RELOAD failed, see logs for additional details' && /\[databases\] app_ro: host_regions: 2 regions for 3 hosts; give one per host/.test(e.detail ?? ''))
  assert.equal(node.rt.backends.monitor.all().find((h) => h.port === c.eu.port)?.region, 'eu', 'the old config stays')
})

// ---- network namespaces -------------------------------------------------------------------------

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}): ${r.stderr}${r.error?.message ?? ''}`)
}

/**
 * A namespace for the tidepool node and two veth pairs into it from this one, one per region, with
 * `tc netem delay` on both ends of the us pair when the kernel has netem. Names and addresses carry
 * this process's pid, so parallel runs do not meet; everything goes with the namespace (its veth
 * ends take their peers along), in t.after and on exit.
 */
function regionNet(t: TestContext): { ns: string; euRoot: string; usRoot: string; nodeAddr: string; netem: string | null } {
  const id = process.pid % 100_000
  const ns = `tpregion${id}`
  const octet = 20 + (process.pid % 200)
  const net4 = (n: number) => `10.231.${octet}.${n}`
  const remove = () => { spawnSync('ip', ['netns', 'del', ns], { timeout: 10_000 }) }
  remove() // a namespace left by an earlier process with this pid
  process.on('exit', remove)
  t.after(() => {
    remove()
    process.off('exit', remove)
  })
  sh('ip', ['netns', 'add', ns])
  sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  for (const [name, root, inner] of [[`tpe${id}`, net4(1), net4(2)], [`tpu${id}`, net4(5), net4(6)]] as const) {
    sh('ip', ['link', 'add', `${name}a`, 'type', 'veth', 'peer', 'name', `${name}b`, 'netns', ns])
    sh('ip', ['addr', 'add', `${root}/30`, 'dev', `${name}a`])
    sh('ip', ['link', 'set', `${name}a`, 'up'])
    sh('ip', ['-n', ns, 'addr', 'add', `${inner}/30`, 'dev', `${name}b`])
    sh('ip', ['-n', ns, 'link', 'set', `${name}b`, 'up'])
  }
  let netem: string | null = null
  try {
    sh('tc', ['qdisc', 'add', 'dev', `tpu${id}a`, 'root', 'netem', 'delay', `${ONE_WAY_DELAY_MS}ms`])
    sh('tc', ['-n', ns, 'qdisc', 'add', 'dev', `tpu${id}b`, 'root', 'netem', 'delay', `${ONE_WAY_DELAY_MS}ms`])
  } catch (err) {
    netem = (err as Error).message
  }
  return { ns, euRoot: net4(1), usRoot: net4(5), nodeAddr: net4(2), netem }
}

/** TCP from `listenHost` (a veth address here) to a loopback port, where the clusters listen. */
async function relay(t: TestContext, listenHost: string, toPort: number): Promise<Addr> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(toPort, '127.0.0.1')
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.setNoDelay(true)
      s.on('error', () => { client.destroy(); upstream.destroy() })
      s.on('close', () => { sockets.delete(s); client.destroy(); upstream.destroy() })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, listenHost, () => resolve()))
  t.after(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  }))
  return { host: listenHost, port: (server.address() as net.AddressInfo).port }
}

test('regions (network namespaces: tidepool in its own, one veth pair per region, netem where the kernel has it): the same', { timeout: 120_000 }, async (t) => {
  if (process.getuid?.() !== 0) {
    // Namespaces need root; CI runs as root (.ci/run), so this branch is for a developer's laptop.
    t.diagnostic('skipped: network namespaces need root')
    t.skip('network namespaces need root')
    return
  }
  const c = await cluster(t)
  const rn = regionNet(t)
  let toPrimary = c.primary.port
  let toUs = c.us.port
  if (rn.netem !== null) {
    // Debian's kernels have netem (sch_netem); a kernel built without CONFIG_NET_SCH_NETEM does not.
    // Then the us veth carries no delay of its own and the proxy adds it behind the relay.
    t.diagnostic(`skipped: tc netem (${rn.netem.trim()}); the delay between regions is the user-space proxy`)
    const proxies = await Promise.all([startFaultProxy({ host: '127.0.0.1', port: c.primary.port }), startFaultProxy({ host: '127.0.0.1', port: c.us.port })])
    t.after(() => Promise.all(proxies.map((p) => p.close())))
    for (const p of proxies) p.set({ delayMs: ONE_WAY_DELAY_MS })
    ;[toPrimary, toUs] = proxies.map((p) => p.port) as [number, number]
  }
  const reach: [Addr, Addr, Addr] = [await relay(t, rn.usRoot, toPrimary), await relay(t, rn.euRoot, c.eu.port), await relay(t, rn.usRoot, toUs)]
  await scenario(t, c, {
    reach,
    async start(opts) {
      const [port, httpPort] = [await freePort(), await freePort()]
      const dir = mkdtempSync(join(tmpdir(), 'tidepool-region-'))
      const ini = writeConfig(dir, c.primary, {
        ...opts,
        settings: { ...opts.settings, listen_addr: rn.nodeAddr, listen_port: port },
        tidepool: { ...opts.tidepool, http_listen_addr: rn.nodeAddr, http_listen_port: httpPort },
      })
      const root = join(import.meta.dirname, '..', '..')
      // setpriv: the node dies with this test process, wherever it ends.
      const proc = spawn('ip', ['netns', 'exec', rn.ns, 'setpriv', '--pdeathsig', 'KILL', process.execPath, '--import', 'tsx', join(root, 'src', 'main.ts'), ini], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      proc.stdout?.on('data', (d) => { out += String(d) })
      proc.stderr?.on('data', (d) => { out += String(d) })
      let exited = false
      const gone = new Promise<void>((resolve) => proc.on('exit', () => { exited = true; resolve() }))
      // Whichever order the hooks run in: a namespace deleted under a live process lasts until the
      // process ends, and its veths go with it then.
      t.after(async () => {
        if (!exited) proc.kill('SIGKILL')
        await gone
        rmSync(dir, { recursive: true, force: true })
      })
      t.after(() => t.diagnostic(`[log] tidepool in ${rn.ns}:\n${out}`))
      await waitFor(() => out.includes('[runtime.started]') || exited, { timeoutMs: 30_000, what: 'tidepool in its namespace to start' })
      if (exited) throw new Error(`tidepool exited early:\n${out}`)
      return { host: rn.nodeAddr, port, httpPort, log: () => out }
    },
  })
})
