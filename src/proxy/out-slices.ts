// The slices one received chunk turns into on the other socket, written in one go: a single
// slice is written directly, several are corked so they leave in one writev. Corking a lone
// write only routed it through the stream's buffered-writes path, which cost measurable CPU.
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
    if (n === 1) {
      sock.write(this.slices[0])
    } else if (n <= 8) {
      let total = 0
      for (let i = 0; i < n; i++) total += this.slices[i].length
      if (total <= COPY_LIMIT) {
        const one = Buffer.allocUnsafe(total)
        let at = 0
        for (let i = 0; i < n; i++) at += this.slices[i].copy(one, at)
        sock.write(one)
      } else this.writev(sock, n)
    } else {
      this.writev(sock, n)
    }
    for (let i = 0; i < n; i++) this.slices[i] = EMPTY
  }

  private writev(sock: Socket, n: number): void {
    sock.cork()
    for (let i = 0; i < n; i++) sock.write(this.slices[i])
    sock.uncork()
  }
}

const EMPTY = Buffer.alloc(0)
/** Below this many bytes, copying a few slices into one buffer costs less than a writev through the stream. */
const COPY_LIMIT = 4096

/** One collector for the whole process: it is always flushed before the handler that filled it returns. */
export const OUT = new OutSlices()
