// The primary of a pooler with workers: the process the user (or systemd) started. It serves no
// client itself. It starts `workers` worker processes through node:cluster, each a full Runtime on
// the same addresses; replaces any that dies (its clients are lost, nobody else's); forwards
// every signal it gets to every worker, which acts on it as a single process would (a warm spare,
// loaded and waiting, takes a dead worker's place at once); passes
// cancel requests to the worker whose key they carry; keeps the slot ledger (ledger.ts) from which
// workers lease server connections; runs a console command in every worker and gathers their
// answers (a worker that does not acknowledge within BROADCAST_ACK_MS is named in the answer);
// and exits once every worker has stopped.
// Invariants: one live worker per index at most; no worker is replaced once a stop began; the
// slots of a worker that died stay counted until what its server connections ran was cancelled.
// Must not: accept clients or open server connections; read the config beyond what it needs to
// start (the workers load and reload it themselves).

import cluster, { type Worker } from 'node:cluster'
import fs from 'node:fs'
import type net from 'node:net'
import type { Config } from '../config/types.ts'
import type { ShutdownMode } from '../admin/console.ts'
import { socketPath } from '../net/dial.ts'
import { removeStaleSocket } from '../net/listener.ts'
import type { Logger } from '../observe/log.ts'
import { sendCancel } from '../proxy/cancel.ts'
import { HANDLED_SIGNALS, STOP_SIGNALS, type HandledSignal } from '../runtime/signals.ts'
import { ENV_COUNT, ENV_INDEX, ENV_INHERIT, ENV_LISTEN, ENV_PORT, ENV_SPARE, isMessage, type CommandReply, type ToPrimary, type ToWorker, type WorkerCommand } from './ipc.ts'
import { chooseListenMode, type ListenMode } from './listen-mode.ts'
import { Ledger, RECLAIM_RETRY_MS, type LedgerAction } from './ledger.ts'
import { ClientLedger, type ClientAction } from './client-ledger.ts'
import type { WorkerSnapshot } from './snapshot.ts'
import { ENV_TAKEOVER, TakeoverControl, isTakeoverChild, receiveHandles, type HandedListener, type HeldSlots } from '../runtime/takeover.ts'
import { keyOwner } from '../proxy/cancel.ts'
import { OLD_HOLDER, OldPrimary, Successor, type PrimarySide, type SuccessorSide, type WorkerPort } from './takeover.ts'

/** A replacement that dies before it is ready waits this long, doubled per failure, up to the cap. */
const RESPAWN_BACKOFF_MS = 1000
const RESPAWN_BACKOFF_MAX_MS = 30_000
/**
 * A dead worker's server sessions may still run a query (PostgreSQL notices the closed socket only
 * when it next writes): they are cancelled, and its slots stay counted this long meanwhile.
 */
const DEAD_WORKER_GRACE_MS = 1000

/**
 * A worker must acknowledge a console command this soon. Its answer may take longer (PAUSE waits
 * for transactions up to pause_timeout_ms, WAIT_CLOSE for servers to close), but a worker that
 * does not even acknowledge is stuck, and the console says so rather than wait for it.
 */
export const BROADCAST_ACK_MS = 5000

type CancelTarget = { host: string; port: number; pid: number; secret: number }

/** One worker's command of a broadcast, until it answers. */
interface Pending {
  readonly slotIndex: number
  readonly pid: number
  readonly timer: NodeJS.Timeout
  readonly done: (r: CommandReply) => void
}

interface Slot {
  index: number
  worker: Worker | null
  isReady: boolean
  /** Replacements in a row that died before they were ready. */
  failures: number
  retry: NodeJS.Timeout | null
}

