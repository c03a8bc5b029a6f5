// The floating-IP tier of examples/keepalived/, built in network namespaces for the drills
// (test/ha/keepalived.test.ts and examples/tier/drill.sh): PostgreSQL in the root namespace,
// listening on the bridge's address; N pooler nodes, each in its own namespace with its own address,
// running tidepool (or Debian's PgBouncer, for the side-by-side figures) on 6432 and keepalived with
// the example's file; the clients (drill-client.ts) in one more namespace, connecting to the
// floating address. A drill kills or stops the node that holds the address and measures what the
// clients saw against what the database holds.
// Everything a Tier starts dies with it: destroy() (and the 'exit' listeners of Daemon, makeDir,
// the embedded PostgreSQL and Lan, should the process end first).
// Must not: touch a namespace, process or dir it did not create (the runs of other tests and people
// go on beside it).

import { spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { waitFor } from './clients.ts'
import { Lan, type NetnsHost } from './netns.ts'
import type { DrillTarget, PgbenchDrillResult } from './drill-pgbench.ts'
import { PGBOUNCER_BIN } from './pgbouncer.ts'
import { startPostgres, type PgInstance } from './postgres.ts'
import { Daemon, destroy, makeDir, pgQuery, requireBinaries, SUPERUSER } from './replication.ts'
import { writeConfig } from './tidepool.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const EXAMPLE = join(ROOT, 'examples', 'keepalived')
export const KEEPALIVED = '/usr/sbin/keepalived'
const PG_ISREADY = '/usr/bin/pg_isready'
const PGBENCH = '/usr/bin/pgbench'
/** Inside every node's namespace: the pooler's port and tidepool's HTTP port (the example's). */
const POOLER_PORT = 6432
const HTTP_PORT = 8080
const VIP_HOST = 50

export type Pooler = 'tidepool' | 'pgbouncer'

export interface DrillClientOptions extends DrillTarget {
  clients: number
  thinkMs: number
  /** pgbench runs beside the node-postgres clients (drill-pgbench.ts), restarted as each ends */
  pgbench?: { clients: number; runSeconds: number }
}

export interface DrillAttemptFailure {
  client: number
  /** -1 for a failed connect */
  seq: number
  /** what the client had sent when it failed: connect, begin, insert, commit */
  phase: string
  startedMs: number
  endedMs: number
  error: string
}

export interface DrillClientResult {
  /** acknowledged commits: client, seq, client, seq, ... */
  acked: number[]
  /** every connect: start (ms since the epoch), duration (ms), 1 if it succeeded, ... */
  connects: number[]
  failures: DrillAttemptFailure[]
  committed: number
  /** attempts that failed once connected */
  failedTx: number
  refusedConnects: number
  longestStallMs: number
  pgbench?: PgbenchDrillResult
}

export interface TierNode {
  name: string
  host: NetnsHost
  pooler: Daemon
  keepalived: Daemon
  dir: string
}

export interface TierOptions {
  pooler: Pooler
  nodes: number
  /** extra [tidepool] settings for every node */
  tidepool?: Record<string, string | number>
  /** progress lines (the script prints them; a test may keep them for its diagnostics) */
  say?: (line: string) => void
}

/** keepalived.conf of examples/keepalived/ for one node; throws if a line it rewrites is gone. */
export function keepalivedConfig(o: { name: string; priority: number; self: string; peers: string[]; vip: string; script: string }): string {
  let text = readFileSync(join(EXAMPLE, 'keepalived.conf'), 'utf8')
  const swap = (re: RegExp, to: string): void => {
    let n = 0
    text = text.replace(re, () => { n++; return to })
    if (n !== 1) throw new Error(`examples/keepalived/keepalived.conf: ${re} matched ${n} times, expected 1`)
  }
  swap(/router_id tidepool-node1$/m, `router_id tidepool-${o.name}`)
  swap(/script "\/etc\/keepalived\/check-tidepool\.sh 127\.0\.0\.1 8080"$/m, `script "${o.script}"`)
  swap(/priority 150$/m, `priority ${o.priority}`)
  swap(/unicast_src_ip 10\.0\.0\.11$/m, `unicast_src_ip ${o.self}`)
  swap(/unicast_peer \{\n(\s*10\.0\.0\.\d+\n)+(\s*)\}/, `unicast_peer {\n${o.peers.map((p) => `        ${p}\n`).join('')}    }`)
  swap(/10\.0\.0\.50\/24 dev eth0$/m, `${o.vip}/24 dev eth0`)
  return text
}

export class Tier {
  readonly lan: Lan
  readonly vip: string
  nodes: TierNode[] = []
  clientsHost!: NetnsHost
  pg!: PgInstance
  private readonly daemons: Daemon[] = []
  private readonly dirs: string[] = []
  private scriptDir = ''
  private readonly say: (line: string) => void

  private constructor(readonly o: TierOptions) {
    this.lan = new Lan()
    this.vip = this.lan.address(VIP_HOST)
    this.say = o.say ?? (() => {})
  }

  /** PostgreSQL, the nodes and keepalived; resolves once one node holds the floating address. */
  static async start(o: TierOptions): Promise<Tier> {
    requireBinaries([KEEPALIVED, ...(o.pooler === 'pgbouncer' ? [PGBOUNCER_BIN, PG_ISREADY] : [])])
    const tier = new Tier(o)
    try {
      await tier.build()
    } catch (err) {
      await tier.destroy()
      throw err
    }
    return tier
  }

  private async build(): Promise<void> {
    const { lan } = this
    this.pg = await startPostgres({
      maxConnections: 100,
      // An acknowledged commit is on disk (the harness default is off, for speed).
      settings: { listen_addresses: `127.0.0.1,${lan.gateway}`, synchronous_commit: 'on' },
      hba: `host all all ${lan.prefix}.0/24 scram-sha-256`,
    })
    await pgQuery(this.pg.port, DRILL_TABLE_SQL, [], 'app')
    this.say(`postgresql on ${lan.gateway}:${this.pg.port}, floating address ${this.vip}`)

    // keepalived runs the check as root and refuses a script in a directory others may write to.
    this.scriptDir = mkdtempSync(join(tmpdir(), 'tidepool-drill-check-'))
    chmodSync(this.scriptDir, 0o755)
    const script = join(this.scriptDir, 'check.sh')
    if (this.o.pooler === 'tidepool') {
      copyFileSync(join(EXAMPLE, 'check-tidepool.sh'), script)
    } else {
      // PgBouncer has no readiness endpoint: the best a check can ask is whether it answers.
      writeFileSync(script, `#!/bin/sh\nexec ${PG_ISREADY} -q -h 127.0.0.1 -p ${POOLER_PORT} -t 1\n`)
    }
    chmodSync(script, 0o755)

    const addrs = Array.from({ length: this.o.nodes }, (_, i) => lan.address(11 + i))
    for (let i = 0; i < this.o.nodes; i++) {
      const name = `node${i + 1}`
      const host = lan.addHost(name, 11 + i)
      const dir = makeDir()
      this.dirs.push(dir)
      const node: TierNode = {
        name, host, dir,
        pooler: new Daemon({ asPostgres: false, deathSignal: 'TERM', env: { ...process.env } }),
        keepalived: new Daemon({ asPostgres: false, deathSignal: 'TERM' }),
      }
      this.daemons.push(node.pooler, node.keepalived)
      this.writePoolerConfig(node)
      writeFileSync(join(dir, 'keepalived.conf'), keepalivedConfig({
        name, priority: 150 - 10 * i, self: host.address, peers: addrs.filter((a) => a !== host.address), vip: this.vip,
        script: this.o.pooler === 'tidepool' ? `${script} 127.0.0.1 ${HTTP_PORT}` : script,
      }))
      this.nodes.push(node)
    }
    this.clientsHost = lan.addHost('clients', 100)
    // A neighbour entry updated a moment ago ignores ARP for up to locktime (1 s): the gratuitous
    // ARP of the node that takes the address must count at once. The clients' own namespace.
    this.clientsHost.run('sysctl', ['-q', '-w', 'net.ipv4.neigh.eth0.locktime=0'])

    await Promise.all(this.nodes.map((n) => this.startPooler(n)))
    for (const n of this.nodes) this.startKeepalived(n)
    const holder = await this.waitHolder(30_000)
    this.say(`${this.nodes.length} ${this.o.pooler} nodes up; ${holder.name} holds ${this.vip}`)
  }

  private writePoolerConfig(n: TierNode): void {
    const db = `host=${this.lan.gateway} port=${this.pg.port} dbname=app user=${SUPERUSER.user} password=${SUPERUSER.password}`
    if (this.o.pooler === 'tidepool') {
      writeConfig(n.dir, null, {
        databases: { app: db },
        settings: { listen_addr: '0.0.0.0', listen_port: POOLER_PORT, pool_mode: 'transaction', default_pool_size: 5, max_client_conn: 200 },
        tidepool: { http_listen_addr: '127.0.0.1', http_listen_port: HTTP_PORT, ...this.o.tidepool },
      })
      return
    }
    writeFileSync(join(n.dir, 'userlist.txt'), `"${SUPERUSER.user}" "${SUPERUSER.password}"\n`)
    writeFileSync(join(n.dir, 'pgbouncer.ini'), [
      '[databases]', `app = ${db}`, '',
      '[pgbouncer]', 'listen_addr = *', `listen_port = ${POOLER_PORT}`, "unix_socket_dir = ''",
      'auth_type = trust', `auth_file = ${join(n.dir, 'userlist.txt')}`, 'pool_mode = transaction',
      'default_pool_size = 5', 'max_client_conn = 200', '',
    ].join('\n'))
    spawnSync('chown', ['-R', 'postgres:postgres', n.dir])
  }

  /** Starts (or restarts) a node's pooler and waits until it answers inside its namespace. */
  async startPooler(n: TierNode): Promise<void> {
    const mark = n.pooler.mark()
    if (this.o.pooler === 'tidepool') {
      const [cmd, args] = n.host.command(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'main.ts'), join(n.dir, 'tidepool.ini')])
      n.pooler.spawn(cmd, args)
      await n.pooler.waitLog(mark, /\[runtime\.started\]/, 60_000, `tidepool on ${n.name} to start`)
    } else {
      const [cmd, args] = n.host.command(PGBOUNCER_BIN, ['-u', 'postgres', join(n.dir, 'pgbouncer.ini')])
      n.pooler.spawn(cmd, args)
      await n.pooler.waitLog(mark, /process up/, 30_000, `pgbouncer on ${n.name} to start`)
    }
  }

  private startKeepalived(n: TierNode): void {
    const [cmd, args] = n.host.command(KEEPALIVED, [
      '--dont-fork', '--log-console', '--log-detail', '--vrrp', '-f', join(n.dir, 'keepalived.conf'),
      '-p', join(n.dir, 'keepalived.pid'), '-r', join(n.dir, 'vrrp.pid'), '-c', join(n.dir, 'checkers.pid'),
    ])
    n.keepalived.spawn(cmd, args)
  }

  /** The node whose eth0 carries the floating address now, if exactly one does. */
  holder(): TierNode | null {
    const holding = this.nodes.filter((n) => n.host.addresses().includes(this.vip))
    return holding.length === 1 ? holding[0]! : null
  }

  /** Waits until one node other than `not` holds the address. */
  async waitHolder(timeoutMs: number, not?: TierNode): Promise<TierNode> {
    let found: TierNode | null = null
    await waitFor(() => {
      found = this.holder()
      return found !== null && found !== not
    }, { timeoutMs, intervalMs: 25, what: `a node${not ? ` other than ${not.name}` : ''} to hold ${this.vip}` })
    return found!
  }

  /** Starts the drill's clients in their namespace, writing through the floating address. */
  startClients(clients: number, thinkMs: number, pgbench?: DrillClientOptions['pgbench']): DrillClients {
    if (pgbench !== undefined) requireBinaries([PGBENCH])
    const opts: DrillClientOptions = {
      host: this.vip, port: POOLER_PORT, user: SUPERUSER.user, password: SUPERUSER.password, database: 'app', clients, thinkMs, pgbench,
    }
    const d = new Daemon({ asPostgres: false, deathSignal: 'TERM', env: { ...process.env } })
    this.daemons.push(d)
    const [cmd, args] = this.clientsHost.command(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'drill-client.ts'), JSON.stringify(opts)])
    d.spawn(cmd, args)
    return new DrillClients(d)
  }

  /** Rows in the table against the clients' log. */
  async check(r: DrillClientResult): Promise<DrillCount> {
    const rows = await pgQuery(this.pg.port, 'SELECT client, seq, count(*)::int AS n FROM drill_tx GROUP BY client, seq', [], 'app')
    const inDb = new Map<string, number>()
    for (const row of rows) inDb.set(`${row.client}/${row.seq}`, row.n as number)
    const acked = new Set<string>()
    for (const list of [r.acked, r.pgbench?.acked ?? []]) {
      for (let i = 0; i < list.length; i += 2) acked.add(`${list[i]}/${list[i + 1]}`)
    }
    let lost = 0
    for (const k of acked) if (!inDb.has(k)) lost++
    let duplicated = 0
    let unacked = 0
    for (const [k, n] of inDb) {
      if (n > 1) duplicated++
      if (!acked.has(k)) unacked++
    }
    return { acked: acked.size, rows: inDb.size, lost, duplicated, committedUnacknowledged: unacked }
  }

  logs(): string {
    return this.nodes.map((n) => `--- ${n.name} ${this.o.pooler}:\n${tail(n.pooler.log())}\n--- ${n.name} keepalived:\n${tail(n.keepalived.log())}`).join('\n')
  }

  async destroy(): Promise<void> {
    await destroy(this.daemons, this.dirs)
    if (this.pg !== undefined) await this.pg.stop().catch(() => {})
    this.lan.destroy()
    if (this.scriptDir !== '') rmSync(this.scriptDir, { recursive: true, force: true })
  }
}

