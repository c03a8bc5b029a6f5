// The console, the HTTP API and the switchover of a worker, acting for the whole pooler. Before a
// console query runs, every worker's snapshot is gathered (snapshot.ts) and the query reads the
// merged numbers; a command is run by every worker through the primary (broadcast), and answered
// once every one of them has: a failure, or a worker that did not acknowledge in time, makes the
// command fail with an error naming each such worker. Pool commands of a switchover go the same
// way (ClusterPoolControl), so a switchover started in one worker holds every worker's pools.
// Must not: act on this worker's pools directly; its own share comes through the broadcast too.

import { consoleRows, runConsoleQuery, type ConsoleView } from '../admin/console.ts'
import { errorReply } from '../admin/result-set.ts'
import { SqlState } from '../protocol/pg-error.ts'
import type { HttpView } from '../observe/http.ts'
import type { Ack, PoolCommand, PoolControl, PoolRow } from '../pool/control.ts'
import type { CommandReply, WorkerCommand } from './ipc.ts'
import { Merged, type WorkerSnapshot } from './snapshot.ts'

export type Broadcast = (cmd: WorkerCommand) => Promise<CommandReply[]>

export class ClusterConsole {
  constructor(
    private readonly index: number,
    private readonly broadcast: Broadcast,
    /** This worker's own view: config, version, hosts, the switchover runner, shutdown. */
    private readonly local: () => ConsoleView,
  ) {}

  /** Every worker's snapshot, merged; a worker that did not answer fails the read, named. */
  async gather(): Promise<Merged> {
    const replies = await this.all({ op: 'snapshot' })
    return new Merged(replies as WorkerSnapshot[])
  }

  /** One console query for the whole pooler. */
  async query(sql: string, isAdmin: boolean): Promise<Buffer> {
    let m: Merged
    try {
      m = await this.gather()
    } catch (err) {
      // Answered as any failed console command is, naming the workers that did not answer.
      return errorReply(SqlState.InternalError, `admin command failed: ${(err as Error).message}`)
    }
    return runConsoleQuery(sql, this.viewOf(m), { isAdmin })
  }

  /** The ConsoleView over merged numbers; its commands reach every worker. */
  viewOf(m: Merged): ConsoleView {
    const local = this.local()
    return {
      version: local.version,
      config: () => local.config(),
      stats: () => m.stats,
      pools: () => m.pools,
      clients: () => m.clients,
      servers: () => m.servers,
      pause: async (db) => { await this.all({ op: 'pause', db }) },
      resume: async (db) => { await this.all({ op: 'resume', db }) },
      isPaused: (db) => (db === null ? m.isPausedAll : m.pausedDbs.has(db)),
      reload: async () => {
        const values = await this.all({ op: 'reload' }) as Array<{ ok: boolean; errors: string[] }>
        return { ok: values.every((v) => v.ok), errors: [...new Set(values.flatMap((v) => v.errors))] }
      },
      shutdown: (mode) => local.shutdown(mode),
      get isShuttingDown() { return m.isShuttingDown },
      reconnect: async (db) => { await this.all({ op: 'reconnect', db }) },
      waitClose: async (db) => { await this.all({ op: 'wait_close', db }) },
      setDisabled: async (db, isDisabled) => { await this.all({ op: isDisabled ? 'disable' : 'enable', db }) },
      isDisabled: (db) => m.disabledDbs.has(db),
      kill: async (db) => { await this.all({ op: 'kill', db }) },
      // Ids are unique over the workers: the one that has the client kills it.
      killClient: async (id) => (await this.all({ op: 'kill_client', id })).some((v) => v === true),
      suspend: async () => { await this.all({ op: 'suspend', owner: this.index }) },
      get isSuspended() { return m.isSuspended },
      hasPausedDatabases: () => m.pausedDbs.size > 0,
      set: async (key, value) => {
        const values = await this.all({ op: 'set', key, value }) as Array<{ ok: true; warnings: string[] } | { ok: false; reason: string }>
        const refused = values.find((v) => !v.ok)
        return refused ?? values[0] ?? { ok: true, warnings: [] }
      },
      sockets: () => m.sockets,
      listenerSockets: () => m.listeners,
      memoryUsage: () => m.memory,
      hosts: () => local.hosts(),
      switchover: (db, to, timeoutMs) => local.switchover(db, to, timeoutMs),
      switchovers: () => m.switchovers,
      // Fleet membership is the node's, the same in every worker.
      fleet: () => local.fleet(),
      // Every worker reads the same [peers]; each has pools of its own, summed.
      peers: () => local.peers(),
      peerPools: () => m.peerPools,
      fleetCommand: (op, db) => local.fleetCommand(op, db),
      fleetSwitchover: (db, to, timeoutMs) => local.fleetSwitchover(db, to, timeoutMs),
    }
  }

  /** HTTP reads over merged numbers, gathered before each read (refresh); the rest is this worker's. */
  httpView(local: HttpView): HttpView {
    let m: Merged | null = null
    return {
      ...local,
      refresh: async () => { m = await this.gather() },
      pools: (now) => m?.pools ?? local.pools(now),
      process: () => m?.process ?? local.process(),
      stats: () => m?.stats ?? local.stats(),
      isPaused: () => m?.isPausedAll ?? local.isPaused(),
      isShuttingDown: () => m?.isShuttingDown ?? local.isShuttingDown(),
      clientCount: () => m?.clients.length ?? local.clientCount(),
      json: (what) => (m === null ? local.json(what) : consoleRows(what, this.viewOf(m))),
      dashboard: () => (m === null ? local.dashboard() : m.dashboard(local.dashboard())),
    }
  }

  /** PoolControl over every worker: a command is acknowledged once all have, counts are summed. */
  poolControl(): PoolControl {
    return {
      run: async (cmd: PoolCommand): Promise<Ack> => {
        const replies = await this.broadcast({ op: 'pool', cmd })
        let pools = 0
        let cancelled = 0
        const errors: string[] = []
        for (const r of replies) {
          const ack = r.ok ? (r.value as Ack) : { ok: false as const, error: r.error }
          if (!ack.ok) errors.push(`worker ${r.index}: ${ack.error}`)
          else {
            pools += ack.pools
            cancelled += ack.cancelled
          }
        }
        return errors.length > 0 ? { ok: false, error: errors.join('; ') } : { ok: true, pools, cancelled }
      },
      counts: async (database: string | null): Promise<PoolRow[]> => (await this.gather()).pools
        .filter((p) => database === null || p.database === database)
        .sort((a, b) => (a.database < b.database ? -1 : a.database > b.database ? 1 : a.user < b.user ? -1 : a.user > b.user ? 1 : 0)),
    }
  }

  /** Every worker's answer, in worker order; throws naming each worker that failed or did not answer. */
  private async all(cmd: WorkerCommand): Promise<unknown[]> {
    const replies = (await this.broadcast(cmd)).sort((a, b) => a.index - b.index)
    const failed = replies.filter((r) => !r.ok)
    if (failed.length > 0) {
      throw new Error(failed.map((r) => (r.ok ? '' : r.error.startsWith(`worker ${r.index} `) ? r.error : `worker ${r.index}: ${r.error}`)).join('; '))
    }
    return replies.map((r) => (r.ok ? r.value : null))
  }
}
