// A TCP proxy on 127.0.0.1 that sits between tidepool and PostgreSQL and misbehaves on request:
// latency, a stall, a cut after N bytes from the server, refused connections, or a reset of
// every connection. Faults in user space, so tests need neither root nor netem.
//
// Invariants: bytes leave each direction in the order they arrived, whatever the delay; a stall
// holds bytes (and pauses reading, so TCP backpressure reaches the sender) without closing
// anything; a cut delivers exactly cutAfterBytes bytes from the server, then closes both sides.
// Must not: listen beyond loopback, or be used on a hot path (it allocates per chunk).

import { createConnection, createServer, type Server, type Socket } from 'node:net'

export interface FaultMode {
  /** added to every chunk in each direction (so a round trip gains twice this) */
  delayMs?: number
  /** hold all traffic, keeping every socket open, until a set() without stall */
  stall?: boolean
  /** hold the traffic of connections opened from now on (both ways, sockets kept open) while
   *  older ones flow, until a set() without it: a cancel request stuck on its way, say */
  holdNew?: boolean
  /** close a connection once this many bytes came from the server, counted from its start or
   *  from this set() call, whichever is later */
  cutAfterBytes?: number
  /** close each new connection at once */
  refuse?: boolean
  /** one-shot: reset (RST) every current connection on both sides */
  resetAll?: boolean
}

export interface FaultProxy {
  port: number
  /** replaces the whole mode: a key left out turns its fault off, so set({}) heals everything */
  set(mode: FaultMode): void
  /** client connections currently open through the proxy */
  connections(): number
  close(): Promise<void>
}

interface Queued { atMs: number; chunk: Buffer }

/** One direction of a link: what src sent that dst has not been given yet. */
class Flow {
  readonly queue: Queued[] = []
  timer: NodeJS.Timeout | null = null
  srcEnded = false
  dstEnded = false
  dstBlocked = false

  constructor(readonly src: Socket, readonly dst: Socket, readonly fromServer: boolean) {}
}

class Link {
  readonly up: Flow
  readonly down: Flow
  serverBytes = 0
  closed = false
  /** opened under holdNew: nothing passes until holdNew is lifted */
  isHeld = false

  constructor(readonly client: Socket, readonly server: Socket) {
    this.up = new Flow(client, server, false)
    this.down = new Flow(server, client, true)
  }
}

class Proxy implements FaultProxy {
  port = 0
  private mode: FaultMode = {}
  private readonly links = new Set<Link>()
  private readonly server: Server

  constructor(private readonly target: { host: string; port: number }) {
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket))
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(0, '127.0.0.1', () => {
        this.server.removeListener('error', reject)
        const address = this.server.address()
        if (address !== null && typeof address !== 'string') this.port = address.port
        resolve()
      })
    })
  }

  set(mode: FaultMode): void {
    const { resetAll, ...persistent } = mode
    this.mode = persistent
    if (resetAll === true) {
      for (const link of this.links) this.drop(link, true)
    }
    for (const link of this.links) {
      link.serverBytes = 0
      if (persistent.holdNew !== true) link.isHeld = false
      this.pump(link, link.up)
      this.pump(link, link.down)
    }
  }

  connections(): number {
    return this.links.size
  }

  close(): Promise<void> {
    for (const link of this.links) this.drop(link, false)
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private onConnection(client: Socket): void {
    client.on('error', () => { /* the 'close' that follows drops the link */ })
    if (this.mode.refuse === true) {
      client.destroy()
      return
    }
    const server = createConnection({ host: this.target.host, port: this.target.port, allowHalfOpen: true })
    server.on('error', () => {})
    client.setNoDelay(true)
    server.setNoDelay(true)
    const link = new Link(client, server)
    link.isHeld = this.mode.holdNew === true
    this.links.add(link)
    for (const flow of [link.up, link.down]) {
      flow.src.on('data', (chunk: Buffer) => {
        flow.queue.push({ atMs: Date.now() + (this.mode.delayMs ?? 0), chunk })
        this.pump(link, flow)
      })
      flow.src.on('end', () => {
        flow.srcEnded = true
        this.pump(link, flow)
      })
      flow.dst.on('drain', () => {
        flow.dstBlocked = false
        this.pump(link, flow)
      })
      flow.src.on('close', (hadError) => {
        // An abrupt close on one side is passed on as one on the other, as a network would.
        if (hadError) this.drop(link, true)
        else if (!flow.srcEnded) {
          flow.srcEnded = true
          this.pump(link, flow)
        }
        if (client.destroyed && server.destroyed) this.drop(link, false)
      })
    }
  }

  // Hands dst every queued chunk whose time has come, unless stalled or dst is backed up.
  private pump(link: Link, flow: Flow): void {
    if (link.closed) return
    const stalled = this.mode.stall === true || link.isHeld
    while (!stalled && !flow.dstBlocked && flow.queue.length > 0) {
      const head = flow.queue[0]!
      const waitMs = head.atMs - Date.now()
      if (waitMs > 0) {
        if (flow.timer === null) {
          flow.timer = setTimeout(() => { flow.timer = null; this.pump(link, flow) }, waitMs)
        }
        break
      }
      flow.queue.shift()
      if (!this.deliver(link, flow, head.chunk)) return
    }
    if (!stalled && flow.queue.length === 0 && flow.srcEnded && !flow.dstEnded) {
      flow.dstEnded = true
      flow.dst.end()
    }
    // Reading stops while stalled or while dst is backed up, so TCP pushes back on the sender.
    // Delayed bytes do not stop it: latency must not turn into a bandwidth cap.
    const hold = stalled || flow.dstBlocked
    if (hold && !flow.src.isPaused()) flow.src.pause()
    else if (!hold && flow.src.isPaused()) flow.src.resume()
  }

  /** false when the link was cut */
  private deliver(link: Link, flow: Flow, chunk: Buffer): boolean {
    const cut = this.mode.cutAfterBytes
    if (flow.fromServer && cut !== undefined && link.serverBytes + chunk.length >= cut) {
      const part = chunk.subarray(0, cut - link.serverBytes)
      link.serverBytes = cut
      link.closed = true
      this.links.delete(link)
      this.clearTimers(link)
      link.server.destroy()
      link.client.end(part, () => link.client.destroy())
      return false
    }
    if (flow.fromServer) link.serverBytes += chunk.length
    if (!flow.dst.write(chunk)) flow.dstBlocked = true
    return true
  }

  private drop(link: Link, reset: boolean): void {
    if (!link.closed) {
      link.closed = true
      this.clearTimers(link)
    }
    this.links.delete(link)
    for (const s of [link.client, link.server]) {
      if (s.destroyed) continue
      // resetAndDestroy needs a connected socket; one still connecting can only be destroyed.
      if (reset && !s.connecting) s.resetAndDestroy()
      else s.destroy()
    }
  }

  private clearTimers(link: Link): void {
    for (const f of [link.up, link.down]) {
      if (f.timer !== null) clearTimeout(f.timer)
      f.timer = null
      f.queue.length = 0
    }
  }
}

export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  const proxy = new Proxy(target)
  await proxy.listen()
  return proxy
}
