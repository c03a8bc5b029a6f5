// Where clients connect: one TCP server per listen_addr, plus the unix socket .s.PGSQL.<port> in
// unix_socket_dir (mode and group from the settings). While SUSPEND holds it, new connections wait
// in a queue of our own, bounded by listen_backlog as the kernel's would be, and start at RESUME.
// In a worker (src/workers/) every worker listens on the same addresses: through node:cluster,
// whose primary owns the sockets (and the unix socket file), or with SO_REUSEPORT (Node >= 22.12),
// where each worker binds its own TCP socket and the kernel spreads connections.
// Must not: speak the protocol; a connection is handed to `accept` as a bare socket.

import net from 'node:net'
import fs from 'node:fs'
import type { Settings } from '../config/settings.ts'
import type { Logger } from '../observe/log.ts'
import { TidepoolError } from '../util/errors.ts'
import { socketPath } from './dial.ts'
import { closeQuietly, fdOf } from './socket-fd.ts'

type ListenSettings = Pick<Settings, 'listen_addr' | 'listen_port' | 'listen_backlog' | 'unix_socket_dir' | 'unix_socket_mode' | 'unix_socket_group'>

/** How a worker of several listens; null in a single process. */
export interface SharedListen {
  /** Each worker binds its own TCP sockets with SO_REUSEPORT instead of sharing the primary's. */
  readonly reusePort: boolean
  /** The port to bind instead of listen_port (listen_port = 0 under reusePort: the first worker's). */
  readonly port: number | null
}

/** A listening socket another tidepool handed over (online restart), with what it accepted before we took it. */
export interface AdoptedServer {
  readonly server: net.Server
  readonly isUnix: boolean
  readonly early: net.Socket[]
  readonly onEarly: (socket: net.Socket) => void
}

export class Listener {
  private readonly servers: net.Server[] = []
  /** After an online restart handed the listening sockets over: where new connections go instead. */
  private redirect: ((socket: net.Socket, isUnix: boolean) => void) | null = null
  /** A worker of a pooler being taken over no longer accepts: the new pooler's workers do (stopAccepting). */
  private isStopped = false
  private unixSocketPath: string | null = null
  private unixServer: net.Server | null = null
  private isHolding = false
  /** Connections that arrived during SUSPEND: their sessions start at RESUME. */
  private readonly queued: Array<{ socket: net.Socket; isUnix: boolean }> = []

  constructor(
    /** `isUnix`: the connection came in on the unix socket (no TLS is asked of it, as in PgBouncer). */
    private readonly accept: (socket: net.Socket, isUnix: boolean) => void,
    private readonly settings: () => ListenSettings,
    private readonly log: Logger,
    private readonly shared: SharedListen | null = null,
  ) {}