function tail(log: string, n = 40): string {
  return log.split('\n').slice(-n).join('\n')
}

export interface DrillCount {
  acked: number
  rows: number
  lost: number
  duplicated: number
  /** rows whose COMMIT the client saw fail (the pooler died after the commit, before the answer) */
  committedUnacknowledged: number
}

export const DRILL_TABLE_SQL = 'CREATE TABLE IF NOT EXISTS drill_tx (client int NOT NULL, seq int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())'

/** The client process of a drill: progress while it runs, its log at the end. */
export class DrillClients {
  private result: Promise<DrillClientResult> | null = null

  constructor(private readonly d: Daemon) {}

  committed(): number {
    const lines = this.d.log().split('\n')
    for (let i = lines.length - 1; i >= 0; i--) {
      const m = /^progress (\d+) /.exec(lines[i]!)
      if (m !== null) return Number.parseInt(m[1]!, 10)
    }
    return 0
  }

  /** Resolves once `n` more transactions have committed than when called. */
  async progress(n: number, timeoutMs: number): Promise<void> {
    const want = this.committed() + n
    await waitFor(() => {
      if (!this.d.running()) throw new Error(`drill clients exited:\n${tail(this.d.log())}`)
      return this.committed() >= want
    }, { timeoutMs, intervalMs: 50, what: `${n} more commits through the floating address` })
  }