export class Primary {
  private readonly slots: Slot[]
  private readonly mode: ListenMode
  /** The TCP port every worker listens on; known once the first worker is ready when listen_port is 0. */
  private port: number | null
  private isStopping = false
  /** What the primary exits with once every worker has stopped: 0, or why the start failed. */
  private exitCode = 0
  private isStarted = false
  private startFailure: ((code: number) => void) | null = null
  private onAllReady: (() => void) | null = null
  /** Slots are held by a worker process (cluster's worker.id), not by an index a replacement reuses. */
  private readonly ledger = new Ledger()
  private readonly clients = new ClientLedger()
  private readonly byId = new Map<number, Slot>()
  /** Each live worker's logged-in server connections, by connection id. */
  private readonly servers = new Map<number, Map<string, CancelTarget>>()
  private readonly settleTimer: NodeJS.Timeout
  /** Commands sent to workers and not yet answered, by id, per worker process. */
  private readonly pending = new Map<number, Map<number, Pending>>()
  private nextCommandId = 1
  /** The worker whose console SUSPENDed the pooler: if it dies, nobody else would resume. */
  private suspendOwner: number | null = null
  /** The warm spare (forkSpare), and whether it has loaded and waits. */
  private spare: Worker | null = null
  private isSpareReady = false
  /** Online restart (workers/takeover.ts): this pooler's side when a new one takes over from it. */
  private readonly old: OldPrimary
  /** Set once a new pooler drains this one: its workers go, its files stay. */
  private isHandedOver = false
  /** This pooler took over from another: the listening sockets every worker serves, and its side of it. */
  private inherited: HandedListener[] | null = null
  private successor: Successor | null = null
  /** The old pooler's server slots last reported, by pool key. */
  private oldSlots = new Set<string>()

  constructor(private readonly config: Config, private readonly log: Logger, count: number) {
    this.slots = Array.from({ length: count }, (_, index) => ({ index, worker: null, isReady: false, failures: 0, retry: null }))
    this.mode = chooseListenMode(process.env[ENV_LISTEN])
    this.port = config.settings.listen_port === 0 ? null : config.settings.listen_port
    // A holder's idle servers do not announce themselves: while a worker waits, ask again now and then.
    this.settleTimer = setInterval(() => {
      const now = Date.now()
      if (this.ledger.hasWants) this.dispatch(this.ledger.settle(now))
      this.dispatchClients(this.clients.tick(now))
    }, RECLAIM_RETRY_MS)
    this.settleTimer.unref()
    this.old = new OldPrimary(this.takeoverSide(), log)
  }

  get workerCount(): number {
    return this.slots.length
  }

  /** Starts every worker; resolves 0 once all are ready, or the exit code of one that could not start. */
  async start(): Promise<number> {
    const s = this.config.settings
    if (isTakeoverChild()) {
      // The workers this primary forks are no takeover's children.
      delete process.env[ENV_TAKEOVER]
      try {
        const { handles, held } = await receiveHandles()
        this.inherited = handles
        this.setOldSlots(held)
      } catch (err) {
        this.log.error('runtime.failed', null, (err as Error).message)
        return 1
      }
      this.successor = new Successor(this.successorSide(), this.inherited, this.log)
    }
    // Workers share the primary's unix socket, so only the primary may remove a file left behind
    // (one a takeover handed over is not left behind).
    if (s.unix_socket_dir !== '' && s.listen_port !== 0 && this.inherited === null) removeStaleSocket(socketPath(s.unix_socket_dir, s.listen_port))
    // Under reuseport too the unix socket is shared, not accepted here and passed on: each worker then
    // holds a copy of it, which an online restart hands over (workers/takeover.ts).
    cluster.schedulingPolicy = this.mode === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE
    // Structured clone carries the console's Maps and typed arrays; the default JSON would not.
    cluster.setupPrimary({ serialization: 'advanced' })
    for (const sig of HANDLED_SIGNALS) process.on(sig, () => this.onSignal(sig))
    const failed = new Promise<number>((resolve) => { this.startFailure = resolve })
    const ready = new Promise<number>((resolve) => { this.onAllReady = () => resolve(0) })
    // Under reuseport each worker binds its own socket: with listen_port = 0 the first one picks
    // the port and the others bind the same.
    if (this.mode === 'reuseport' && this.port === null && this.inherited === null) this.fork(this.slots[0])
    else for (const slot of this.slots) this.fork(slot)
    const code = await Promise.race([ready, failed])
    this.startFailure = null
    if (code !== 0) {
      this.exitCode = code
      this.isStopping = true
      for (const slot of this.slots) slot.worker?.process.kill('SIGKILL')
      return code
    }
    this.isStarted = true
    if (s.pidfile !== '') fs.writeFileSync(s.pidfile, `${process.pid}\n`)
    const where = [s.listen_addr !== '' ? `${s.listen_addr}:${this.port}` : '', s.unix_socket_dir !== '' ? `unix:${socketPath(s.unix_socket_dir, this.port ?? 0)}` : '']
    this.log.info('runtime.started', null, `listening on ${where.filter((w) => w !== '').join(', ')} with ${this.slots.length} workers (${this.inherited !== null ? 'sockets taken over' : this.mode})`)
    this.forkSpare()
    if (this.successor !== null) this.successor.serve()
    else await this.openControl()
    return 0
  }

