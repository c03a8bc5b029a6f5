// Online restart (`tidepool <ini> --takeover`, cli/takeover.ts): a new tidepool takes over from
// the running one without refusing a connection or ending a session.
//
//   1. The running process (the old one) listens on a control socket beside its PostgreSQL socket,
//      <unix_socket_dir>/.s.PGSQL.<port>.takeover (mode 0600, and the peer must be its own OS user).
//   2. `--takeover` connects there and asks; the old process starts the new one as its child, with
//      the asker's command line, environment and directory, and an IPC channel. Node.js passes file
//      descriptors between processes only over such a channel (child_process), and only a parent
//      and its child share one: that is why the old process starts the new one, on Node 20, 22 and 24.
//   3. The new process asks for the listening sockets (TCP, the unix socket, HTTP) and serves them
//      as they are: both processes accept from the same sockets meanwhile, so no connection is
//      refused and nothing is bound twice (SO_REUSEPORT is not used: a socket closed under it drops
//      the connections queued on it). It says `ready`.
//   4. The old process then hands over, unread, every connection it still accepts, and every client
//      between transactions (transaction and statement mode): its socket, and its session
//      (client-handoff.ts). A client inside a transaction finishes it here and is handed over after.
//      Cancel keys the new process does not know come back here (its clients may still run a query).
//   5. Once no pooled client is left here, or at the deadline (closing those left), the old process
//      exits; the new one then opens the control socket for the next restart.
// Clients that stay to the deadline: TLS clients (the TLS session lives in this process), session
// mode, a session pinned by state (LISTEN, advisory locks, temp tables), console sessions.
// With workers the primary is the old or new process here, and sockets hop through it
// (workers/takeover.ts); listening sockets travel as bare handles, so a primary never accepts.
// Must not: hand over a client with anything in flight (ClientConn.handoff decides).

import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import type { Settings } from '../config/settings.ts'
import type { Logger } from '../observe/log.ts'
import type { ClientHandoff } from '../proxy/client-handoff.ts'
import type { ClientConn } from '../proxy/client-conn.ts'
import { cancelTimeoutMs } from '../proxy/cancel.ts'
import { ClientErrors } from '../protocol/client-errors.ts'
import { ownUid, peerUid } from '../net/peer-cred.ts'
import { removeStaleSocket, type AdoptedServer } from '../net/listener.ts'
import { listeningHandleOf, serverFromHandle } from '../net/socket-fd.ts'
import { socketPath } from '../net/dial.ts'
import type { Inherited, Runtime } from '../runtime.ts'

/** The environment variable that tells a process it is the new one of a takeover. */
export const ENV_TAKEOVER = 'TIDEPOOL_TAKEOVER'
/** The new process must be listening within this; otherwise it is stopped and the old one carries on. */
const START_TIMEOUT_MS = 30_000
/** How often the old process looks for clients that have become free to go. */
const SWEEP_MS = 10

/** The control socket of the pooler listening on `port`, or null without unix_socket_dir. */
export function controlSocketPath(s: Pick<Settings, 'unix_socket_dir'>, port: number): string | null {
  return s.unix_socket_dir === '' ? null : join(s.unix_socket_dir, `.s.PGSQL.${port}.takeover`)
}

/** What `--takeover` asks: the command line that starts the new version, and the drain deadline. */
export interface TakeoverRequest {
  op: 'takeover'
  execPath: string
  args: string[]
  cwd: string
  env: Record<string, string>
  timeoutS: number
}

/** What the old process tells the asker, one JSON object per line. */
export type TakeoverEvent =
  | { ev: 'started'; pid: number }
  | { ev: 'ready'; pid: number }
  | { ev: 'done'; pid: number; handed: number; closed: number; ms: number }
  | { ev: 'error'; message: string }

/** A pooler's server slots of one pool (workers: the primary's ledger), counted by the new one until they close. */
export interface HeldSlots {
  readonly db: string
  readonly user: string
  readonly n: number
  readonly limits: { pool: number; reserve: number; db: number; user: number }
}

export type ListenerKind = 'tcp' | 'unix' | 'http'

/** The old pooler tells the new one. A listener comes as its bare handle (listeningHandleOf). */
export type ToNew =
  | { t: 'listener'; kind: ListenerKind }
  | { t: 'listeners_done' }
  | { t: 'conn'; isUnix: boolean }
  | { t: 'client'; h: ClientHandoff }
  /** Every pool's server slots the old pooler holds now (sent as they change; workers only). */
  | { t: 'slots'; held: HeldSlots[] }
export type ToOld = { t: 'hello' } | { t: 'ready' } | { t: 'cancel'; pid: number; secret: number }

export function isMsg(m: unknown): m is { t: string } {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string'
}

