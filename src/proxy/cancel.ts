// Cancel keys. Each client gets a BackendKeyData of tidepool's own; a CancelRequest that presents
// it is forwarded, on a fresh connection, with the real key of the server the client is linked to
// at that moment. A key of a client that has gone, or is between transactions, is dropped quietly:
// PostgreSQL itself never answers a CancelRequest, and nothing may crash on it (pgbouncer#801).
// A key says who issued it, so a CancelRequest that lands on the wrong process finds its owner:
//   pid bit 31       0 (PostgreSQL's pids are positive; pg_basebackup once choked on negative ones)
//   pid bits 24–30   the worker index, with workers (else random)
//   pid bits 8–23    the peer id, when peering is on (else random): PgBouncer's key bytes 1 and 2,
//                    low byte first, so PgBouncer and tidepool peers read each other's keys
//   pid bits 0–7     random
//   secret bits 0–1  when peering is on, the forwarding TTL (3 as issued, one less per forward;
//                    PgBouncer's CANCELLATION_TTL_MASK); else random
//   secret bits 2–31 random
// A key of another peer goes to that peer (peer-pools.ts), one of this process's other workers
// to that worker; only then is the key looked up here. Keys are indexed by their secret, which is
// drawn again while in use: with a peer id and a worker index in it the pid keeps too few random
// bits to name a client alone (8 of them).
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
  /** The connection ended (refused, reset, timed out) before the other side confirmed: why. */
  failed?(reason: string): void
}

export interface Cancellable {
  readonly cancelPid: number
  readonly cancelSecret: number
  /** The server that runs this client's query now, if any: where and with which key. */
  cancelTarget(): CancelTarget | null
}

/** Bits of a worker's key pid below its index: 24 bits stay, the index takes the next 7. */
export const WORKER_KEY_SHIFT = 24

/** Where the peer id sits in a key's pid (bits 8–23). */
const PEER_ID_BITS = 0x00ffff00
/** The forwarding TTL in a peered key's secret: at most 3 forwards, as in PgBouncer. */
export const CANCEL_TTL_MASK = 0x3

/** This process is one worker of several: which one, and how a key of another worker reaches it. */
export interface CancelRouting {
  readonly index: number
  forward(owner: number, pid: number, secret: number): void
}

/** Peering ([peers], peer_id, or a fleet's peer ids): this process's id, and the way to another peer. */
export interface CancelPeering {
  /** 0: peering is off. */
  ownId(): number
  /** Hands the key (its TTL already lowered) to the peer `peerId`; says what happened. */
  forward(peerId: number, pid: number, secret: number): PeerForwardOutcome
}

export type PeerForwardOutcome = 'sent to its peer' | 'queued for its peer' | 'no such peer' | 'peer queue full'

export type CancelOutcome = 'forwarded' | 'unknown key' | 'no query running' | 'sent to its worker' | PeerForwardOutcome | 'forwarded too often' | 'sent to the old process'

/** The worker whose key this is (WORKER_KEY_SHIFT). */
export function keyOwner(pid: number): number {
  return pid >>> WORKER_KEY_SHIFT
}

/** The peer id a key's pid carries (PgBouncer's layout: key byte 1 low, byte 2 high). */
export function keyPeerId(pid: number): number {
  return ((pid >>> 16) & 0xff) | (((pid >>> 8) & 0xff) << 8)
}

/** `pid` with `peerId` written into its peer bits. */
export function withPeerId(pid: number, peerId: number): number {
  return (pid & ~PEER_ID_BITS) | ((peerId & 0xff) << 16) | (((peerId >>> 8) & 0xff) << 8)
}

export class CancelRegistry {
  private readonly bySecret = new Map<number, Cancellable>()
  /**
   * During an online restart, in the new process: where a key this process does not know goes (the
   * old process, whose clients finish their transactions there). Null otherwise.
   */
  orElse: ((pid: number, secret: number) => void) | null = null
  private readonly pidBase: number
  private readonly pidSpan: number

  /**
   * `draw`: an integer in [min, max), crypto.randomInt; a test passes its own to force a collision.
   * `routing`: set in a worker, whose pids then carry its index. `peering`: set when this process
   * may be peered (its id may still be 0: off).
   */
  constructor(
    private readonly draw: (min: number, max: number) => number = (min, max) => randomInt(min, max),
    private readonly routing: CancelRouting | null = null,
    private readonly peering: CancelPeering | null = null,
  ) {
    this.pidBase = routing === null ? 0 : routing.index << WORKER_KEY_SHIFT
    this.pidSpan = routing === null ? 0x80000000 : 1 << WORKER_KEY_SHIFT
  }