  /** Starts the worker for `slot`: the warm spare when one is waiting, else a new process. */
  private fork(slot: Slot): void {
    slot.retry = null
    slot.isReady = false
    const spare = this.spare
    if (spare !== null && this.isSpareReady && spare.isConnected()) {
      this.spare = null
      this.isSpareReady = false
      this.bind(slot, spare)
      spare.send({ t: 'activate', index: slot.index, port: this.port } satisfies ToWorker)
      this.forkSpare()
      return
    }
    this.bind(slot, this.spawn(String(slot.index)))
  }

  /**
   * A worker process that has loaded tidepool and waits, unbound, to replace one that dies: it
   * serves within the time its runtime takes to start, instead of the time Node takes to load it.
   */
  private forkSpare(): void {
    if (this.isStopping || this.spare !== null) return
    this.spare = this.spawn(ENV_SPARE)
  }

  private spawn(index: string): Worker {
    const env: Record<string, string> = { [ENV_INDEX]: index, [ENV_COUNT]: String(this.slots.length), [ENV_LISTEN]: this.mode }
    if (this.port !== null) env[ENV_PORT] = String(this.port)
    if (this.inherited !== null) env[ENV_INHERIT] = '1'
    const w = cluster.fork(env)
    w.on('message', (m: unknown, handle: unknown) => {
      if (!isMessage(m)) return
      const slot = this.byId.get(w.id)
      if (slot !== undefined && this.old.onWorkerMessage(w.id, m as ToPrimary, handle)) return
      if (slot !== undefined) this.onMessage(slot, w, m as ToPrimary)
      else if (w === this.spare && (m as ToPrimary).t === 'spare_ready') {
        this.isSpareReady = true
        this.log.info('worker.spare_ready', null, `a spare worker (pid ${w.process.pid}) is loaded and waits to replace one that ends`)
      }
    })
    w.on('exit', (code, signal) => {
      const slot = this.byId.get(w.id)
      if (slot !== undefined) return this.onExit(slot, w, code, signal)
      if (w !== this.spare) return
      this.spare = null
      this.isSpareReady = false
      // A spare that dies is replaced a little later (one that cannot start must not spin).
      if (!this.isStopping) setTimeout(() => this.forkSpare(), RESPAWN_BACKOFF_MS).unref()
    })
    return w
  }

  private bind(slot: Slot, w: Worker): void {
    slot.worker = w
    this.byId.set(w.id, slot)
    this.servers.set(w.id, new Map())
  }

  private onMessage(slot: Slot, w: Worker, m: ToPrimary): void {
    switch (m.t) {
      case 'want':
        this.dispatch(this.ledger.want(w.id, slotKey(m.db, m.user), m.db, m.user, m.target, m.reserve, m.limits, Date.now()))
        return
      case 'release':
        this.dispatch(this.ledger.release(w.id, slotKey(m.db, m.user), m.n, Date.now()))
        return
      case 'broadcast':
        void this.broadcastCommand(m.cmd, w.id).then((replies) => this.send(slot, { t: 'broadcast_reply', id: m.id, replies }))
        return
      case 'cmd_ack':
        clearTimeout(this.pending.get(w.id)?.get(m.id)?.timer)
        return
      case 'cmd_reply': {
        const p = this.pending.get(w.id)?.get(m.id)
        if (p === undefined) return
        this.pending.get(w.id)?.delete(m.id)
        clearTimeout(p.timer)
        p.done(m.ok ? { index: p.slotIndex, pid: p.pid, ok: true, value: m.value } : { index: p.slotIndex, pid: p.pid, ok: false, error: m.error ?? 'failed' })
        return
      }
      case 'client_ask':
        this.dispatchClients(this.clients.ask(w.id, m.key, m.limit, m.used, m.n, Date.now()))
        return
      case 'client_release':
        this.dispatchClients(this.clients.release(w.id, m.key, m.n, m.used, Date.now()))
        return
      case 'server_up':
        this.servers.get(w.id)?.set(m.id, { host: m.host, port: m.port, pid: m.pid, secret: m.secret })
        return
      case 'server_down':
        this.servers.get(w.id)?.delete(m.id)
        return
      case 'ready':
        slot.isReady = true
        slot.failures = 0
        if (this.port === null) {
          this.port = m.port
          if (this.mode === 'reuseport') for (const s of this.slots) if (s.worker === null) this.fork(s)
        }
        if (this.isStarted) {
          this.log.info('worker.replaced', null, `worker ${slot.index} (pid ${slot.worker?.process.pid}) is serving`)
          void this.inherit(slot)
        }
        else if (this.slots.every((s) => s.isReady)) this.onAllReady?.()
        return
      case 'cancel':
        this.routeCancel(m.owner, m.pid, m.secret)
        return
      case 'inherit_ask':
        this.successor?.inherit(this.portOf(slot))
        return
      case 'cancel_old':
        this.successor?.cancelOld(m.pid, m.secret)
        return
      case 'shutdown':
        this.stop({ t: 'shutdown', mode: m.mode })
        return
    }
  }