/** What a pooler that can be taken over does for it: one process (runtimeAsOld) or a primary of workers. */
export interface TakeoverOld {
  readonly settings: Settings
  readonly port: number
  readonly isShuttingDown: boolean
  /** The listening sockets, as bare handles; what this pooler still accepts from now on goes to `conn`. */
  listeners(conn: (socket: net.Socket, isUnix: boolean) => void): Promise<Array<{ handle: object; kind: ListenerKind }>>
  /**
   * Hands over every client as it becomes free to go, through `client`, until none is left or the
   * deadline passes (the rest are closed); resolves once this pooler has nothing left to send.
   */
  drain(deadlineMs: number, client: (socket: net.Socket, h: ClientHandoff) => void): Promise<{ handed: number; closed: number }>
  cancel(pid: number, secret: number): void
  /** Server slots held, reported through `report` as they change, until the exit (workers). */
  watchSlots?(report: (held: HeldSlots[]) => void): void
  /** The new pooler ended before it was ready: this one serves on (copies of sockets gathered for it go). */
  failed?(): void
  /** Everything is handed over: end this pooler, leaving its sockets, socket file and pidfile to the new one. */
  exit(): void
}

// ---- the old process ----

/** The control socket of a running pooler, and the takeover it may run (one at a time). */
export class TakeoverControl {
  private server: net.Server | null = null
  private child: ChildProcess | null = null

  constructor(private readonly old: TakeoverOld, private readonly log: Logger) {}

