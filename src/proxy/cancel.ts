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
  private nextPid = randomInt(1, 1 << 30)

  /** A fresh (pid, secret) pair for a new client. */
  issue(): { pid: number; secret: number } {
    let pid = this.nextPid
    while (this.byPid.has(pid)) pid = pid >= 0x7ffffffe ? 1 : pid + 1
    this.nextPid = pid >= 0x7ffffffe ? 1 : pid + 1
    return { pid, secret: randomInt(0, 0x7fffffff) }
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