  /** SIGINT: the clients stop, print their log and exit. Once; later calls get the same result. */
  stop(): Promise<DrillClientResult> {
    this.result ??= (async () => {
      const mark = this.d.mark()
      await this.d.stop('SIGINT', 30_000)
      const line = this.d.since(mark).split('\n').find((l) => l.startsWith('result '))
      if (line === undefined) throw new Error(`drill clients gave no result:\n${tail(this.d.log())}`)
      return JSON.parse(line.slice('result '.length)) as DrillClientResult
    })()
    return this.result
  }
}

export interface DrillFigures {
  /** when the kill (or SIGTERM) was sent, ms since the epoch */
  t0Ms: number
  /** from the kill (or SIGTERM) to the first new connection that succeeded through the address */
  recoveryMs: number
  /** from the kill (or SIGTERM) to the address showing on another node */
  movedMs: number
  from: string
  to: string
  count: DrillCount
  failedTx: number
  refusedConnects: number
  committed: number
  longestStallMs: number
  /** node-postgres clients' failures and pgbench's aborted clients */
  failures: DrillAttemptFailure[]
  /** with pgbench: its runs, the runs that could not connect, its commits */
  pgbench: { runs: number; refusedRuns: number; committed: number } | null
}

function recoveryFrom(r: DrillClientResult, t0: number): number {
  let first = Number.POSITIVE_INFINITY
  for (let i = 0; i < r.connects.length; i += 3) {
    const [start, ms, ok] = [r.connects[i]!, r.connects[i + 1]!, r.connects[i + 2]!]
    if (ok === 1 && start >= t0) first = Math.min(first, start + ms)
  }
  return first - t0
}

