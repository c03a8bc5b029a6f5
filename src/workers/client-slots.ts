// A worker's side of the client ledger (client-ledger.ts): client slots taken in chunks from the
// primary, so that most logins are counted here without a message, and a login that finds its
// worker's chunk used up waits one round trip for more (or for the primary's no).
// Must not: keep a login waiting longer than the primary's answer; slots not in use go back at
// the sweep beyond one spare chunk, and at once when the primary asks for them.

import type { ClientSlots } from '../proxy/context.ts'
import type { ToPrimary } from './ipc.ts'

interface Slots {
  held: number
  used: number
  limit: number
  isAsking: boolean
  readonly waiters: Array<(ok: boolean) => void>
}

export class WorkerClientSlots implements ClientSlots {
  private readonly slots = new Map<string, Slots>()

  constructor(private readonly count: number, private readonly send: (m: ToPrimary) => void) {}

  take(key: string, limit: number): boolean | Promise<boolean> {
    const s = this.slotsOf(key)
    s.limit = limit
    if (limit <= 0) {
      s.used++
      return true
    }
    if (s.used < s.held && s.waiters.length === 0) {
      s.used++
      if (s.held - s.used <= this.chunk(limit) / 2) this.ask(key, s)
      return true
    }
    this.ask(key, s)
    return new Promise<boolean>((resolve) => s.waiters.push(resolve))
  }

  adopt(key: string): void {
    const s = this.slotsOf(key)
    s.used++
    // Above what it holds, this worker asks for the difference (the primary may say no: it stays counted).
    if (s.limit > 0 && s.used > s.held) this.ask(key, s)
  }

  give(key: string): void {
    const s = this.slots.get(key)
    if (s !== undefined && s.used > 0) s.used--
  }

  onGrant(key: string, n: number): void {
    const s = this.slotsOf(key)
    s.held += n
    s.isAsking = false
    while (s.waiters.length > 0 && s.used < s.held) {
      s.used++
      ;(s.waiters.shift() as (ok: boolean) => void)(true)
    }
    if (s.waiters.length > 0) this.ask(key, s)
  }

  onDeny(key: string): void {
    const s = this.slotsOf(key)
    s.isAsking = false
    for (const w of s.waiters.splice(0)) w(false)
  }

  /** The primary wants every slot not in use back (maybe none: it is answered anyway). */
  onReclaim(key: string): void {
    const s = this.slotsOf(key)
    const n = s.waiters.length > 0 ? 0 : Math.max(0, s.held - s.used)
    s.held -= n
    this.send({ t: 'client_release', key, n, used: s.used })
  }

  /** Slots beyond one spare chunk go back. */
  sweep(): void {
    for (const [key, s] of this.slots) {
      if (s.isAsking || s.waiters.length > 0) continue
      const spare = s.held - s.used - (s.limit > 0 ? this.chunk(s.limit) : 0)
      if (spare <= 0) continue
      s.held -= spare
      this.send({ t: 'client_release', key, n: spare, used: s.used })
    }
  }

  /** Slots asked for at a time: a quarter of an even share of the limit, between 1 and 64. */
  private chunk(limit: number): number {
    return Math.max(1, Math.min(64, Math.ceil(limit / (4 * this.count))))
  }

  private ask(key: string, s: Slots): void {
    if (s.isAsking) return
    s.isAsking = true
    this.send({ t: 'client_ask', key, limit: s.limit, used: s.used, n: this.chunk(s.limit) + s.waiters.length })
  }

  private slotsOf(key: string): Slots {
    let s = this.slots.get(key)
    if (s === undefined) {
      s = { held: 0, used: 0, limit: 0, isAsking: false, waiters: [] }
      this.slots.set(key, s)
    }
    return s
  }
}
