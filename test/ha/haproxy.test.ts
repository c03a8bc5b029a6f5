// The HAProxy tier of examples/haproxy/: Debian's haproxy, run with the example's own file (only
// addresses, ports, the log target and the stats socket rewritten), in front of three tidepool
// processes in transaction mode, with a steady load of node-postgres clients through HAProxy. Each
// node in turn gets SIGTERM, is waited for, started again and waited for until HAProxy sends it
// traffic again. Nothing may fail: no transaction, no connection.
// The clients close each connection after a second of use, as an application pool with a maximum
// connection lifetime does; that is what lets a node under SIGTERM (which waits for its clients to
// leave, as PgBouncer's) exit. Figures (per node: SIGTERM to HAProxy's DOWN, to exit, restart to UP;
// HAProxy's retries and redispatches) go to the diagnostics; docs/deploy.md quotes one run.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type pg from 'pg'
import { waitFor } from '../harness/clients.ts'
import { freePort } from '../harness/ports.ts'
import { startPostgres, type PgInstance } from '../harness/postgres.ts'
import { Daemon, destroy, diagnostics, makeDir, pgQuery, requireBinaries } from '../harness/replication.ts'
import { writeConfig } from '../harness/tidepool.ts'
import { connectClient, describeLoad, LOAD_TABLE_SQL, startLoad } from '../harness/load.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const HAPROXY = '/usr/sbin/haproxy'
const LIFETIME_MS = 1000

interface Node {
  name: string
  port: number
  httpPort: number
  iniPath: string
  daemon: Daemon
}

/** The example's file with this test's ports; throws if a line the test rewrites is gone from it. */
function haproxyConfig(dir: string, port: number, nodes: Node[]): string {
  let text = readFileSync(join(ROOT, 'examples', 'haproxy', 'haproxy.cfg'), 'utf8')
  const swap = (re: RegExp, to: (...m: string[]) => string, want: number): void => {
    let n = 0
    text = text.replace(re, (...m: string[]) => { n++; return to(...m) })
    assert.equal(n, want, `examples/haproxy/haproxy.cfg: ${re} matched ${n} times, expected ${want}`)
  }
  swap(/^(\s*)log \/dev\/log local0$/m, (_, sp) => `${sp}log stdout format raw local0`, 1)
  swap(/^(\s*)stats socket \S+/m, (_, sp) => `${sp}stats socket ${join(dir, 'haproxy.sock')}`, 1)
  swap(/^(\s*)bind :6432$/m, (_, sp) => `${sp}bind 127.0.0.1:${port}`, 1)
  swap(/^(\s*)server (node\d) \S+ check port \d+$/gm, (_, sp, name) => {
    const n = nodes.find((x) => x.name === name)
    assert.ok(n, `examples/haproxy/haproxy.cfg names ${name}, which the test does not run`)
    return `${sp}server ${name} 127.0.0.1:${n.port} check port ${n.httpPort}`
  }, nodes.length)
  const path = join(dir, 'haproxy.cfg')
  writeFileSync(path, text)
  return path
}

/** One command on HAProxy's stats socket (non-interactive: it answers and closes). */
function haproxyCli(sock: string, cmd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(sock)
    let out = ''
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`haproxy cli: no answer to ${cmd} in 5 s`)) }, 5000)
    s.on('connect', () => s.write(`${cmd}\n`))
    s.on('data', (d) => { out += String(d) })
    s.on('error', (err) => { clearTimeout(timer); reject(err) })
    s.on('close', () => { clearTimeout(timer); resolve(out) })
  })
}

/** The backend's servers as `show stat` has them: status (UP, DOWN, ...) and counters by column name. */
async function servers(sock: string): Promise<Map<string, Record<string, string>>> {
  const lines = (await haproxyCli(sock, 'show stat')).split('\n').filter((l) => l !== '')
  const head = lines[0]!.replace(/^# /, '').split(',')
  const rows = new Map<string, Record<string, string>>()
  for (const line of lines.slice(1)) {
    const f = line.split(',')
    const row = Object.fromEntries(head.map((h, i) => [h, f[i] ?? '']))
    if (row.pxname === 'tidepool' && row.svname !== 'BACKEND') rows.set(row.svname!, row)
  }
  return rows
}

async function waitStatus(sock: string, name: string, status: 'UP' | 'DOWN', timeoutMs: number): Promise<void> {
  let last = ''
  await waitFor(async () => {
    last = (await servers(sock)).get(name)?.status ?? 'missing'
    return last === status
  }, { timeoutMs, intervalMs: 50, what: `HAProxy to see ${name} ${status} (now ${last})` })
}

async function isReady(httpPort: number): Promise<boolean> {
  try {
    const r = await fetch(`http://127.0.0.1:${httpPort}/ready`, { signal: AbortSignal.timeout(2000) })
    return r.status === 200
  } catch {
    return false
  }
}

async function startNode(node: Node): Promise<void> {
  const mark = node.daemon.mark()
  node.daemon.spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'main.ts'), node.iniPath])
  await node.daemon.waitLog(mark, /\[runtime\.started\]/, 30_000, `${node.name} to start`)
  await waitFor(() => isReady(node.httpPort), { timeoutMs: 20_000, intervalMs: 50, what: `${node.name}'s /ready to answer 200` })
}