  /**
   * A key no live worker owns is dropped quietly, as PostgreSQL drops an unknown key. After a
   * takeover from a pooler with more workers, index i's clients are on worker i mod count.
   */
  private routeCancel(index: number, pid: number, secret: number): void {
    const owner = this.slots[index % this.slots.length]
    if (owner?.isReady === true) this.send(owner, { t: 'cancel', pid, secret })
  }

  // ---- online restart (workers/takeover.ts) ----

  private portOf(slot: Slot): WorkerPort {
    const w = slot.worker as Worker
    return {
      id: w.id,
      index: slot.index,
      send: (m, handle) => {
        if (!w.isConnected()) return void (handle as net.Socket | undefined)?.destroy?.()
        try {
          w.send(m, handle as net.Socket | undefined)
        } catch {
          // Its channel closed between the check and the send: its exit event follows.
        }
      },
    }
  }

  private takeoverSide(): PrimarySide {
    const serving = () => this.slots.filter((s) => s.isReady && s.worker !== null).map((s) => this.portOf(s))
    const settings = () => this.config.settings
    const port = () => this.port ?? this.config.settings.listen_port
    const isStopping = () => this.isStopping
    return {
      get settings() { return settings() },
      get port() { return port() },
      get isStopping() { return isStopping() },
      serving,
      workerFor: (index) => this.workerFor(index),
      holdings: () => this.ledger.holdings().map(({ db, user, n, limits }) => ({ db, user, n, limits })),
      routeCancel: (pid, secret) => this.routeCancel(keyOwner(pid), pid, secret),
      handingOver: () => {
        this.isHandedOver = true
        this.stopSpare()
      },
      exit: () => process.exit(0),
    }
  }

  private workerFor(index: number): WorkerPort | null {
    const slot = this.slots[index]?.isReady === true ? this.slots[index] : this.slots.find((s) => s.isReady)
    return slot === undefined || slot.worker === null ? null : this.portOf(slot)
  }

  private successorSide(): SuccessorSide {
    return {
      workerFor: (index) => this.workerFor(index),
      serving: () => this.slots.filter((s) => s.isReady && s.worker !== null).map((s) => this.portOf(s)),
      workerCount: this.slots.length,
      setOldSlots: (held) => this.setOldSlots(held),
      alone: () => void this.openControl(),
    }
  }

  /** The old pooler's server slots count here until they close: old and new together stay within the limits. */
  private setOldSlots(held: readonly HeldSlots[]): void {
    const now = Date.now()
    const keys = new Set<string>()
    for (const h of held) {
      const key = slotKey(h.db, h.user)
      keys.add(key)
      this.dispatch(this.ledger.setHeld(OLD_HOLDER, key, h.db, h.user, h.n, h.limits, now))
    }
    for (const key of this.oldSlots) {
      if (keys.has(key)) continue
      const [db, user] = key.split('\u0000')
      this.dispatch(this.ledger.setHeld(OLD_HOLDER, key, db, user, 0, { pool: 0, reserve: 0, db: 0, user: 0 }, now))
    }
    this.oldSlots = keys
  }

  /** The control socket through which `--takeover` reaches this pooler. */
  private async openControl(): Promise<void> {
    if (this.isStopping) return
    await new TakeoverControl(this.old, this.log).start().catch((err: unknown) => this.log.warn('takeover.control_failed', null, `no online restart for this pooler: cannot open its control socket: ${(err as Error).message}`))
  }

