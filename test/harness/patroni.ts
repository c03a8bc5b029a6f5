// A real Patroni cluster for test/ha, from Debian's packages: one etcd (etcd-server 3.4) and 2 or 3
// Patroni 3.0 members running Debian's PostgreSQL 15, everything on free loopback ports with dirs
// and cleanup from replication.ts (see there: t.after, the exit hook, --pdeathsig, the run-tests
// sweep). Patroni gets SIGTERM should the test process die, and then stops its own postgres.
//
// Patroni starts postgres detached (its own session, parent init), so a member's postmaster is found
// through postmaster.pid: kill() and the cleanup take it down with Patroni.
// Timings are small (loop_wait 1 s, ttl 10 s): a killed leader's key expires within 10 s and a
// replica promotes at its next loop, so a failover takes ~10 s rather than Patroni's default ~30 s.

import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { waitFor } from './clients.ts'
import { freePort } from './ports.ts'
import { TEST_DATABASE, type PgInstance } from './postgres.ts'
import { type Etcd, startEtcd } from './etcd.ts'
import { Daemon, HOST, PG_BIN, REPLICATOR, SUPERUSER, destroy, diagnostics, makeDir, pgQuery, requireBinaries, waitStreaming } from './replication.ts'

async function http(url: string, init: { method?: string; body?: unknown; timeoutMs?: number } = {}): Promise<{ status: number; text: string }> {
  try {
    const res = await fetch(url, {
      method: init.method ?? 'GET',
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      headers: init.body === undefined ? undefined : { 'content-type': 'application/json' },
      signal: AbortSignal.timeout(init.timeoutMs ?? 3_000),
    })
    return { status: res.status, text: await res.text() }
  } catch (err) {
    // Refused, reset or timed out: no answer, which every caller treats as "not that role".
    return { status: 0, text: (err as Error).message }
  }
}

// --- Patroni ------------------------------------------------------------------------------------

export interface PatroniNode {
  readonly name: string
  readonly host: string
  readonly pgPort: number
  readonly restPort: number
  readonly restUrl: string
  readonly dataDir: string
  /** GET /primary answers 200: the member holds the leader key and runs as primary */
  isLeader(): Promise<boolean>
  /** GET /replica answers 200: a running replica */
  isReplica(): Promise<boolean>
  /** as the superuser on this member's PostgreSQL */
  query(sql: string, params?: unknown[]): Promise<any[]>
  isRunning(): boolean
  /** kill -9 of Patroni and of its postgres (postmaster and children): a crashed machine */
  kill(): void
  /** SIGTERM: Patroni stops postgres and gives up the leader key, as `systemctl stop patroni` */
  stop(): Promise<void>
  /** Patroni again on the same config; resolves when its postgres runs (GET /health 200) */
  start(): Promise<void>
  /** Patroni's output, with its postgres's */
  log(): string
}

export interface PatroniCluster {
  scope: string
  etcd: Etcd
  nodes: PatroniNode[]
  /** the superuser on every member */
  user: string
  password: string
  /** Polls until exactly one member answers 200 on /primary and its postgres takes writes. */
  leader(timeoutMs?: number): Promise<PatroniNode>
  /** POST /switchover to the leader, to `to` or any running replica; resolves with the new leader
   *  once it answers 200 on /primary. */
  switchover(to?: string): Promise<PatroniNode>
}

// Patroni's defaults are ttl 30, loop_wait 10, retry_timeout 10. Patroni's docs ask for
// loop_wait + 2 * retry_timeout <= ttl; these keep that and make a failover take ~10 s.
const DCS_TIMINGS = { ttl: 10, loop_wait: 1, retry_timeout: 4 }

/** Patroni's postgresql.callbacks (on_role_change, on_start...) for one member: script paths. */
export type CallbacksFor = (member: { name: string; dir: string; pgPort: number }) => Record<string, string>