test('rolling restart of 3 tidepool nodes behind HAProxy (examples/haproxy): no failed transaction, no refused connection', { timeout: 240_000 }, async (t: TestContext) => {
  requireBinaries([HAPROXY])
  const pgi: PgInstance = await startPostgres({ maxConnections: 60 })
  t.after(() => pgi.stop())
  await pgQuery(pgi.port, LOAD_TABLE_SQL, [], 'app')

  const dir = makeDir()
  const nodes: Node[] = []
  for (const name of ['node1', 'node2', 'node3']) {
    const port = await freePort()
    const httpPort = await freePort()
    const nodeDir = join(dir, name)
    mkdirSync(nodeDir)
    const iniPath = writeConfig(nodeDir, pgi, {
      settings: { listen_port: port, pool_mode: 'transaction', default_pool_size: 5, max_client_conn: 200 },
      tidepool: { http_listen_port: httpPort },
    })
    nodes.push({ name, port, httpPort, iniPath, daemon: new Daemon({ asPostgres: false, deathSignal: 'TERM', env: { ...process.env } }) })
  }
  const haproxy = new Daemon({ asPostgres: false, deathSignal: 'TERM' })
  t.after(() => destroy([haproxy, ...nodes.map((n) => n.daemon)], [dir]))
  for (const n of nodes) diagnostics(t, `${n.name} log`, () => n.daemon.log())
  diagnostics(t, 'haproxy log', () => haproxy.log())

  await Promise.all(nodes.map(startNode))
  const port = await freePort()
  const sock = join(dir, 'haproxy.sock')
  const cfg = haproxyConfig(dir, port, nodes)
  haproxy.spawn(HAPROXY, ['-db', '-f', cfg])
  await waitFor(async () => {
    if (!haproxy.running()) throw new Error(`haproxy exited:\n${haproxy.log()}`)
    const s = await servers(sock)
    return nodes.every((n) => s.get(n.name)?.status === 'UP')
  }, { timeoutMs: 20_000, intervalMs: 100, what: 'HAProxy to see every node UP' })

  // Clients that reconnect: a failed connect is a refused connection; a failed query a failed transaction.
  let refused = 0
  const opened = new WeakMap<pg.Client, number>()
  const load = startLoad({
    clients: 8,
    thinkMs: 5,
    connect: async () => {
      try {
        const c = await connectClient(port)
        opened.set(c, Date.now())
        return c
      } catch (err) {
        refused++
        throw err
      }
    },
    tx: async (c, client, seq) => {
      await c.query('BEGIN')
      await c.query('INSERT INTO load_tx (client, seq, port) VALUES ($1, $2, inet_server_port())', [client, seq])
      await c.query('COMMIT')
      // The application pool's maximum lifetime: the connection is closed after a commit, never in a transaction.
      if (Date.now() - (opened.get(c) ?? 0) > LIFETIME_MS) await c.end()
      return 0
    },
  })
  let stopped = false
  t.after(async () => { if (!stopped) await load.stop() })
  await load.progress(5, 60_000)
  await waitFor(async () => {
    if (!haproxy.running()) throw new Error(`haproxy exited:\n${haproxy.log()}`)
    const s = await servers(sock)
    return nodes.every((n) => Number(s.get(n.name)?.stot ?? 0) > 0)
  }, { timeoutMs: 20_000, intervalMs: 100, what: 'every node to have taken sessions' })

  const figures: string[] = []
  for (const n of nodes) {
    const before = Number((await servers(sock)).get(n.name)!.stot)
    const mark = n.daemon.mark()
    const t0 = Date.now()
    const down = waitStatus(sock, n.name, 'DOWN', 30_000).then(() => Date.now() - t0)
    // SIGTERM: /ready fails at once, the node waits for its clients; a minute is far more than a
    // one-second connection lifetime needs, and a node still running then is killed (and the test fails below).
    await n.daemon.stop('SIGTERM', 60_000)
    const exitMs = Date.now() - t0
    assert.match(n.daemon.since(mark), /\[runtime\.stopped\]/, `${n.name} was killed, not stopped by SIGTERM`)
    const downMs = await down
    const t1 = Date.now()
    await startNode(n)
    const readyMs = Date.now() - t1
    await waitStatus(sock, n.name, 'UP', 30_000)
    const upMs = Date.now() - t1
    // Back in rotation means new sessions, not only a green check.
    await waitFor(async () => Number((await servers(sock)).get(n.name)!.stot) > before,
      { timeoutMs: 30_000, intervalMs: 100, what: `${n.name} to take sessions again` })
    await load.progress(3, 60_000)
    figures.push(`${n.name}: SIGTERM→DOWN ${downMs} ms, SIGTERM→exit ${exitMs} ms, start→/ready ${readyMs} ms, start→UP ${upMs} ms, total ${Date.now() - t0} ms`)
  }

  const stats = await load.stop()
  stopped = true
  const s = await servers(sock)
  const counters = nodes.map((n) => `${n.name}: sessions ${s.get(n.name)!.stot}, connect errors ${s.get(n.name)!.econ}, retries ${s.get(n.name)!.wretr}, redispatches ${s.get(n.name)!.wredis}`)
  const rows = Number((await pgQuery(pgi.port, 'SELECT count(*) AS n FROM load_tx', [], 'app'))[0].n)
  for (const f of figures) t.diagnostic(f)
  // The load counts a failed connect as a failed attempt too; here the two are told apart.
  const failedTx = stats.failed - refused
  t.diagnostic(`load: ${describeLoad(stats)}; failed transactions ${failedTx}, refused connections ${refused}, rows ${rows}`)
  t.diagnostic(`haproxy: ${counters.join('; ')}`)
  assert.equal(refused, 0, `refused connections: ${JSON.stringify(stats.failures.slice(0, 5))}`)
  assert.equal(failedTx, 0, `failed transactions: ${JSON.stringify(stats.failures.slice(0, 5))}`)
  // Every acknowledged commit is in the table, and nothing else is.
  assert.equal(rows, stats.ok)
  assert.ok(stats.reconnects > nodes.length, `clients reconnected only ${stats.reconnects} times`)
})