  /** Sends the ledger's grants and reclaims; a grant to a worker that is gone goes straight back. */
  private dispatch(actions: LedgerAction[]): void {
    for (const a of actions) {
      const slot = this.byId.get(a.worker)
      const [db, user] = a.key.split('\u0000')
      const w = slot?.worker
      const isLive = w !== undefined && w !== null && w.id === a.worker && w.isConnected()
      if (a.kind === 'grant') {
        if (isLive) this.send(slot as Slot, { t: 'grant', db, user, n: a.n })
        else this.dispatch(this.ledger.release(a.worker, a.key, a.n, Date.now()))
      } else if (isLive) {
        this.send(slot as Slot, { t: 'reclaim', db, user, n: a.n, keep: a.keep })
      }
    }
  }

  private dispatchClients(actions: ClientAction[]): void {
    for (const a of actions) {
      const slot = this.byId.get(a.worker)
      const w = slot?.worker
      const isLive = w !== undefined && w !== null && w.id === a.worker && w.isConnected()
      if (!isLive) {
        if (a.kind === 'grant') this.dispatchClients(this.clients.release(a.worker, a.key, a.n, 0, Date.now()))
        continue
      }
      const msg: ToWorker = a.kind === 'grant' ? { t: 'client_grant', key: a.key, n: a.n } : a.kind === 'deny' ? { t: 'client_deny', key: a.key } : { t: 'client_reclaim', key: a.key }
      this.send(slot as Slot, msg)
    }
  }

  /**
   * Runs `cmd` in every worker that is serving and resolves with each one's answer; one that does
   * not acknowledge within BROADCAST_ACK_MS, or ends first, gets an error naming it.
   */
  broadcastCommand(cmd: WorkerCommand, from: number | null): Promise<CommandReply[]> {
    if (cmd.op === 'suspend') this.suspendOwner = from
    if (cmd.op === 'unsuspend' || (cmd.op === 'resume' && cmd.db === null)) this.suspendOwner = null
    return this.command(this.slots.filter((s) => s.isReady), cmd)
  }

  /** Runs `cmd` in each of these workers; see broadcastCommand. */
  private command(slots: readonly Slot[], cmd: WorkerCommand): Promise<CommandReply[]> {
    const asks: Array<Promise<CommandReply>> = []
    for (const slot of slots) {
      const w = slot.worker
      if (w === null) continue
      const id = this.nextCommandId++
      const pid = w.process.pid ?? 0
      asks.push(new Promise<CommandReply>((resolve) => {
        const timer = setTimeout(() => {
          this.pending.get(w.id)?.delete(id)
          resolve({ index: slot.index, pid, ok: false, error: `worker ${slot.index} (pid ${pid}) did not answer within ${BROADCAST_ACK_MS / 1000} s` })
        }, BROADCAST_ACK_MS)
        let m = this.pending.get(w.id)
        if (m === undefined) this.pending.set(w.id, (m = new Map()))
        m.set(id, { slotIndex: slot.index, pid, timer, done: resolve })
        this.send(slot, { t: 'cmd', id, cmd })
      }))
    }
    return Promise.all(asks)
  }

  /**
   * A replacement starts as a fresh process: it takes on the PAUSE and DISABLE state that another
   * worker has, so that the pooler keeps holding what the console held.
   */
  private async inherit(slot: Slot): Promise<void> {
    const peer = this.slots.find((s) => s !== slot && s.isReady)
    if (peer === undefined) return
    const [r] = await this.command([peer], { op: 'snapshot' })
    if (!r.ok) return
    const snap = r.value as WorkerSnapshot
    const cmds: WorkerCommand[] = [
      ...(snap.isPausedAll ? [{ op: 'pause' as const, db: null }] : snap.pausedDbs.map((db) => ({ op: 'pause' as const, db }))),
      ...snap.disabledDbs.map((db) => ({ op: 'disable' as const, db })),
    ]
    for (const cmd of cmds) await this.command([slot], cmd)
    if (cmds.length > 0) this.log.info('worker.inherited', null, `worker ${slot.index} took on ${cmds.map((c) => `${c.op.toUpperCase()}${'db' in c && c.db !== null ? ` ${c.db}` : ''}`).join(', ')}`)
  }

