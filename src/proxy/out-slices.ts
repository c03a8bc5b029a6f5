// The slices one received chunk turns into on the other socket, written in one go: a single
// slice is written directly; a few small ones (a renamed Bind with its Execute and Sync) are
// copied into one buffer and written once; more or larger ones are corked so they leave in one
// writev. Corking a lone write only routed it through the stream's buffered-writes path, and a
// writev of a few small slices costs more CPU than copying them.
// Must not: hold slices past flushTo (they are views of a read buffer that will be reused).

import type { Socket } from 'node:net'

export class OutSlices {
  private readonly slices: Buffer[] = []
  private count = 0

  add(b: Buffer): void {
    if (b.length === 0) return
    this.slices[this.count++] = b
  }

  flushTo(sock: Socket): void {
    const n = this.count
    if (n === 0) return
    this.count = 0
    const joined = n === 1 ? this.slices[0] : this.joined(n)
    if (joined !== null) {
      sock.write(joined)
    } else {
      sock.cork()
      for (let i = 0; i < n; i++) sock.write(this.slices[i])
      sock.uncork()
    }
    for (let i = 0; i < n; i++) this.slices[i] = EMPTY
  }

  /** Drops what a handler that threw left behind, unsent. */
  discard(): void {
    for (let i = 0; i < this.count; i++) this.slices[i] = EMPTY
    this.count = 0
  }

  /** The first n slices copied into one buffer, or null when there are too many or too many bytes. */
  private joined(n: number): Buffer | null {
    if (n > MAX_JOINED_SLICES) return null
    let total = 0
    for (let i = 0; i < n; i++) total += this.slices[i].length
    if (total > MAX_JOINED_BYTES) return null
    const one = Buffer.allocUnsafe(total)
    let at = 0
    for (let i = 0; i < n; i++) at += this.slices[i].copy(one, at)
    return one
  }
}

const EMPTY = Buffer.alloc(0)
/** Up to this many slices and bytes, copying into one buffer costs less than a writev through the stream. */
const MAX_JOINED_SLICES = 8
const MAX_JOINED_BYTES = 4096

/** One collector for the whole process: it is always flushed before the handler that filled it returns. */
export const OUT = new OutSlices()
