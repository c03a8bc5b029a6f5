// Reading the bodies tidepool must look at. Offsets are into the caller's buffer, so nothing is
// copied to read an integer; strings are decoded only when asked for.
// Must not: read past `end`: an overrun or a missing NUL throws TP_PROTOCOL_VIOLATION.

import { TidepoolError } from '../util/errors.ts'
import type { PgErrorFields } from './pg-error.ts'

function overrun(what: string): never {
  throw new TidepoolError('TP_PROTOCOL_VIOLATION', `message too short: ${what}`)
}

export class BodyReader {
  pos: number
  constructor(readonly buf: Buffer, start: number, readonly end: number) {
    this.pos = start
  }
  get remaining(): number {
    return this.end - this.pos
  }
  int8(): number {
    if (this.pos + 1 > this.end) overrun('int8')
    return this.buf[this.pos++]
  }
  int16(): number {
    if (this.pos + 2 > this.end) overrun('int16')
    const v = this.buf.readInt16BE(this.pos)
    this.pos += 2
    return v
  }
  int32(): number {
    if (this.pos + 4 > this.end) overrun('int32')
    const v = this.buf.readInt32BE(this.pos)
    this.pos += 4
    return v
  }
  cstring(): string {
    const nul = this.buf.indexOf(0, this.pos)
    if (nul < 0 || nul >= this.end) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'string without terminating NUL')
    const s = this.buf.toString('utf8', this.pos, nul)
    this.pos = nul + 1
    return s
  }
  bytes(n: number): Buffer {
    if (n < 0 || this.pos + n > this.end) overrun(`${n} bytes`)
    const b = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return b
  }
  rest(): Buffer {
    const b = this.buf.subarray(this.pos, this.end)
    this.pos = this.end
    return b
  }
}

const FIELD_NAMES: Record<number, keyof PgErrorFields> = {
  0x53: 'severity', 0x56: 'severityNonLocalized', 0x43: 'code', 0x4d: 'message', 0x44: 'detail', 0x48: 'hint',
  0x50: 'position', 0x57: 'where', 0x73: 'schema', 0x74: 'table', 0x63: 'column', 0x6e: 'constraint',
  0x46: 'file', 0x4c: 'line', 0x52: 'routine',
}

/** ErrorResponse / NoticeResponse body: (type byte, NUL-terminated string)* then a 0 byte. */
export function parseErrorFields(buf: Buffer, start: number, end: number): PgErrorFields {
  const r = new BodyReader(buf, start, end)
  const out: PgErrorFields = { severity: '', code: '', message: '' }
  for (;;) {
    const t = r.int8()
    if (t === 0) break
    const v = r.cstring()
    const name = FIELD_NAMES[t]
    if (name !== undefined) out[name] = v
  }
  if (out.severity === '' && out.severityNonLocalized !== undefined) out.severity = out.severityNonLocalized
  return out
}

export function parseParameterStatus(buf: Buffer, start: number, end: number): [string, string] {
  const r = new BodyReader(buf, start, end)
  return [r.cstring(), r.cstring()]
}

export function parseBackendKeyData(buf: Buffer, start: number, end: number): { pid: number; secret: number } {
  const r = new BodyReader(buf, start, end)
  return { pid: r.int32(), secret: r.int32() }
}

/** DataRow body: the column values as text (UTF-8), NULL as null. For the few rows tidepool reads itself. */
export function parseDataRow(buf: Buffer, start: number, end: number): Array<string | null> {
  const r = new BodyReader(buf, start, end)
  const n = r.int16()
  const out: Array<string | null> = []
  for (let i = 0; i < n; i++) {
    const len = r.int32()
    out.push(len < 0 ? null : r.bytes(len).toString('utf8'))
  }
  return out
}

export function parseCommandTag(buf: Buffer, start: number, end: number): string {
  return new BodyReader(buf, start, end).cstring()
}

export function parseQueryText(buf: Buffer, start: number, end: number): string {
  return new BodyReader(buf, start, end).cstring()
}