  /** Opens the control socket; a file left by a process that died is removed first. */
  async start(): Promise<void> {
    const path = controlSocketPath(this.old.settings, this.old.port)
    if (path === null) return
    removeStaleSocket(path)
    const server = net.createServer((socket) => this.onRequest(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ path }, () => resolve())
    })
    fs.chmodSync(path, 0o600)
    server.unref()
    this.server = server
  }

  private onRequest(socket: net.Socket): void {
    socket.on('error', () => {})
    let buf = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => {
      buf += d
      if (buf.length > 1 << 20) return void socket.destroy()
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      socket.removeAllListeners('data')
      let req: TakeoverRequest
      try {
        req = JSON.parse(buf.slice(0, nl)) as TakeoverRequest
      } catch {
        return void socket.end(line({ ev: 'error', message: 'bad request' }))
      }
      void this.authorize(socket).then((why) => {
        if (why !== null) return void socket.end(line({ ev: 'error', message: why }))
        this.run(req, socket)
      })
    })
  }

  /** The file's mode keeps others out; where the kernel can say who connected, it must be our own user. */
  private async authorize(socket: net.Socket): Promise<string | null> {
    const own = ownUid()
    const peer = await peerUid(socket)
    if (own !== null && peer.uid !== null && peer.uid !== own && peer.uid !== 0) return `refused: takeover asked by uid ${peer.uid}, tidepool runs as uid ${own}`
    return null
  }

  private run(req: TakeoverRequest, asker: net.Socket): void {
    const old = this.old
    if (this.child !== null) return void asker.end(line({ ev: 'error', message: `a takeover is already in progress (new process pid ${this.child.pid})` }))
    if (old.isShuttingDown) return void asker.end(line({ ev: 'error', message: 'this tidepool is shutting down' }))
    if (req.op !== 'takeover' || typeof req.execPath !== 'string' || !Array.isArray(req.args)) return void asker.end(line({ ev: 'error', message: 'bad request' }))
    const startedAt = Date.now()
    let child: ChildProcess
    try {
      // Detached: a terminal's Ctrl-C to the old process's group must not reach the new one.
      child = spawn(req.execPath, req.args, {
        cwd: req.cwd, env: { ...req.env, [ENV_TAKEOVER]: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], detached: true, serialization: 'json',
      })
    } catch (err) {
      return void asker.end(line({ ev: 'error', message: `cannot start the new tidepool: ${(err as Error).message}` }))
    }
    this.child = child
    const pid = child.pid ?? 0
    this.log.info('takeover.started', null, `takeover: started the new tidepool (pid ${pid}); it listens on our sockets first`)
    asker.write(line({ ev: 'started', pid }))
    let isReady = false
    const fail = (why: string) => {
      this.log.error('takeover.failed', null, `takeover: ${why}: stopped; serving on`)
      child.kill('SIGKILL')
    }
    const startTimer = setTimeout(() => fail(`the new tidepool (pid ${pid}) was not ready in ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS)
    child.on('exit', (code, signal) => {
      clearTimeout(startTimer)
      if (isReady) return
      this.child = null
      old.failed?.()
      const how = signal !== null ? `was stopped by ${signal}` : `exited with code ${code}`
      this.log.error('takeover.failed', null, `takeover: the new tidepool (pid ${pid}) ${how} before it was ready; serving on`)
      asker.end(line({ ev: 'error', message: `the new tidepool (pid ${pid}) ${how} before it was ready; the old one (pid ${process.pid}) serves on` }))
    })
    child.on('error', () => {})
    child.on('message', (m: unknown) => {
      if (!isMsg(m)) return
      const msg = m as ToOld
      if (msg.t === 'hello') {
        // The slots first: the new pooler counts them before its workers serve anyone.
        old.watchSlots?.((held) => { if (child.connected) child.send({ t: 'slots', held } satisfies ToNew) })
        old.listeners((socket, isUnix) => this.sendConn(child, socket, isUnix)).then((ls) => {
          for (const l of ls) child.send({ t: 'listener', kind: l.kind } satisfies ToNew, l.handle as net.Server)
          child.send({ t: 'listeners_done' } satisfies ToNew)
        }, (err: unknown) => fail(`cannot hand over the listening sockets: ${(err as Error).message}`))
      } else if (msg.t === 'ready') {
        isReady = true
        clearTimeout(startTimer)
        this.log.info('takeover.ready', null, `takeover: the new tidepool (pid ${pid}) serves; handing over clients between transactions`)
        asker.write(line({ ev: 'ready', pid }))
        this.drain(child, asker, req.timeoutS, startedAt)
      } else if (msg.t === 'cancel') {
        old.cancel(msg.pid, msg.secret)
      }
    })
  }

  /** Handles sent and not yet written to the channel: the process must not exit before they are. */
  private inFlight = 0

  private send(child: ChildProcess, msg: ToNew, socket: net.Socket): void {
    this.inFlight++
    child.send(msg, socket, {}, () => { this.inFlight-- })
  }

  private sendConn(child: ChildProcess, socket: net.Socket, isUnix: boolean): void {
    // Accepted with pauseOnConnect: nothing was read. Not the server's socket any more (Node would
    // otherwise track it in the child, for a server.close() that never comes).
    ;(socket as net.Socket & { server: unknown }).server = null
    this.send(child, { t: 'conn', isUnix }, socket)
  }

  private drain(child: ChildProcess, asker: net.Socket, timeoutS: number, startedAt: number): void {
    const deadline = Date.now() + Math.max(0, timeoutS) * 1000
    void this.old.drain(deadline, (socket, h) => this.send(child, { t: 'client', h }, socket)).then(({ handed, closed }) => {
      if (closed > 0) this.log.warn('takeover.deadline', null, `takeover: ${closed} clients still busy at the deadline (${timeoutS}s) were closed`)
      // Exit only once every handle is on the channel: a descriptor in flight outlives its sender.
      const exitWhenSent = () => {
        if (this.inFlight > 0) return void setTimeout(exitWhenSent, 5)
        const ms = Date.now() - startedAt
        this.log.info('takeover.done', null, `takeover: ${handed} clients handed over, ${closed} closed; the new tidepool (pid ${child.pid}) serves alone after ${ms} ms`)
        asker.end(line({ ev: 'done', pid: child.pid ?? 0, handed, closed, ms }))
        this.old.exit()
      }
      exitWhenSent()
    })
  }
}

function line(e: TakeoverEvent): string {
  return JSON.stringify(e) + '\n'
}

/**
 * Hands over `rt`'s clients as each becomes free (between its ReadyForQuery and its next query),
 * by `hand`, until none is left or the deadline, when the rest are closed. The one process of a
 * pooler does this, and each worker of one.
 */
export function drainClients(rt: Runtime, deadlineMs: number, hand: (socket: net.Socket, h: ClientHandoff) => void): Promise<{ handed: number; closed: number }> {
  let handed = 0
  /** Hands `c` over if it is free to go; false if it must stay for now. */
  const tryHand = (c: ClientConn): boolean => {
    const h = c.handoff()
    if (h === null) return false
    const socket = c.handOff()
    ;(socket as net.Socket & { server: unknown }).server = null
    hand(socket, h)
    handed++
    return true
  }
  // A busy client is free only between its ReadyForQuery and its next query: catch it there.
  rt.onClientFree = (c) => { tryHand(c as ClientConn) }
  return new Promise((resolve) => {
    const sweep = setInterval(() => {
      let left = 0
      for (const c of [...rt.clients]) {
        if (!c.isConsole && !tryHand(c)) left++
      }
      if (left > 0 && Date.now() < deadlineMs) return
      clearInterval(sweep)
      rt.onClientFree = null
      let closed = 0
      for (const c of [...rt.clients]) {
        if (!c.isConsole) closed++
        c.fail(ClientErrors.takeoverDone)
      }
      resolve({ handed, closed })
    }, SWEEP_MS)
  })
}

/** The one process of a pooler (workers = 1), as the old side of a takeover. */
export function runtimeAsOld(rt: Runtime): TakeoverOld {
  return {
    get settings() { return rt.settings },
    get port() { return rt.port },
    get isShuttingDown() { return rt.isShuttingDown },
    listeners: (conn) => {
      const out: Array<{ handle: object; kind: ListenerKind }> = []
      for (const l of rt.handOver(conn)) {
        const handle = listeningHandleOf(l.server)
        if (handle !== null) out.push({ handle, kind: l.kind })
      }
      return Promise.resolve(out)
    },
    drain: (deadlineMs, client) => drainClients(rt, deadlineMs, client),
    cancel: (pid, secret) => {
      const what = rt.cancels.cancel(pid, secret, cancelTimeoutMs(rt.settings))
      rt.log.debug('cancel.received', null, `cancel request from the new process: ${what}`)
    },
    exit: () => void rt.shutdown('immediate').then(() => process.exit(0)),
  }
}

// ---- the new process ----

/** This process was started by a takeover (an old tidepool is its parent, over IPC). */
export function isTakeoverChild(): boolean {
  return process.env[ENV_TAKEOVER] === '1' && typeof process.send === 'function'
}

/** A listening socket as it came from the old pooler: a bare handle (an older tidepool sent a net.Server). */
export interface HandedListener {
  readonly handle: object
  readonly kind: ListenerKind
}

/** Asks the old pooler (this process's parent) for its listening sockets; its server slots come first (workers). */
export function receiveHandles(timeoutMs = START_TIMEOUT_MS): Promise<{ handles: HandedListener[]; held: HeldSlots[] }> {
  return new Promise((resolve, reject) => {
    const out: HandedListener[] = []
    let held: HeldSlots[] = []
    const timer = setTimeout(() => reject(new Error('takeover: the old process sent no listening sockets')), timeoutMs)
    const onMessage = (m: unknown, handle: unknown) => {
      if (!isMsg(m)) return
      const msg = m as ToNew
      if (msg.t === 'listener' && typeof handle === 'object' && handle !== null) {
        out.push({ handle, kind: msg.kind })
      } else if (msg.t === 'slots') {
        held = msg.held
      } else if (msg.t === 'listeners_done') {
        clearTimeout(timer)
        process.off('message', onMessage)
        resolve({ handles: out, held })
      }
    }
    process.on('message', onMessage)
    ;(process.send as (m: ToOld) => void)({ t: 'hello' })
  })
}

/**
 * Servers accepting on handed listening sockets. Connections they bring before the runtime serves
 * them wait in `early` (the listener takes them, as accepted first).
 */
export function adoptHandles(handed: readonly HandedListener[], s: Pick<Settings, 'listen_backlog' | 'unix_socket_dir' | 'listen_port'>): Inherited {
  const listeners: AdoptedServer[] = []
  let http: AdoptedServer | null = null
  for (const l of handed) {
    const pipeName = l.kind === 'unix' && s.unix_socket_dir !== '' ? socketPath(s.unix_socket_dir, s.listen_port) : null
    const server = l.handle instanceof net.Server ? l.handle : serverFromHandle(l.handle, s.listen_backlog, pipeName)
    const early: net.Socket[] = []
    const onEarly = (socket: net.Socket) => { early.push(socket) }
    server.on('connection', onEarly)
    const a: AdoptedServer = { server, isUnix: l.kind === 'unix', early, onEarly }
    if (l.kind === 'http') http = a
    else listeners.push(a)
  }
  return { listeners, http }
}

/** One process taking over: the old pooler's listening sockets, served here. */
export async function receiveInheritance(s: Pick<Settings, 'listen_backlog' | 'unix_socket_dir' | 'listen_port'>): Promise<Inherited> {
  return adoptHandles((await receiveHandles()).handles, s)
}

/**
 * The new process serves: take the old one's connections and clients as they come, send it the
 * cancels for keys not known here, and once it is gone open the control socket in its place.
 */
export function serveAsSuccessor(rt: Runtime, log: Logger): void {
  const send = (m: ToOld) => { process.send?.(m) }
  process.on('message', (m: unknown, handle: unknown) => {
    if (!isMsg(m)) return
    const msg = m as ToNew
    if (!(handle instanceof net.Socket)) return
    if (msg.t === 'conn') rt.acceptHanded(handle, msg.isUnix)
    else if (msg.t === 'client') rt.resumeClient(handle, msg.h)
  })
  rt.cancels.orElse = (pid, secret) => send({ t: 'cancel', pid, secret })
  process.once('disconnect', () => {
    rt.cancels.orElse = null
    log.info('takeover.alone', null, 'takeover: the old tidepool has exited; this one serves alone')
    if (rt.isShuttingDown) return
    new TakeoverControl(runtimeAsOld(rt), log).start().catch((err: unknown) => log.error('takeover.control_failed', null, `cannot open the takeover control socket: ${(err as Error).message}`))
  })
  send({ t: 'ready' })
}
