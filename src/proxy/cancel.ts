// Cancel keys. Each client gets a BackendKeyData of tidepool's own; a CancelRequest that presents
// it is forwarded, on a fresh connection, with the real key of the server the client is linked to
// at that moment. A key of a client that has gone, or is between transactions, is dropped quietly:
// PostgreSQL itself never answers a CancelRequest, and nothing may crash on it (pgbouncer#801).
// With workers, the top bits of a key's pid name the worker that issued it (as PgBouncer's peer_id
// bits name a process), so a CancelRequest that lands on another worker is handed to the owner.
// A forwarded cancel reaches only the query of the client whose key it carries: the target checks
// again once connected (`begin`) and holds its server back from reuse until PostgreSQL has closed
// the cancel connection (`end`), as PgBouncer's being_canceled state does.
// Must not: keep clients alive (unregister on close) or log the secret.

import type { Settings } from '../config/settings.ts'
import { dial } from '../net/dial.ts'
import { randomInt } from 'node:crypto'
import * as build from '../protocol/build.ts'

/** Where a CancelRequest goes and with which key. */
export interface CancelTarget {
  host: string
  port: number
  pid: number
  secret: number
  /** Connected, just before the packet goes: false drops it (the query it was meant for has ended). */
  begin?(): boolean
  /**
   * The connection of a begun cancel is gone; `isConfirmed`: PostgreSQL closed it after reading the
   * packet. Otherwise (timeout, error) the cancel may still arrive later.
   */
  end?(isConfirmed: boolean): void
}

export interface Cancellable {
  readonly cancelSecret: number
  /** The server that runs this client's query now, if any: where and with which key. */
  cancelTarget(): CancelTarget | null
}

/** Bits of a worker's key pid below its index: 24 random bits stay, the index takes the next 7. */
export const WORKER_KEY_SHIFT = 24

/** This process is one worker of several: which one, and how a key of another worker reaches it. */
export interface CancelRouting {
  readonly index: number
  forward(owner: number, pid: number, secret: number): void
}

/** The worker whose key this is (WORKER_KEY_SHIFT). */
export function keyOwner(pid: number): number {
  return pid >>> WORKER_KEY_SHIFT
}

export class CancelRegistry {
  private readonly byPid = new Map<number, Cancellable>()
  private readonly pidBase: number
  private readonly pidSpan: number

  /**
   * `draw`: an integer in [min, max), crypto.randomInt; a test passes its own to force a collision.
   * `routing`: set in a worker, whose pids then carry its index.
   */
  constructor(
    private readonly draw: (min: number, max: number) => number = (min, max) => randomInt(min, max),
    private readonly routing: CancelRouting | null = null,
  ) {
    this.pidBase = routing === null ? 0 : routing.index << WORKER_KEY_SHIFT
    this.pidSpan = routing === null ? 0x80000000 : 1 << WORKER_KEY_SHIFT
  }

  /**
   * A fresh (pid, secret) pair for a new client, both random (62 bits of the 64 a key has, as
   * PgBouncer): a sequential pid let one client guess its neighbours' half of the key. The pid is
   * drawn again while it is in use, so a pid names one client; 0 is never issued (close() reads it as "none").
   * A worker's pids keep 24 random bits under its index (53 random bits in all).
   */
  issue(): { pid: number; secret: number } {
    let pid = this.pidBase + this.draw(1, this.pidSpan)
    while (this.byPid.has(pid)) pid = this.pidBase + this.draw(1, this.pidSpan)
    return { pid, secret: this.draw(0, 0x80000000) }
  }

  register(pid: number, c: Cancellable): void {
    this.byPid.set(pid, c)
  }

  unregister(pid: number): void {
    this.byPid.delete(pid)
  }

  /**
   * Returns what happened, for the log line: 'forwarded', 'unknown key', 'no query running', or
   * 'sent to its worker' (a key another worker issued: that worker decides).
   */
  cancel(pid: number, secret: number, connectTimeoutMs: number): 'forwarded' | 'unknown key' | 'no query running' | 'sent to its worker' {
    const r = this.routing
    if (r !== null && keyOwner(pid) !== r.index) {
      r.forward(keyOwner(pid), pid, secret)
      return 'sent to its worker'
    }
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

/** How long a forwarded cancel may take: cancel_wait_timeout bounds it all, server_connect_timeout the connect. */
export function cancelTimeoutMs(st: Pick<Settings, 'server_connect_timeout' | 'cancel_wait_timeout'>): number {
  const limits = [st.server_connect_timeout, st.cancel_wait_timeout].filter((x) => x > 0)
  return limits.length === 0 ? 0 : Math.min(...limits) * 1000
}

/** Sends a CancelRequest to a server on a connection of its own; failures are silent, as in libpq. */
export function sendCancel(t: CancelTarget, connectTimeoutMs: number): void {
  const sock = dial(t.host, t.port)
  let isBegun = false
  let isConfirmed = false
  if (connectTimeoutMs > 0) sock.setTimeout(connectTimeoutMs, () => sock.destroy())
  sock.on('error', () => sock.destroy())
  sock.on('connect', () => {
    if (t.begin !== undefined && !t.begin()) return void sock.destroy()
    isBegun = true
    sock.end(build.cancelRequest(t.pid, t.secret))
    sock.resume() // PostgreSQL sends nothing; reading lets its close arrive as 'end'
  })
  // The server closes the connection once it has signalled the backend (PgBouncer waits for the same).
  sock.on('end', () => { isConfirmed = true })
  sock.on('close', () => { if (isBegun) t.end?.(isConfirmed) })
}
