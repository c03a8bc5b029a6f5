// Finds message boundaries in a typed-message byte stream (everything after startup), in place.
//
// A chunk is walked once; each call to next() reports one "part": a slice of one message that lies
// in this chunk. Messages whose code is marked in `inspect` are reported only whole, in one part
// (assembled into a buffer of their own when they straddle chunks), because their body is read.
// Every other message streams through in as many parts as the chunks cut it into, so a 1 GB DataRow
// never sits in memory whole.
//
// The fields are overwritten on every next(): no object is allocated per message. The only copies
// are a header split across chunks (at most 4 bytes, handed out as `stashed`) and the body of an
// inspected message that straddles chunks.
//
// Invariants: parts are reported in stream order; concatenating stashed + buf[start, end) of every
// part reproduces the input exactly.
// Must not: touch sockets or log; a bad length throws TidepoolError('TP_PROTOCOL_VIOLATION').

import { TidepoolError } from '../util/errors.ts'

const HEADER = 5

export class Framer {
  /** Type byte of the message the current part belongs to. */
  code = 0
  /** Length field of that message (counts itself, not the type byte). */
  length = 0
  /** Where the current part's bytes are: `chunk` normally, an assembled buffer for inspected messages. */
  buf: Buffer = EMPTY
  start = 0
  end = 0
  /** Header bytes of this message that arrived in an earlier chunk; precede buf[start, end). */
  stashed: Buffer | null = null
  isFirst = false
  isLast = false
  /**
   * Per type byte: 1 = report this message whole. A table is shared by every connection in the
   * same phase (see inspectTable), so the owner swaps the reference rather than writing into it.
   */
  inspect: Uint8Array = INSPECT_NONE
  /** Largest message length accepted at all; PgBouncer's max_packet_size. */
  maxLength: number
  /** What maxLength is, for the error: the setting, or the limit before authentication. */
  maxLengthName = 'max_packet_size'
  /** Largest inspected message assembled across chunks; bigger ones are a protocol violation. */
  maxInspectLength: number

  private chunk: Buffer = EMPTY
  private pos = 0
  /** Holds a header split across chunks; allocated on first need, most connections never do. */
  private hdr: Buffer | null = null
  private hdrHave = 0
  private bodyLeft = 0
  private whole: Buffer | null = null
  private wholeHave = 0

  constructor(maxLength = 0x7fffffff, maxInspectLength = 16 * 1024 * 1024) {
    this.maxLength = maxLength
    this.maxInspectLength = maxInspectLength
  }

  push(chunk: Buffer): void {
    this.chunk = chunk
    this.pos = 0
  }

  /** True while nothing of a message is pending: the stream stands at a message boundary. */
  get isAtBoundary(): boolean {
    return this.hdrHave === 0 && this.bodyLeft === 0 && this.whole === null
  }

  next(): boolean {
    const chunk = this.chunk
    const len = chunk.length
    while (this.pos < len) {
      if (this.whole !== null) {
        if (this.fillWhole()) return true
        continue
      }
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, len - this.pos)
        this.setPart(chunk, this.pos, this.pos + n, null, false)
        this.pos += n
        this.bodyLeft -= n
        this.isLast = this.bodyLeft === 0
        return true
      }
      let partStart: number
      let stashed: Buffer | null = null
      if (this.hdrHave > 0) {
        const hdr = this.hdr as Buffer
        const take = Math.min(HEADER - this.hdrHave, len - this.pos)
        chunk.copy(hdr, this.hdrHave, this.pos, this.pos + take)
        const before = this.hdrHave
        this.hdrHave += take
        this.pos += take
        if (this.hdrHave < HEADER) return false
        this.hdrHave = 0
        this.readHeader(hdr, 0)
        partStart = this.pos - take
        stashed = Buffer.from(hdr.subarray(0, before))
      } else {
        if (len - this.pos < HEADER) {
          this.hdr ??= Buffer.alloc(HEADER)
          chunk.copy(this.hdr, 0, this.pos, len)
          this.hdrHave = len - this.pos
          this.pos = len
          return false
        }
        this.readHeader(chunk, this.pos)
        partStart = this.pos
        this.pos += HEADER
      }
      const bodyLen = this.length - 4
      if (this.inspect[this.code] === 1) {
        const available = len - this.pos
        if (stashed === null && available >= bodyLen) {
          this.setPart(chunk, partStart, this.pos + bodyLen, null, true)
          this.pos += bodyLen
          this.isLast = true
          return true
        }
        if (this.length + 1 > this.maxInspectLength) {
          throw new TidepoolError('TP_PROTOCOL_VIOLATION', `message '${String.fromCharCode(this.code)}' of ${this.length} bytes is too large`)
        }
        this.whole = Buffer.allocUnsafe(this.length + 1)
        this.whole[0] = this.code
        this.whole.writeInt32BE(this.length, 1)
        this.wholeHave = HEADER
        if (this.fillWhole()) return true
        continue
      }
      const n = Math.min(bodyLen, len - this.pos)
      this.setPart(chunk, partStart, this.pos + n, stashed, true)
      this.pos += n
      this.bodyLeft = bodyLen - n
      this.isLast = this.bodyLeft === 0
      return true
    }
    return false
  }

  /**
   * Stops walking the current chunk at a message boundary and hands back its unread bytes (empty
   * when none), which the owner pushes again later. Only between whole messages.
   */
  takeRest(): Buffer {
    if (!this.isAtBoundary) throw new Error('framer: takeRest inside a message')
    const rest = this.chunk.subarray(this.pos)
    this.chunk = EMPTY
    this.pos = 0
    return rest
  }

  /** Drops any partial message, e.g. when a connection is reset. */
  reset(): void {
    this.hdrHave = 0
    this.bodyLeft = 0
    this.whole = null
    this.chunk = EMPTY
    this.pos = 0
  }

  private readHeader(b: Buffer, at: number): void {
    this.code = b[at]
    this.length = b.readInt32BE(at + 1)
    if (this.length < 4) {
      throw new TidepoolError('TP_PROTOCOL_VIOLATION', `invalid message length ${this.length} for message type '${printable(this.code)}'`)
    }
    if (this.length > this.maxLength) {
      throw new TidepoolError('TP_PROTOCOL_VIOLATION', `message length ${this.length} exceeds ${this.maxLengthName} (${this.maxLength})`)
    }
  }

  private fillWhole(): boolean {
    const whole = this.whole as Buffer
    const take = Math.min(whole.length - this.wholeHave, this.chunk.length - this.pos)
    this.chunk.copy(whole, this.wholeHave, this.pos, this.pos + take)
    this.wholeHave += take
    this.pos += take
    if (this.wholeHave < whole.length) return false
    this.whole = null
    this.setPart(whole, 0, whole.length, null, true)
    this.isLast = true
    return true
  }

  private setPart(buf: Buffer, start: number, end: number, stashed: Buffer | null, isFirst: boolean): void {
    this.buf = buf
    this.start = start
    this.end = end
    this.stashed = stashed
    this.isFirst = isFirst
  }
}

const EMPTY = Buffer.alloc(0)

/** An inspect table marking `codes`; build each once at module load and share it. */
export function inspectTable(codes: readonly number[]): Uint8Array {
  const t = new Uint8Array(256)
  for (const c of codes) t[c] = 1
  return t
}

export const INSPECT_NONE = new Uint8Array(256)
export const INSPECT_ALL = new Uint8Array(256).fill(1)

function printable(code: number): string {
  return code >= 0x20 && code < 0x7f ? String.fromCharCode(code) : `0x${code.toString(16)}`
}
