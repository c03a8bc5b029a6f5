// Cancel keys. Each client gets a BackendKeyData of tidepool's own; a CancelRequest that presents
// it is forwarded, on a fresh connection, with the real key of the server the client is linked to
// at that moment. A key of a client that has gone, or is between transactions, is dropped quietly:
// PostgreSQL itself never answers a CancelRequest, and nothing may crash on it (pgbouncer#801).
// Must not: keep clients alive (unregister on close) or log the secret.

import { dial } from '../net/dial.ts'
import { randomInt } from 'node:crypto'
import * as build from '../protocol/build.ts'

export interface Cancellable {
  readonly cancelSecret: number
  /** The server that runs this client's query now, if any: where and with which key. */
  cancelTarget(): { host: string; port: number; pid: number; secret: number } | null
}

export class CancelRegistry {
  private readonly byPid = new Map<number, Cancellable>()

  /** `draw`: an integer in [min, max), crypto.randomInt; a test passes its own to force a collision. */
  constructor(private readonly draw: (min: number, max: number) => number = (min, max) => randomInt(min, max)) {}

  /**
   * A fresh (pid, secret) pair for a new client, both random (62 bits of the 64 a key has, as
   * PgBouncer): a sequential pid let one client guess its neighbours' half of the key. The pid is
   * drawn again while it is in use, so a pid names one client; 0 is never issued (close() reads it as "none").
   */
  issue(): { pid: number; secret: number } {
    let pid = this.draw(1, 0x80000000)
    while (this.byPid.has(pid)) pid = this.draw(1, 0x80000000)
    return { pid, secret: this.draw(0, 0x80000000) }
  }

  register(pid: number, c: Cancellable): void {
    this.byPid.set(pid, c)
  }

  unregister(pid: number): void {
    this.byPid.delete(pid)
  }

  /** Returns what happened, for the log line: 'forwarded', 'unknown key' or 'no query running'. */
  cancel(pid: number, secret: number, connectTimeoutMs: number): 'forwarded' | 'unknown key' | 'no query running' {
    const c = this.byPid.get(pid)
    if (c === undefined || c.cancelSecret !== secret) return 'unknown key'
    const t = c.cancelTarget()
    if (t === null) return 'no query running'
    sendCancel(t, connectTimeoutMs)
    return 'forwarded'
  }

  get size(): number {
    return this.byPid.size
  }
}

/** Sends a CancelRequest to a server on a connection of its own; failures are silent, as in libpq. */
export function sendCancel(t: { host: string; port: number; pid: number; secret: number }, connectTimeoutMs: number): void {
  const sock = dial(t.host, t.port)
  if (connectTimeoutMs > 0) sock.setTimeout(connectTimeoutMs, () => sock.destroy())
  sock.on('error', () => sock.destroy())
  sock.on('connect', () => sock.end(build.cancelRequest(t.pid, t.secret)))
}
