// Online restart with workers (runtime/takeover.ts has the protocol and the one-process case). Node
// passes a descriptor only over a child_process IPC channel, and the channels here join a primary
// to its workers and the old primary to the new one, so every socket hops:
//   listening sockets   old worker ─▶ old primary ─▶ new primary ─▶ every new worker
//   clients             old worker ─▶ old primary ─▶ new primary ─▶ one new worker
// Listening sockets travel as bare handles (socket-fd.ts listeningHandleOf): a primary that only
// passes one on never accepts on it. A client's socket stops reading in each primary it crosses
// (the relay must not read a byte of it), and each sender closes its copy once Node has sent it.
//   OldPrimary  the old pooler's side: gathers every worker's listening sockets (one copy per
//               kernel socket: under SO_REUSEPORT each worker has its own), tells every worker to
//               stop accepting and hand its clients over, relays them, reports its server slots.
//   Successor   the new pooler's side: gives its workers the inherited sockets (a replacement
//               worker, later, too: nothing is ever bound again), places each client on the worker
//               whose index its cancel key carries, counts the old pooler's server slots in its
//               ledger until they close, sends it the cancel keys nobody here knows.
// Must not: let an old worker close its copy of a listening socket through node:cluster (its
// primary would close its own, and remove the unix socket file the new pooler serves).

import type net from 'node:net'
import type { Settings } from '../config/settings.ts'
import type { Logger } from '../observe/log.ts'
import type { ClientHandoff } from '../proxy/client-handoff.ts'
import { keyOwner } from '../proxy/cancel.ts'
import { stopReadingNow } from '../net/socket-fd.ts'
import type { HandedListener, HeldSlots, ListenerKind, TakeoverOld, ToNew, ToOld } from '../runtime/takeover.ts'
import { isMsg } from '../runtime/takeover.ts'
import type { ToPrimary, ToWorker } from './ipc.ts'

/** Old workers must send their listening sockets within this, or the takeover fails (the old pooler serves on). */
const LISTENERS_TIMEOUT_MS = 10_000
/** How often the old pooler's server slots are compared with what it last reported. */
const SLOTS_REPORT_MS = 100

/** One worker process of a primary, as the takeover sees it. */
export interface WorkerPort {
  readonly id: number
  readonly index: number
  send(m: ToWorker, handle?: object): void
}

/** What the takeover needs of a Primary. */
export interface PrimarySide {
  readonly settings: Settings
  readonly port: number
  readonly isStopping: boolean
  /** Workers serving now. */
  serving(): WorkerPort[]
  /** The worker with this index, or another serving one; null when none serves. */
  workerFor(index: number): WorkerPort | null
  holdings(): HeldSlots[]
  routeCancel(pid: number, secret: number): void
  /** The drain begins: no replacement, no spare; socket file and pidfile are the new pooler's. */
  handingOver(): void
  exit(): void
}

/** A socket that reached this primary only to go on: not one byte may be read here. */
function holdUnread(socket: net.Socket): net.Socket {
  socket.on('error', () => {})
  socket.pause()
  stopReadingNow(socket)
  return socket
}

export class OldPrimary implements TakeoverOld {
  private gathering: { waiting: Set<number>; seen: Set<string>; out: Array<{ handle: object; kind: ListenerKind }>; done: (err: Error | null) => void } | null = null
  private draining: { waiting: Set<number>; handed: number; closed: number; client: (socket: net.Socket, h: ClientHandoff) => void; done: () => void } | null = null

  /** This primary's copies of the listening sockets, sent to the new pooler: closed if it fails. */
  private gathered: Array<{ handle: object }> = []

  constructor(private readonly p: PrimarySide, private readonly log: Logger) {}

  get settings(): Settings { return this.p.settings }
  get port(): number { return this.p.port }
  get isShuttingDown(): boolean { return this.p.isStopping }

