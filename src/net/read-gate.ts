// Whether a socket is read is decided in one place, because two parties have a say: the connection
// that owns it (backpressure, a client waiting for a server, a console query running) and SUSPEND,
// which stops reading every client and server socket except the console's until RESUME, whatever
// the connection wants meanwhile. Connections say what they want through setReading(); while their
// socket is held, the wish is only remembered, and applied on release.
// Must not: hold a socket nobody released (RESUME, or the console leaving, releases all).

import type net from 'node:net'

export class ReadGate {
  /** Held sockets → whether their connection wants them read. */
  private readonly held = new Map<net.Socket, boolean>()

  get isHolding(): boolean {
    return this.held.size > 0
  }

  /** The connection's wish: read `socket` or not. */
  setReading(socket: net.Socket, wanted: boolean): void {
    if (this.held.size > 0 && this.held.has(socket)) {
      this.held.set(socket, wanted)
      return
    }
    if (wanted) socket.resume()
    else socket.pause()
  }

  /** Stops reading `socket` until release(), keeping what its connection wanted. */
  hold(socket: net.Socket): void {
    if (this.held.has(socket)) return
    this.held.set(socket, !socket.isPaused())
    socket.pause()
  }

  /** Every held socket goes back to what its connection wants. */
  releaseAll(): void {
    const held = [...this.held]
    this.held.clear()
    for (const [socket, wanted] of held) if (wanted && !socket.destroyed) socket.resume()
  }
}