function patroniConfig(o: { scope: string; name: string; dir: string; pgPort: number; restPort: number; etcd: Etcd; callbacks?: Record<string, string> }): unknown {
  return {
    scope: o.scope,
    name: o.name,
    log: { level: 'INFO' },
    restapi: { listen: `${HOST}:${o.restPort}`, connect_address: `${HOST}:${o.restPort}` },
    // etcd3 (the v3 API through etcd's JSON gateway) rather than `etcd:` (v2): etcd 3.4 serves v2
    // only with --enable-v2, 3.6 not at all, and v3 leases expire a dead leader's keys together.
    etcd3: { hosts: [o.etcd.endpoint], protocol: 'http' },
    bootstrap: {
      dcs: {
        ...DCS_TIMINGS,
        maximum_lag_on_failover: 1048576,
        postgresql: {
          use_pg_rewind: true,
          use_slots: true,
          parameters: {
            max_connections: 100, wal_level: 'replica', hot_standby: 'on', wal_log_hints: 'on',
            max_wal_senders: 10, max_replication_slots: 10, wal_keep_size: '64MB',
          },
        },
      },
      initdb: [{ encoding: 'UTF8' }, { locale: 'C' }, { 'auth-host': 'scram-sha-256' }, { 'auth-local': 'scram-sha-256' }],
    },
    postgresql: {
      listen: `${HOST}:${o.pgPort}`,
      connect_address: `${HOST}:${o.pgPort}`,
      data_dir: join(o.dir, 'data'),
      bin_dir: PG_BIN,
      // Patroni's default, ~postgres/.pgpass, would be one file for every member of every test.
      pgpass: join(o.dir, 'pgpass'),
      authentication: {
        superuser: { username: SUPERUSER.user, password: SUPERUSER.password },
        replication: { username: REPLICATOR.user, password: REPLICATOR.password },
      },
      parameters: {
        unix_socket_directories: '', shared_buffers: '16MB', fsync: 'off', wal_retrieve_retry_interval: '500ms',
        log_line_prefix: '%m [%p] %q%u@%d ',
      },
      pg_hba: [
        `host all all ${HOST}/32 scram-sha-256`,
        `host replication ${REPLICATOR.user} ${HOST}/32 scram-sha-256`,
      ],
      // A killed leader that comes back may have diverged: rewind, or else clone again.
      remove_data_directory_on_rewind_failure: true,
      remove_data_directory_on_diverged_timelines: true,
      ...(o.callbacks === undefined ? {} : { callbacks: o.callbacks }),
    },
  }
}

class Member implements PatroniNode {
  readonly host = HOST
  readonly restUrl: string
  readonly dataDir: string
  readonly daemon: Daemon
  private readonly configPath: string

  constructor(readonly name: string, readonly dir: string, readonly pgPort: number, readonly restPort: number, config: unknown) {
    this.restUrl = `http://${HOST}:${restPort}`
    this.dataDir = join(dir, 'data')
    this.configPath = join(dir, 'patroni.yml')
    // JSON is YAML (flow style), so no YAML writer is needed.
    writeFileSync(this.configPath, JSON.stringify(config, null, 2) + '\n')
    this.daemon = new Daemon({
      asPostgres: true,
      deathSignal: 'TERM',
      postmasterOf: this.dataDir,
      env: { PATH: process.env.PATH ?? '', LC_ALL: 'C', HOME: dir },
    })
  }

  async isLeader(): Promise<boolean> { return (await http(`${this.restUrl}/primary`)).status === 200 }
  async isReplica(): Promise<boolean> { return (await http(`${this.restUrl}/replica`)).status === 200 }
  query(sql: string, params?: unknown[]): Promise<any[]> { return pgQuery(this.pgPort, sql, params) }
  isRunning(): boolean { return this.daemon.running() }
  kill(): void { this.daemon.kill() }
  log(): string { return this.daemon.log() }
  // Patroni's graceful shutdown waits for postgres's fast shutdown, bounded by its own timeouts.
  stop(): Promise<void> { return this.daemon.stop('SIGTERM', 30_000) }

  spawn(): void {
    this.daemon.spawn('patroni', [this.configPath])
  }

  async start(): Promise<void> {
    if (this.isRunning()) return
    await this.daemon.whenGone()
    this.spawn()
    await waitFor(async () => !this.isRunning() || (await http(`${this.restUrl}/health`)).status === 200,
      { timeoutMs: 60_000, intervalMs: 200, what: `Patroni member ${this.name} to run postgres` })
    if (!this.isRunning()) throw new Error(`Patroni member ${this.name} exited:\n${this.log()}`)
  }
}

/** etcd and `nodes` Patroni members node0..nodeN-1, bootstrapped with initdb; returns when one leads,
 *  every other one streams from it, and the database `app` exists. Killed and removed in t.after(). */