  /** A worker is gone: cancel what its server sessions may still run, then free its slots. */
  private retire(w: Worker): void {
    this.byId.delete(w.id)
    const open = this.pending.get(w.id)
    this.pending.delete(w.id)
    for (const p of open?.values() ?? []) {
      clearTimeout(p.timer)
      p.done({ index: p.slotIndex, pid: p.pid, ok: false, error: `worker ${p.slotIndex} (pid ${p.pid}) ended before it answered` })
    }
    if (this.suspendOwner === w.id && !this.isStopping) {
      this.suspendOwner = null
      void this.broadcastCommand({ op: 'unsuspend' }, null)
    }
    this.ledger.withdraw(w.id)
    // Its clients are gone with it.
    this.dispatchClients(this.clients.dropWorker(w.id, Date.now()))
    const servers = [...(this.servers.get(w.id)?.values() ?? [])]
    this.servers.delete(w.id)
    const timeoutMs = this.config.settings.server_connect_timeout * 1000
    for (const t of servers) sendCancel(t, timeoutMs)
    const free = () => this.dispatch(this.ledger.dropWorker(w.id, Date.now()))
    if (servers.length === 0) free()
    else setTimeout(free, DEAD_WORKER_GRACE_MS).unref()
  }

  private onExit(slot: Slot, w: Worker, code: number | null, signal: string | null): void {
    this.retire(w)
    if (this.isHandedOver) return this.old.onWorkerGone(w.id)
    if (slot.worker !== w) return
    const wasReady = slot.isReady
    slot.worker = null
    slot.isReady = false
    if (this.isStopping) {
      if (this.slots.every((s) => s.worker === null)) this.finish()
      return
    }
    const how = signal !== null ? `signal ${signal}` : `exit code ${code}`
    if (!this.isStarted) {
      this.log.error('worker.failed', null, `worker ${slot.index} stopped before it was ready (${how})`)
      this.startFailure?.(code === 2 ? 2 : 1)
      return
    }
    this.log.error('worker.died', null, `worker ${slot.index} (pid ${w.process.pid}) ended (${how}); its clients are lost, starting a replacement`)
    if (wasReady) {
      slot.failures = 0
      this.fork(slot)
      return
    }
    // A replacement that cannot start (a config file broken since, say) is retried ever more slowly.
    slot.failures++
    const delay = Math.min(RESPAWN_BACKOFF_MAX_MS, RESPAWN_BACKOFF_MS * 2 ** (slot.failures - 1))
    slot.retry = setTimeout(() => this.fork(slot), delay)
  }

  private onSignal(sig: HandledSignal): void {
    if (STOP_SIGNALS.has(sig)) this.stopSpare()
    this.broadcast({ t: 'signal', signal: sig })
    if (this.isStopping) this.finishIfIdle()
  }

  /** Console SHUTDOWN in some worker: every worker stops in that mode, then the primary. */
  private stop(msg: { t: 'shutdown'; mode: ShutdownMode }): void {
    this.stopSpare()
    this.broadcast(msg)
    this.finishIfIdle()
  }

  /** No more replacements: the spare goes (it serves nobody), and none is started again. */
  private stopSpare(): void {
    this.isStopping = true
    const spare = this.spare
    this.spare = null
    if (spare !== null && spare.isConnected()) spare.send({ t: 'shutdown', mode: 'immediate' } satisfies ToWorker)
  }

  private broadcast(msg: ToWorker): void {
    for (const slot of this.slots) this.send(slot, msg)
  }

  private send(slot: Slot, msg: ToWorker): void {
    const w = slot.worker
    if (w === null || !w.isConnected()) return
    try {
      w.send(msg)
    } catch {
      // Its channel closed between the check and the send: its exit event follows.
    }
  }

  private finishIfIdle(): void {
    for (const slot of this.slots) {
      if (slot.retry !== null) clearTimeout(slot.retry)
      slot.retry = null
    }
    if (this.slots.every((s) => s.worker === null)) this.finish()
  }

  private finish(): void {
    const s = this.config.settings
    if (s.pidfile !== '') fs.rmSync(s.pidfile, { force: true })
    if (s.unix_socket_dir !== '' && this.port !== null) fs.rmSync(socketPath(s.unix_socket_dir, this.port), { force: true })
    if (this.exitCode === 0) this.log.info('runtime.stopped', null, 'shutdown complete')
    process.exit(this.exitCode)
  }
}

function slotKey(db: string, user: string): string {
  return `${db}\u0000${user}`
}