/**
 * Under load from `clients` clients: `how` ('kill': SIGKILL, 'stop': SIGTERM) to the pooler of the
 * node holding the address; waits until the address moved and the clients committed again.
 */
export async function runDrill(tier: Tier, how: 'kill' | 'stop', o: { clients: number; thinkMs: number; pgbench?: DrillClientOptions['pgbench'] }): Promise<DrillFigures> {
  const from = tier.holder() ?? await tier.waitHolder(10_000)
  const run = tier.startClients(o.clients, o.thinkMs, o.pgbench)
  try {
    await run.progress(20 * o.clients, 60_000)
    const t0 = Date.now()
    let stopped: Promise<void> = Promise.resolve()
    if (how === 'kill') from.pooler.kill()
    else stopped = from.pooler.stop('SIGTERM', 20_000)
    const to = await tier.waitHolder(15_000, from)
    const movedMs = Date.now() - t0
    await run.progress(20 * o.clients, 30_000)
    await stopped
    // What a client might still be waiting on settles.
    await sleep(200)
    const r = await run.stop()
    const count = await tier.check(r)
    const pb = r.pgbench
    // An aborted pgbench client is a transaction that failed once connected, as a node-postgres
    // client's failed BEGIN, INSERT or COMMIT is.
    const aborted: DrillAttemptFailure[] = (pb?.aborted ?? []).map((a) => ({
      client: a.client, seq: a.seq, phase: a.phase, startedMs: a.atMs, endedMs: a.atMs, error: `pgbench: ${a.error}`,
    }))
    return {
      t0Ms: t0, recoveryMs: recoveryFrom(r, t0), movedMs, from: from.name, to: to.name, count,
      failedTx: r.failedTx + aborted.length, refusedConnects: r.refusedConnects + (pb?.refusedRuns ?? 0),
      committed: r.committed + (pb === undefined ? 0 : pb.acked.length / 2), longestStallMs: r.longestStallMs,
      failures: [...r.failures, ...aborted],
      pgbench: pb === undefined ? null : { runs: pb.runs, refusedRuns: pb.refusedRuns, committed: pb.acked.length / 2 },
    }
  } finally {
    await run.stop().catch(() => {})
  }
}

/** examples/tier/drill.sh's last line. */
export function summaryLine(f: DrillFigures): string {
  return `recovery_s=${(f.recoveryMs / 1000).toFixed(2)} acked=${f.count.acked} lost=${f.count.lost} duplicated=${f.count.duplicated} failed=${f.failedTx}`
}

/** One line of everything else a drill measured, for the diagnostics and the script. */
export function describeDrill(f: DrillFigures): string {
  return `${f.from} → ${f.to}: address moved after ${f.movedMs} ms, first new connection after ${f.recoveryMs} ms; ` +
    `${f.committed} committed, ${f.failedTx} failed transactions, ${f.refusedConnects} refused connects, ` +
    `longest stall ${f.longestStallMs} ms; ${f.count.rows} rows, ${f.count.lost} lost, ${f.count.duplicated} duplicated, ` +
    `${f.count.committedUnacknowledged} committed unacknowledged` +
    (f.pgbench === null ? '' : `; pgbench: ${f.pgbench.runs} runs (${f.pgbench.refusedRuns} could not connect), ${f.pgbench.committed} committed`)
}

