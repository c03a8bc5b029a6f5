// Client connection slots, kept by the primary: max_client_conn, max_db_client_connections and
// max_user_client_connections count clients over all workers. A worker takes slots in chunks, so a
// login asks nothing of the primary until its worker's chunk runs out; it reports how many of its
// slots are in use whenever it asks or gives back. When a limit is reached, the worker that asks
// gets what the others hold unused (they are asked to give it back: what they last reported in use
// may be stale, so every other holder is asked), or is told no once they have all answered, or at
// once when no other worker holds any: a refused client waits one round trip at most.
// Invariant: per key, the slots held by all workers never exceed the limit last reported for it.
// Pure: no IPC, no timers; time comes in as arguments.

/** An ask still open after this long is answered no (a worker that does not answer a reclaim). */
export const CLIENT_ASK_TIMEOUT_MS = 1000

export type ClientAction =
  | { kind: 'grant'; worker: number; key: string; n: number }
  | { kind: 'deny'; worker: number; key: string }
  /** Give back every slot not in use. */
  | { kind: 'reclaim'; worker: number; key: string }

interface Entry {
  limit: number
  readonly held: Map<number, number>
  readonly used: Map<number, number>
  /** Asks waiting for others to give slots back, oldest first. */
  readonly queue: Array<{ worker: number; n: number; sinceMs: number }>
  /** Workers asked to give back and not yet answered. */
  readonly reclaiming: Set<number>
}

export class ClientLedger {
  private readonly entries = new Map<string, Entry>()

  held(worker: number, key: string): number {
    return this.entries.get(key)?.held.get(worker) ?? 0
  }

  total(key: string): number {
    const e = this.entries.get(key)
    let n = 0
    if (e !== undefined) for (const h of e.held.values()) n += h
    return n
  }

  /** `worker`, with `used` of its slots in use, asks for `n` more under `limit`. */
  ask(worker: number, key: string, limit: number, used: number, n: number, nowMs: number): ClientAction[] {
    const e = this.entry(key)
    e.limit = limit
    e.used.set(worker, used)
    const out: ClientAction[] = []
    const free = this.free(e)
    if (free > 0) {
      this.grant(e, key, worker, Math.min(n, free), out)
      return out
    }
    const givers = [...e.held.keys()].filter((v) => v !== worker)
    if (givers.length === 0) {
      out.push({ kind: 'deny', worker, key })
      return out
    }
    e.queue.push({ worker, n, sinceMs: nowMs })
    for (const v of givers) {
      if (e.reclaiming.has(v)) continue
      e.reclaiming.add(v)
      out.push({ kind: 'reclaim', worker: v, key })
    }
    return out
  }

  /** `worker` gave back `n` slots (0: it had none to spare) and now uses `used`. */
  release(worker: number, key: string, n: number, used: number, nowMs: number): ClientAction[] {
    const e = this.entries.get(key)
    if (e === undefined) return []
    e.reclaiming.delete(worker)
    e.used.set(worker, used)
    const left = (e.held.get(worker) ?? 0) - n
    if (left > 0) e.held.set(worker, left)
    else e.held.delete(worker)
    return this.serve(key, e, nowMs)
  }

  /** A worker is gone: its slots are free, its asks void. */
  dropWorker(worker: number, nowMs: number): ClientAction[] {
    const out: ClientAction[] = []
    for (const [key, e] of this.entries) {
      e.held.delete(worker)
      e.used.delete(worker)
      e.reclaiming.delete(worker)
      for (let i = e.queue.length - 1; i >= 0; i--) if (e.queue[i].worker === worker) e.queue.splice(i, 1)
      out.push(...this.serve(key, e, nowMs))
    }
    return out
  }

  /** Asks open longer than CLIENT_ASK_TIMEOUT_MS are answered no. */
  tick(nowMs: number): ClientAction[] {
    const out: ClientAction[] = []
    for (const [key, e] of this.entries) {
      while (e.queue.length > 0 && nowMs - e.queue[0].sinceMs >= CLIENT_ASK_TIMEOUT_MS) {
        const q = e.queue.shift() as { worker: number }
        out.push({ kind: 'deny', worker: q.worker, key })
      }
    }
    return out
  }

  private serve(key: string, e: Entry, nowMs: number): ClientAction[] {
    const out: ClientAction[] = []
    while (e.queue.length > 0) {
      const q = e.queue[0]
      const free = this.free(e)
      if (free > 0) {
        e.queue.shift()
        this.grant(e, key, q.worker, Math.min(q.n, free), out)
      } else if (e.reclaiming.size === 0 || nowMs - q.sinceMs >= CLIENT_ASK_TIMEOUT_MS) {
        e.queue.shift()
        out.push({ kind: 'deny', worker: q.worker, key })
      } else {
        break
      }
    }
    if (e.held.size === 0 && e.queue.length === 0) this.entries.delete(key)
    return out
  }

  private free(e: Entry): number {
    let held = 0
    for (const h of e.held.values()) held += h
    return e.limit - held
  }

  private grant(e: Entry, key: string, worker: number, n: number, out: ClientAction[]): void {
    e.held.set(worker, (e.held.get(worker) ?? 0) + n)
    out.push({ kind: 'grant', worker, key, n })
  }

  private entry(key: string): Entry {
    let e = this.entries.get(key)
    if (e === undefined) {
      e = { limit: 0, held: new Map(), used: new Map(), queue: [], reclaiming: new Set() }
      this.entries.set(key, e)
    }
    return e
  }
}