  /**
   * A fresh (pid, secret) pair for a new client, random but for the owner's bits (62 bits of the
   * 64 a key has, as PgBouncer; 53 with workers; with a peer id 44, or 37 with workers too: PgBouncer
   * keeps 45). The secret is drawn again while in use, so a secret names one client; the pid is
   * never 0 (close() reads it as "none").
   */
  issue(): { pid: number; secret: number } {
    const peerId = this.peering?.ownId() ?? 0
    let pid = this.pidBase + this.draw(1, this.pidSpan)
    if (peerId > 0) pid = withPeerId(pid, peerId)
    const ttl = peerId > 0 ? CANCEL_TTL_MASK : 0
    let secret = this.draw(0, 0x80000000) | ttl
    while (this.bySecret.has(secret)) secret = this.draw(0, 0x80000000) | ttl
    return { pid, secret }
  }

  register(c: Cancellable): void {
    this.bySecret.set(c.cancelSecret, c)
  }

  unregister(c: Cancellable): void {
    if (this.bySecret.get(c.cancelSecret) === c) this.bySecret.delete(c.cancelSecret)
  }

  /** What happened, for the log line: a key of another peer or worker is handed on, that one decides. */
  cancel(pid: number, secret: number, connectTimeoutMs: number): CancelOutcome {
    const ownId = this.peering?.ownId() ?? 0
    let key = secret
    if (ownId > 0) {
      const peerId = keyPeerId(pid)
      if (peerId !== ownId) {
        // A key this worker issued before peering began (or before peer_id changed) is still its own.
        if (this.bySecret.get(secret)?.cancelPid === pid) return this.cancelLocal(pid, secret, connectTimeoutMs)
        if ((secret & CANCEL_TTL_MASK) === 0) return 'forwarded too often'
        return (this.peering as CancelPeering).forward(peerId, pid, secret - 1)
      }
      // Issued with every TTL bit set; forwards on the way took some.
      key = secret | CANCEL_TTL_MASK
    }
    const r = this.routing
    // A client an online restart moved here keeps the key another worker (or pooler) issued.
    if (r !== null && keyOwner(pid) !== r.index && this.bySecret.get(key)?.cancelPid !== pid) {
      r.forward(keyOwner(pid), pid, key)
      return 'sent to its worker'
    }
    return this.cancelLocal(pid, key, connectTimeoutMs)
  }

  private cancelLocal(pid: number, secret: number, connectTimeoutMs: number): CancelOutcome {
    const c = this.bySecret.get(secret)
    if (c === undefined || c.cancelPid !== pid) {
      if (this.orElse === null) return 'unknown key'
      this.orElse(pid, secret)
      return 'sent to the old process'
    }
    const t = c.cancelTarget()
    if (t === null) return 'no query running'
    sendCancel(t, connectTimeoutMs)
    return 'forwarded'
  }

  get size(): number {
    return this.bySecret.size
  }
}

/** How long a forwarded cancel may take: cancel_wait_timeout bounds it all, server_connect_timeout the connect. */
export function cancelTimeoutMs(st: Pick<Settings, 'server_connect_timeout' | 'cancel_wait_timeout'>): number {
  const limits = [st.server_connect_timeout, st.cancel_wait_timeout].filter((x) => x > 0)
  return limits.length === 0 ? 0 : Math.min(...limits) * 1000
}

/**
 * Sends a CancelRequest on a connection of its own; failures reach only `t.failed` (a server's
 * are silent, as in libpq). `timeoutMs` bounds every wait: the connect, and the close after the packet.
 */
export function sendCancel(t: CancelTarget, timeoutMs: number): void {
  const sock = dial(t.host, t.port)
  let isBegun = false
  let isConfirmed = false
  /** begin() said no: nothing failed. */
  let isDropped = false
  let failure: string | null = null
  if (timeoutMs > 0) {
    sock.setTimeout(timeoutMs, () => {
      failure ??= `no answer in ${timeoutMs} ms`
      sock.destroy()
    })
  }
  sock.on('error', (err) => {
    failure ??= err.message
    sock.destroy()
  })
  sock.on('connect', () => {
    if (t.begin !== undefined && !t.begin()) {
      isDropped = true
      return void sock.destroy()
    }
    isBegun = true
    sock.end(build.cancelRequest(t.pid, t.secret))
    sock.resume() // PostgreSQL sends nothing; reading lets its close arrive as 'end'
  })
  // The server closes the connection once it has signalled the backend (PgBouncer waits for the same).
  sock.on('end', () => { isConfirmed = true })
  sock.on('close', () => {
    if (isBegun) t.end?.(isConfirmed)
    if (!isConfirmed && !isDropped) t.failed?.(failure ?? 'closed before the packet was confirmed')
  })
}