  /** Binds every address; resolves once all are listening, rejects on the first that cannot. */
  async listen(): Promise<void> {
    const s = this.settings()
    const port = this.shared?.port ?? s.listen_port
    const reusePort = this.shared?.reusePort === true
    const onConnection = (socket: net.Socket, isUnix: boolean) => this.onConnection(socket, isUnix)
    const addrs = s.listen_addr.split(',').map((a) => a.trim()).filter((a) => a !== '')
    for (const addr of addrs) {
      const server = net.createServer((socket) => onConnection(socket, false))
      const host = addr === '*' ? undefined : addr
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        // reusePort is Node >= 22.12's (absent from Node 20's types); exclusive keeps the bind in this worker.
        const opts: net.ListenOptions & { reusePort?: boolean } = reusePort
          ? { host, port, backlog: s.listen_backlog, reusePort: true, exclusive: true }
          : { host, port, backlog: s.listen_backlog }
        server.listen(opts, () => {
          server.off('error', reject)
          resolve()
        })
      })
      server.on('error', (err) => this.log.error('listener.failed', null, `listener error: ${err.message}`))
      this.servers.push(server)
    }
    if (s.unix_socket_dir !== '') {
      const path = socketPath(s.unix_socket_dir, this.port || port)
      // A worker's unix socket is the primary's (cluster shares it): the primary removed any stale file.
      if (this.shared === null) removeStaleSocket(path)
      const server = net.createServer((socket) => onConnection(socket, true))
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen({ path, backlog: s.listen_backlog }, () => resolve())
      })
      fs.chmodSync(path, s.unix_socket_mode)
      if (s.unix_socket_group !== '') fs.chownSync(path, -1, groupId(s.unix_socket_group))
      this.unixSocketPath = path
      this.unixServer = server
      this.servers.push(server)
    }
  }

  private onConnection(socket: net.Socket, isUnix: boolean): void {
    socket.on('error', () => {}) // ClientConn installs the real handler; this covers the gap.
    if (this.redirect !== null) this.redirect(socket, isUnix)
    else if (this.isHolding) this.enqueue(socket, isUnix)
    else this.accept(socket, isUnix)
  }

  /**
   * Online restart, new process: serve the listening sockets the old process handed over instead
   * of binding (both processes accept from the same sockets meanwhile, so none is refused). The
   * unix socket file is this process's to remove at its shutdown from now on.
   */
  adopt(adopted: readonly AdoptedServer[]): void {
    const s = this.settings()
    for (const a of adopted) {
      a.server.off('connection', a.onEarly)
      a.server.on('connection', (socket: net.Socket) => this.onConnection(socket, a.isUnix))
      a.server.on('error', (err) => this.log.error('listener.failed', null, `listener error: ${err.message}`))
      this.servers.push(a.server)
      if (a.isUnix) this.unixServer = a.server
      for (const socket of a.early.splice(0)) this.onConnection(socket, a.isUnix)
    }
    if (s.unix_socket_dir !== '' && adopted.some((a) => a.isUnix)) this.unixSocketPath = socketPath(s.unix_socket_dir, this.port || s.listen_port)
  }

  /**
   * Online restart, old process: the listening sockets (TCP, then the unix socket), to send to the
   * new process; from now on what this process still accepts goes to `to`, unread. They are never
   * closed here: closing the unix one would remove its file, which the new process serves.
   */
  handOver(to: (socket: net.Socket, isUnix: boolean) => void): Array<{ server: net.Server; isUnix: boolean }> {
    this.redirect = to
    for (const l of this.servers) (l as net.Server & { pauseOnConnect: boolean }).pauseOnConnect = true
    return this.listening
  }

  /**
   * Online restart with workers, old worker: stop accepting, once the new pooler serves copies of
   * these sockets. Quietly (closeQuietly): the kernel's socket and the unix socket file stay theirs.
   */
  stopAccepting(): void {
    this.isStopped = true
    for (const l of this.servers) closeQuietly(l)
  }

  /** The listening servers and which is the unix socket (to hand over). */
  get listening(): Array<{ server: net.Server; isUnix: boolean }> {
    return this.servers.map((server) => ({ server, isUnix: this.unixServer === server }))
  }

  get isHandedOver(): boolean {
    return this.redirect !== null || this.isStopped
  }

  /** The TCP port actually bound (useful with listen_port = 0). */
  get port(): number {
    for (const l of this.servers) {
      const a = l.address()
      if (a !== null && typeof a === 'object') return a.port
    }
    return 0
  }

  /** For the start-up log line: `127.0.0.1:6432, unix:/tmp/.s.PGSQL.6432`. */
  describe(): string {
    const parts: string[] = []
    for (const l of this.servers) {
      const a = l.address()
      parts.push(typeof a === 'string' ? `unix:${a}` : a === null ? (this.unixSocketPath !== null ? `unix:${this.unixSocketPath}` : '?') : `${a.address}:${a.port}`)
    }
    return parts.join(', ') || '(nothing)'
  }

  /** The listening sockets (SHOW FDS's 'pooler' rows). */
  sockets(): Array<{ fd: number; addr: string; port: number }> {
    return this.servers.map((l) => {
      const a = l.address()
      const fd = fdOf(l)
      return typeof a === 'string' || a === null ? { fd, addr: 'unix', port: this.port } : { fd, addr: a.address, port: a.port }
    })
  }

  /** SUSPEND: new connections queue instead of starting. */
  hold(): void {
    this.isHolding = true
  }

  /** RESUME: queued connections start now, or are dropped when the pooler is shutting down. */
  release(isShuttingDown: boolean): void {
    this.isHolding = false
    for (const { socket, isUnix } of this.queued.splice(0)) {
      if (socket.destroyed) continue
      if (isShuttingDown) socket.destroy()
      else this.accept(socket, isUnix)
    }
  }

  /** Stops accepting; the unix socket file stays until removeSocketFile (shutdown's end). */
  close(): void {
    if (this.isHandedOver) return
    for (const l of this.servers) if (l.listening) l.close()
  }

  /**
   * SHUTDOWN WAIT_FOR_*: TCP stops accepting, the unix socket goes on until close() (PgBouncer
   * keeps it open during a shutdown, for admin console logins only; the login refuses the rest).
   */
  closeTcp(): void {
    if (this.isHandedOver) return
    for (const l of this.servers) if (l.listening && l !== this.unixServer) l.close()
  }

  removeSocketFile(): void {
    if (this.isHandedOver) return
    if (this.unixSocketPath !== null && this.shared === null) fs.rmSync(this.unixSocketPath, { force: true })
  }

  private enqueue(socket: net.Socket, isUnix: boolean): void {
    // The kernel's backlog would refuse past listen_backlog; so does ours.
    if (this.queued.length >= this.settings().listen_backlog) socket.destroy()
    else this.queued.push({ socket, isUnix })
  }
}

/** Removes a socket file left by a process that died; none there is fine. */
export function removeStaleSocket(path: string): void {
  try {
    fs.unlinkSync(path)
  } catch {
    // No stale socket file: nothing to remove.
  }
}

/** A group's id from its name or number, read from /etc/group (Node has no getgrnam). */
export function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group)
  for (const line of fs.readFileSync('/etc/group', 'utf8').split('\n')) {
    const f = line.split(':')
    if (f[0] === group && f.length >= 3) return Number(f[2])
  }
  throw new TidepoolError('TP_CONFIG_INVALID', `unix_socket_group: no such group: ${group}`)
}
