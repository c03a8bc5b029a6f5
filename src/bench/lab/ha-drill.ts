// The HA drill of issue 7: on one 2-member Patroni cluster (Patroni 3.0 + etcd, PostgreSQL 15; the
// test harness's test/harness/patroni.ts), a planned switchover and a kill -9 of the leader, each
// under a steady write load (node-postgres clients, test/harness/load.ts), through three fronts in
// the same run:
//   tidepool   in this process, patroni_urls set; the switchover is tidepool's own
//              (Runtime.switchover, as the console's SWITCHOVER runs it)
//   pgbouncer  Debian's /usr/sbin/pgbouncer pointed at the leader, plus a Patroni on_role_change
//              callback (a shell script written here) that, on the member becoming leader, does
//              what operators do: PAUSE, rewrite pgbouncer.ini to that member, RELOAD, RESUME.
//              The switchover is Patroni's (POST /switchover), as `patronictl switchover`
//   direct     clients connect straight to PostgreSQL, trying each member and keeping the first
//              that takes writes (libpq's target_session_attrs=read-write), reconnecting on error
// For each: failed transactions (attempts that errored, connects included; a client backs off
// 50 ms after one) and the longest stall (longest time a client went between two commits).
//
//   npx tsx src/bench/lab/ha-drill.ts [--clients 8] [--before 3] [--after 4] [--targets tidepool,pgbouncer,direct]
//
// Must be run as root or as a user that can run PostgreSQL (the harness runs it as postgres).
// Invariants: every process started here is killed on exit, on Ctrl-C and on failure (the
// harness's exit hook and parent-death signals).

import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TestContext } from 'node:test'
import pg from 'pg'
import { startPatroniCluster, type PatroniCluster, type PatroniNode } from '../../../test/harness/patroni.ts'
import { chownToPostgres, Daemon, makeDir, pgQuery, SUPERUSER, waitStreaming } from '../../../test/harness/replication.ts'
import { runPsql, waitFor } from '../../../test/harness/clients.ts'
import { SqlState } from '../../protocol/pg-error.ts'
import { freePort } from '../../../test/harness/ports.ts'
import { writeConfig } from '../../../test/harness/tidepool.ts'
import { connectClient, describeLoad, LOAD_TABLE_SQL, startLoad, type LoadStats } from '../../../test/harness/load.ts'
import { loadConfig } from '../../config/load.ts'
import { Runtime } from '../../runtime.ts'
import { Logger } from '../../observe/log.ts'

type Target = 'tidepool' | 'pgbouncer' | 'direct'
type Event = 'switchover' | 'kill'

const PGBOUNCER = '/usr/sbin/pgbouncer'
const POOL_SIZE = 4

const { values: argv } = parseArgs({
  options: {
    clients: { type: 'string', default: '8' },
    before: { type: 'string', default: '3' },
    after: { type: 'string', default: '4' },
    targets: { type: 'string', default: 'tidepool,pgbouncer,direct' },
  },
})
const CLIENTS = Number(argv.clients)
const BEFORE_MS = Number(argv.before) * 1000
const AFTER_MS = Number(argv.after) * 1000
const TARGETS = argv.targets!.split(',') as Target[]

// The harness wants a TestContext for its cleanups; here they run at the end, in reverse.
const cleanups: Array<() => unknown> = []
const ctx = { after: (fn: () => unknown) => { cleanups.push(fn) }, diagnostic: () => {} } as unknown as TestContext
async function cleanup(): Promise<void> {
  for (const fn of cleanups.splice(0).reverse()) await Promise.resolve().then(fn).catch((err: Error) => console.error(`cleanup: ${err.message}`))
}
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)))

// --- PgBouncer and its Patroni callback ---------------------------------------------------------

interface Bouncer { port: number; dir: string; iniPath: string }