  /** Every serving worker sends its listening sockets; one copy of each kernel socket goes on. */
  listeners(): Promise<Array<{ handle: object; kind: ListenerKind }>> {
    const ws = this.p.serving()
    if (ws.length === 0) return Promise.reject(new Error('no worker serves'))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`worker(s) ${[...(this.gathering?.waiting ?? [])].join(', ')} did not send their listening sockets in ${LISTENERS_TIMEOUT_MS} ms`)), LISTENERS_TIMEOUT_MS)
      const g = { waiting: new Set(ws.map((w) => w.id)), seen: new Set<string>(), out: [] as Array<{ handle: object; kind: ListenerKind }>, done: (err: Error | null) => finish(err) }
      const finish = (err: Error | null) => {
        if (this.gathering !== g) return
        this.gathering = null
        clearTimeout(timer)
        this.gathered = g.out
        if (err !== null) reject(err)
        else resolve(g.out)
      }
      this.gathering = g
      for (const w of ws) w.send({ t: 'takeover_listeners' })
    })
  }

  drain(deadlineMs: number, client: (socket: net.Socket, h: ClientHandoff) => void): Promise<{ handed: number; closed: number }> {
    this.p.handingOver()
    const ws = this.p.serving()
    return new Promise((resolve) => {
      const d = { waiting: new Set(ws.map((w) => w.id)), handed: 0, closed: 0, client, done: () => resolve({ handed: d.handed, closed: d.closed }) }
      this.draining = d
      for (const w of ws) w.send({ t: 'takeover_drain', deadlineMs })
      if (d.waiting.size === 0) d.done()
    })
  }

  cancel(pid: number, secret: number): void {
    this.p.routeCancel(pid, secret)
  }

  watchSlots(report: (held: HeldSlots[]) => void): void {
    let last = ''
    const tick = () => {
      const held = this.p.holdings()
      const text = JSON.stringify(held)
      if (text === last) return
      last = text
      report(held)
    }
    tick()
    setInterval(tick, SLOTS_REPORT_MS).unref()
  }

  failed(): void {
    // Copies received from the workers (never bound here: closing one removes no socket file).
    for (const { handle } of this.gathered.splice(0)) (handle as { close: () => void }).close()
  }

  exit(): void {
    this.p.exit()
  }

  /** A takeover message of worker `id` (with its handle); false: not one of ours. */
  onWorkerMessage(id: number, m: ToPrimary, handle: unknown): boolean {
    switch (m.t) {
      case 'takeover_listener': {
        const g = this.gathering
        if (typeof handle !== 'object' || handle === null) return true
        const copy = handle as { close: () => void }
        // Under node:cluster's shared socket every worker has a copy of the one kernel socket.
        const id = m.inode ?? `${g?.out.length}`
        if (g === null || g.seen.has(id)) {
          copy.close()
          return true
        }
        g.seen.add(id)
        g.out.push({ handle, kind: m.kind })
        return true
      }
      case 'takeover_listeners_done': {
        const g = this.gathering
        if (g === null) return true
        if (m.error !== null) g.done(new Error(m.error))
        g.waiting.delete(id)
        if (g.waiting.size === 0) g.done(null)
        return true
      }
      case 'takeover_client':
        if (this.draining !== null && typeof handle === 'object' && handle !== null) this.draining.client(holdUnread(handle as net.Socket), m.h)
        else (handle as net.Socket | null)?.destroy()
        return true
      case 'takeover_drained': {
        const d = this.draining
        if (d === null) return true
        d.handed += m.handed
        d.closed += m.closed
        this.workerDone(id)
        return true
      }
      default:
        return false
    }
  }

  /** Worker `id` ended: it has nothing more to send. */
  onWorkerGone(id: number): void {
    if (this.gathering?.waiting.delete(id) === true && this.gathering.waiting.size === 0) this.gathering.done(null)
    this.workerDone(id)
  }

  private workerDone(id: number): void {
    const d = this.draining
    if (d === null || !d.waiting.delete(id)) return
    if (d.waiting.size > 0) return
    this.log.info('takeover.workers_done', null, `takeover: every old worker has handed its clients over (${d.handed} handed, ${d.closed} closed)`)
    d.done()
  }
}

/** The ledger's holder that stands for the old pooler's server slots (worker ids are positive). */
export const OLD_HOLDER = -1

/** What the Successor needs of the new Primary beyond PrimarySide. */
export interface SuccessorSide {
  workerFor(index: number): WorkerPort | null
  serving(): WorkerPort[]
  readonly workerCount: number
  /** The old pooler holds these server slots now (its last report); [] once it is gone. */
  setOldSlots(held: readonly HeldSlots[]): void
  /** The old pooler is gone: open the control socket for the next restart. */
  alone(): void
}

export class Successor {
  private isOldAlive = true
  private nextConn = 0

  constructor(private readonly p: SuccessorSide, private readonly handles: readonly HandedListener[], private readonly log: Logger) {}

  /** A worker starts (or replaces one): the inherited listening sockets, to serve. */
  inherit(w: WorkerPort): void {
    for (const h of this.handles) w.send({ t: 'inherit', kind: h.kind }, h.handle)
    w.send({ t: 'inherit_done', isOldAlive: this.isOldAlive })
  }

  /** A key no new worker knows: the old pooler's client may still run a query there. */
  cancelOld(pid: number, secret: number): void {
    if (this.isOldAlive) process.send?.({ t: 'cancel', pid, secret } satisfies ToOld)
  }

  /** Every worker serves: take the old pooler's clients and slot reports until it is gone. */
  serve(): void {
    process.on('message', (m: unknown, handle: unknown) => {
      if (!isMsg(m)) return
      const msg = m as ToNew
      if (msg.t === 'slots') return this.p.setOldSlots(msg.held)
      if (typeof handle !== 'object' || handle === null) return
      const socket = holdUnread(handle as net.Socket)
      if (msg.t === 'client') {
        // The worker whose index the client's key carries: a CancelRequest for it goes there.
        const w = this.p.workerFor(keyOwner(msg.h.cancelPid) % this.p.workerCount)
        if (w === null) return void socket.destroy()
        w.send({ t: 'takeover_client', h: msg.h }, socket)
      } else if (msg.t === 'conn') {
        const ws = this.p.serving()
        if (ws.length === 0) return void socket.destroy()
        ws[this.nextConn++ % ws.length].send({ t: 'takeover_conn', isUnix: msg.isUnix }, socket)
      }
    })
    process.once('disconnect', () => {
      this.isOldAlive = false
      this.p.setOldSlots([])
      for (const w of this.p.serving()) w.send({ t: 'takeover_alone' })
      this.log.info('takeover.alone', null, 'takeover: the old tidepool has exited; this one serves alone')
      this.p.alone()
    })
    process.send?.({ t: 'ready' } satisfies ToOld)
  }
}