export async function startPatroniCluster(t: TestContext, opts: { nodes: 2 | 3; callbacks?: CallbacksFor }): Promise<PatroniCluster> {
  requireBinaries(['/usr/bin/patroni', `${PG_BIN}/postgres`])
  const etcd = await startEtcd(t)
  const scope = `tp-${randomBytes(4).toString('hex')}`
  const nodes: Member[] = []
  t.after(() => destroy(nodes.map((n) => n.daemon), nodes.map((n) => n.dir)))
  for (let i = 0; i < opts.nodes; i++) {
    const dir = makeDir()
    const name = `node${i}`
    const [pgPort, restPort] = [await freePort(), await freePort()]
    const callbacks = opts.callbacks?.({ name, dir, pgPort })
    nodes.push(new Member(name, dir, pgPort, restPort, patroniConfig({ scope, name, dir, pgPort, restPort, etcd, callbacks })))
    diagnostics(t, `Patroni ${name} (pg ${pgPort}, rest ${restPort})`, () => nodes[i]!.log())
  }
  for (const n of nodes) n.spawn()

  const leader = async (timeoutMs = 30_000): Promise<PatroniNode> => {
    let found: PatroniNode[] = []
    await waitFor(async () => {
      const flags = await Promise.all(nodes.map((n) => n.isLeader()))
      found = nodes.filter((_, i) => flags[i])
      // Patroni answers 200 once it has asked postgres to promote, a few ms before writes work.
      return found.length === 1 && (await found[0]!.query('SELECT pg_is_in_recovery() AS r'))[0].r === false
    }, { timeoutMs, intervalMs: 100, what: 'exactly one Patroni leader, out of recovery' })
      .catch((err: Error) => { throw new Error(`${err.message}; leading: ${found.map((n) => n.name).join(', ') || 'none'}`) })
    return found[0]!
  }

  const cluster: PatroniCluster = {
    scope, etcd, nodes, user: SUPERUSER.user, password: SUPERUSER.password, leader,
    async switchover(to) {
      const old = await leader()
      let last = { status: 0, text: '' }
      // Patroni answers 412/503 while no replica qualifies yet (one just rejoined, say): retry.
      await waitFor(async () => {
        last = await http(`${old.restUrl}/switchover`, { method: 'POST', body: { leader: old.name, candidate: to }, timeoutMs: 30_000 })
        return last.status === 200
      }, { timeoutMs: 45_000, intervalMs: 500, what: `Patroni to switch over from ${old.name} to ${to ?? 'a replica'}` })
        .catch((err: Error) => { throw new Error(`${err.message}; last answer ${last.status}: ${last.text}`) })
      const next = await leader()
      if (next === old || (to !== undefined && next.name !== to)) throw new Error(`switchover to ${to ?? 'a replica'} left ${next.name} leading`)
      return next
    },
  }

  const first = await leader(60_000)
  const others = nodes.filter((n) => n !== first)
  await waitFor(async () => (await Promise.all(others.map((n) => n.isReplica()))).every(Boolean),
    { timeoutMs: 60_000, intervalMs: 200, what: `Patroni replicas ${others.map((n) => n.name).join(', ')} to run` })
  await waitStreaming(first.pgPort, others.map((n) => n.name))
  await first.query(`CREATE DATABASE ${TEST_DATABASE}`)
  return cluster
}

// --- tidepool in front of the lab ---------------------------------------------------------------

/** Checks fast enough to follow a switchover within a test; bans short. */
export const FRONT_TIDEPOOL = { janitor_interval_ms: 100, health_check_interval_ms: 200, health_check_timeout_ms: 2000, health_check_rise: 1, health_check_fall: 2, host_ban_ms: 2000 }
// A failover takes Patroni ~10 s (ttl 10): waiting queries must outlast it.
export const FRONT_SETTINGS = { default_pool_size: 4, query_wait_timeout: 60, client_login_timeout: 60, server_connect_timeout: 3, admin_users: SUPERUSER.user }

/** The [databases] line for `app` on every member, with Patroni's REST API as a role source. */
export function frontDatabase(cluster: PatroniCluster): string {
  const ns = cluster.nodes
  return `host=${ns.map((n) => n.host).join(',')} port=${ns.map((n) => n.pgPort).join(',')} dbname=app user=${SUPERUSER.user} password=${SUPERUSER.password} ` +
    `target_session_attrs=read-write patroni_urls=${ns.map((n) => n.restUrl).join(',')}`
}

/** startTidepool wants a PgInstance for its defaults and failure diagnostics; a member serves. */
export function asInstance(n: PatroniNode): PgInstance {
  return {
    host: n.host, port: n.pgPort, user: SUPERUSER.user, password: SUPERUSER.password, dataDir: n.dataDir,
    url: () => `postgresql://${SUPERUSER.user}@${n.host}:${n.pgPort}/postgres`,
    query: (sql, params) => n.query(sql, params), logs: () => n.log(), stop: async () => {},
  } as PgInstance
}
