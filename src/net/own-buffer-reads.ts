// Reads of an accepted socket into a buffer of our own, as net.connect's documented `onread`
// option does for sockets we dial. net.Server has no such option, so the same three fields that
// `onread` sets are set on the accepted socket before it starts reading. They are Node.js
// internals (net.js, the same in Node 20, 22 and 24); they are found by name on a socket made with
// the public option, and where they are not found the caller keeps stream 'data' events.
// Must not: be applied to a socket that is reading or has buffered data (call it while paused,
// before the first read), or to a socket a TLS layer will take over.
import net from 'node:net'

export interface OwnBufferReads {
  /** The buffer for the next read: the same one again unless a slice of it is still held. */
  buffer: () => Buffer
  /**
   * n bytes arrived at the start of buf; false stops reading (as a stream's push returning false).
   * Called with `this` = the socket, so one function can serve every socket.
   */
  callback: (this: net.Socket, n: number, buf: Uint8Array) => boolean
}

/** What a client's reads start with: an OLTP message fits, and an idle client holds little. */
export const SMALL_READ = 256
/** Bulk data (COPY, large parameters) comes in reads this large. */
export const LARGE_READ = 64 * 1024

/**
 * The buffer for a socket's next read, given its current one, whether a slice of it is still held
 * (queued on another socket, or kept for later), and how many bytes the last read brought. A read
 * that filled the buffer makes the next one four times larger (up to LARGE_READ); one that used a
 * sixteenth or less makes it four times smaller (down to SMALL_READ), so an idle client does not
 * keep a large buffer and a steady workload settles on one size without allocating.
 */
export function nextReadBuffer(cur: Buffer | null, isLent: boolean, lastRead: number): Buffer {
  if (cur === null) return Buffer.allocUnsafeSlow(SMALL_READ)
  const size = cur.length
  if (lastRead === size && size < LARGE_READ) return Buffer.allocUnsafeSlow(size * 4)
  if (lastRead <= size / 16 && size > SMALL_READ) return Buffer.allocUnsafeSlow(size / 4)
  // Buffers of their own, not slices of Node's shared 8 kB pool: a client keeps its read buffer
  // for its whole life, and a pool slice would keep the rest of its slab alive with it.
  return isLent ? Buffer.allocUnsafeSlow(size) : cur
}

interface Keys { buffer: symbol; gen: symbol; cb: symbol }

let keys: Keys | null | undefined

function findKeys(): Keys | null {
  // @types/node lists onread for connect() only; the constructor takes it too (connect passes it on).
  const probe = new net.Socket({ onread: { buffer: () => Buffer.alloc(0), callback: () => true } } as net.SocketConstructorOpts)
  const byName = new Map(Object.getOwnPropertySymbols(probe).map((s) => [s.description, s]))
  probe.destroy()
  const buffer = byName.get('kBuffer')
  const gen = byName.get('kBufferGen')
  const cb = byName.get('kBufferCb')
  return buffer !== undefined && gen !== undefined && cb !== undefined ? { buffer, gen, cb } : null
}

interface HandleWithUserBuffer { useUserBuffer?: (buf: Uint8Array) => void }

/** Switches `socket` to reads into `reads.buffer()`; false (nothing changed) where this Node.js has no way to. */
export function readIntoOwnBuffer(socket: net.Socket, reads: OwnBufferReads): boolean {
  if (keys === undefined) keys = findKeys()
  const handle = (socket as unknown as { _handle: HandleWithUserBuffer | null })._handle
  if (keys === null || handle === null || typeof handle.useUserBuffer !== 'function' || socket.readableLength > 0) return false
  const first = reads.buffer()
  const s = socket as unknown as Record<symbol, unknown>
  s[keys.buffer] = first
  s[keys.gen] = reads.buffer
  s[keys.cb] = reads.callback
  handle.useUserBuffer(first)
  return true
}