function bouncerIni(port: number, leaderPort: number): string {
  return [
    '[databases]',
    `app = host=127.0.0.1 port=${leaderPort} dbname=app user=${SUPERUSER.user} password=${SUPERUSER.password}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1', `listen_port = ${port}`, 'unix_socket_dir =',
    'auth_type = any', `admin_users = ${SUPERUSER.user}`,
    'pool_mode = transaction', `default_pool_size = ${POOL_SIZE}`, 'max_client_conn = 200',
    // Tuned as a careful operator would: retry a failed server login after 1 s, not 15.
    'query_wait_timeout = 60', 'server_login_retry = 1', 'server_connect_timeout = 3',
    '',
  ].join('\n')
}

/** The on_role_change callback of one member: Patroni runs it as `script on_role_change <role> <scope>`. */
function callbackScript(b: Bouncer, pgPort: number): string {
  const tmpl = join(b.dir, 'pgbouncer.ini.in')
  return `#!/bin/sh
# Written by src/bench/lab/ha-drill.ts: point PgBouncer at this member when it becomes the leader.
[ "$1" = on_role_change ] || exit 0
case "$2" in master|primary) ;; *) exit 0 ;; esac
admin() { psql -X -q -h 127.0.0.1 -p ${b.port} -U ${SUPERUSER.user} -d pgbouncer -c "$1" >/dev/null 2>&1; }
admin "PAUSE app"
sed 's/@LEADER_PORT@/${pgPort}/' '${tmpl}' > '${b.iniPath}.tmp' && mv '${b.iniPath}.tmp' '${b.iniPath}'
admin "RELOAD"
admin "RESUME app"
echo "$(date +%T.%N) pgbouncer -> ${pgPort}" >> '${join(b.dir, 'callback.log')}'
`
}

async function startBouncer(b: Bouncer, leaderPort: number): Promise<void> {
  writeFileSync(join(b.dir, 'pgbouncer.ini.in'), bouncerIni(b.port, 0).replace('port=0 ', 'port=@LEADER_PORT@ '))
  writeFileSync(b.iniPath, bouncerIni(b.port, leaderPort))
  chownToPostgres(b.iniPath)
  // PgBouncer refuses to run as root: the harness's Daemon runs it as postgres.
  const d = new Daemon({ asPostgres: true, deathSignal: 'TERM' })
  cleanups.push(() => d.stop('SIGTERM', 5_000))
  d.spawn(PGBOUNCER, [b.iniPath])
  await d.waitLog(0, /process up/, 20_000, 'pgbouncer to start')
}

// --- tidepool -----------------------------------------------------------------------------------

async function startTidepool(cluster: PatroniCluster): Promise<Runtime> {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-drill-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  const ns = cluster.nodes
  const iniPath = writeConfig(dir, null, {
    settings: { default_pool_size: POOL_SIZE, max_client_conn: 200, query_wait_timeout: 60, client_login_timeout: 60, server_connect_timeout: 3 },
    databases: {
      app: `host=${ns.map((n) => n.host).join(',')} port=${ns.map((n) => n.pgPort).join(',')} dbname=app user=${SUPERUSER.user} password=${SUPERUSER.password} ` +
        `target_session_attrs=read-write patroni_urls=${ns.map((n) => n.restUrl).join(',')}`,
    },
    tidepool: { health_check_interval_ms: 200, health_check_timeout_ms: 2000, health_check_rise: 1, health_check_fall: 2, host_ban_ms: 2000 },
  })
  const r = await loadConfig(iniPath)
  if (!r.ok) throw new Error(r.errors.join('\n'))
  const lines: string[] = []
  const rt = await Runtime.start(r.config, { log: new Logger((l) => lines.push(l)) })
  cleanups.push(() => rt.shutdown('immediate'))
  return rt
}

// --- clients ------------------------------------------------------------------------------------

/** libpq's target_session_attrs=read-write over the members, in order. */
async function openPrimary(nodes: PatroniNode[]): Promise<pg.Client> {
  for (const n of nodes) {
    const c = await connectClient(n.pgPort).catch(() => null)
    if (c === null) continue
    const ro = await c.query('SHOW transaction_read_only').then((r) => r.rows[0].transaction_read_only as string, () => 'on')
    if (ro === 'off') return c
    await c.end().catch(() => {})
  }
  throw new Error('no member takes writes')
}

/** A write refused as read-only (the member was demoted under us) ends the connection, so the client looks again. */
async function directTx(c: pg.Client, client: number, seq: number): Promise<number> {
  try {
    await c.query('BEGIN')
    const r = await c.query('INSERT INTO load_tx (client, seq, port) VALUES ($1, $2, inet_server_port()) RETURNING port', [client, seq])
    await c.query('COMMIT')
    return r.rows[0].port as number
  } catch (err) {
    if ((err as { code?: string }).code === SqlState.ReadOnlySqlTransaction) await c.end().catch(() => {})
    throw err
  }
}

// --- the drill ----------------------------------------------------------------------------------

interface Row { target: Target; event: Event; stats: LoadStats; eventMs: number; note: string }

async function settle(cluster: PatroniCluster): Promise<PatroniNode> {
  const leader = await cluster.leader(60_000)
  for (const n of cluster.nodes.filter((x) => x !== leader)) {
    if (!n.isRunning()) await n.start()
    await waitFor(() => n.isReplica(), { timeoutMs: 90_000, intervalMs: 200, what: `${n.name} to run as a replica` })
  }
  await waitStreaming(leader.pgPort, cluster.nodes.filter((x) => x !== leader).map((n) => n.name), 90_000)
  return leader
}

async function run(target: Target, event: Event, cluster: PatroniCluster, fronts: { rt?: Runtime; bouncer?: Bouncer }): Promise<Row> {
  const leader = await settle(cluster)
  const other = cluster.nodes.find((n) => n !== leader)!
  if (target === 'tidepool') {
    const h = fronts.rt!.backends.monitor.get(leader.host, leader.pgPort)
    await waitFor(() => h?.role === 'primary', { timeoutMs: 30_000, what: 'tidepool to know the leader' })
  }
  if (target === 'pgbouncer') await waitFor(() => runPsql({ port: fronts.bouncer!.port, user: SUPERUSER.user, db: 'app', sql: 'SELECT inet_server_port()' }).then((r) => r.stdout.trim() === String(leader.pgPort)),
    { timeoutMs: 30_000, intervalMs: 200, what: 'pgbouncer to point at the leader' })
  const connect = target === 'direct' ? () => openPrimary(cluster.nodes) : () => connectClient(target === 'tidepool' ? fronts.rt!.port : fronts.bouncer!.port)
  const load = startLoad({ clients: CLIENTS, connect, tx: target === 'direct' ? directTx : undefined })
  await load.progress(3, 30_000)
  await sleep(BEFORE_MS)
  const t0 = Date.now()
  let note = ''
  if (event === 'switchover') {
    if (target === 'tidepool') {
      const r = await fronts.rt!.switchover('app', other.name, 60_000)
      if (!r.ok) throw new Error(`tidepool switchover failed: ${r.error}`)
      note = r.phases.map((p) => `${p.name} ${p.ms}`).join(', ')
    } else {
      await cluster.switchover(other.name)
    }
  } else {
    leader.kill()
    await cluster.leader(60_000)
  }
  const eventMs = Date.now() - t0
  await sleep(AFTER_MS)
  await load.progress(3, 60_000)
  const stats = await load.stop()
  const row = { target, event, stats, eventMs, note }
  console.log(`${target} ${event}: ${describeLoad(stats)}; Patroni/event ${eventMs} ms${note === '' ? '' : ` (${note})`}`)
  return row
}

async function main(): Promise<void> {
  const bouncerDir = makeDir()
  const bouncer: Bouncer = { port: await freePort(), dir: bouncerDir, iniPath: join(bouncerDir, 'pgbouncer.ini') }
  const withBouncer = TARGETS.includes('pgbouncer')
  console.log('starting etcd and 2 Patroni members ...')
  const cluster = await startPatroniCluster(ctx, {
    nodes: 2,
    callbacks: withBouncer ? ({ dir, pgPort }) => {
      const path = join(dir, 'on_role_change.sh')
      writeFileSync(path, callbackScript(bouncer, pgPort))
      chmodSync(path, 0o755)
      chownToPostgres(path)
      return { on_role_change: path }
    } : undefined,
  })
  const leader = await cluster.leader()
  await pgQuery(leader.pgPort, LOAD_TABLE_SQL, [], 'app')
  const fronts: { rt?: Runtime; bouncer?: Bouncer } = {}
  if (TARGETS.includes('tidepool')) fronts.rt = await startTidepool(cluster)
  if (withBouncer) {
    await startBouncer(bouncer, leader.pgPort)
    fronts.bouncer = bouncer
  }
  const rows: Row[] = []
  for (const target of TARGETS) {
    for (const event of ['switchover', 'kill'] as const) rows.push(await run(target, event, cluster, fronts))
  }
  console.log(`\n${CLIENTS} clients, write transactions back to back, ${BEFORE_MS / 1000} s before and ${AFTER_MS / 1000} s after each event\n`)
  console.log('| target | event | failed transactions | longest stall | committed | Patroni / event time |')
  console.log('| --- | --- | ---: | ---: | ---: | ---: |')
  for (const r of rows) console.log(`| ${r.target} | ${r.event} | ${r.stats.failed} | ${(r.stats.longestStallMs / 1000).toFixed(2)} s | ${r.stats.ok} | ${(r.eventMs / 1000).toFixed(1)} s |`)
}

main().then(cleanup, async (err: Error) => {
  console.error(err.stack ?? err.message)
  await cleanup()
  process.exitCode = 1
})
