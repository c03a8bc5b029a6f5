// Messages tidepool sends, each as one Buffer holding the whole message. Lengths are computed
// first, then one allocation and in-place writes: no concatenation of intermediate buffers.
// Constant messages (ReadyForQuery, Sync, Terminate, AuthenticationOk) are built once and shared;
// callers must never write into them.
// Must not: do I/O or keep state between calls.

import { AuthCode, BackendCode, FrontendCode, StartupCode, TxStatus } from './codes.ts'

type Fields = { severity: string; code: string; message: string; detail?: string; hint?: string }

/** A builder that writes a typed message: 1 type byte, Int32 length, then the body. */
class Writer {
  readonly buf: Buffer
  pos: number
  constructor(code: number | null, bodyLength: number) {
    const header = code === null ? 4 : 5
    this.buf = Buffer.allocUnsafe(header + bodyLength)
    this.pos = 0
    if (code !== null) this.buf[this.pos++] = code
    this.buf.writeInt32BE(bodyLength + 4, this.pos)
    this.pos += 4
  }
  int8(v: number): this { this.buf[this.pos++] = v; return this }
  int16(v: number): this { this.buf.writeInt16BE(v, this.pos); this.pos += 2; return this }
  int32(v: number): this { this.buf.writeInt32BE(v, this.pos); this.pos += 4; return this }
  cstring(s: string): this { this.pos += this.buf.write(s, this.pos, 'utf8'); this.buf[this.pos++] = 0; return this }
  bytes(b: Buffer): this { b.copy(this.buf, this.pos); this.pos += b.length; return this }
}

const cstrLen = (s: string): number => Buffer.byteLength(s, 'utf8') + 1

function fieldsMessage(code: number, f: Fields): Buffer {
  const pairs: Array<[number, string]> = [[0x53, f.severity], [0x56, f.severity], [0x43, f.code], [0x4d, f.message]]
  if (f.detail !== undefined) pairs.push([0x44, f.detail])
  if (f.hint !== undefined) pairs.push([0x48, f.hint])
  let len = 1
  for (const [, v] of pairs) len += 1 + cstrLen(v)
  const w = new Writer(code, len)
  for (const [k, v] of pairs) w.int8(k).cstring(v)
  return w.int8(0).buf
}

// ---- backend (to clients) ----

export function errorResponse(f: { severity: 'ERROR' | 'FATAL' | 'PANIC'; code: string; message: string; detail?: string; hint?: string }): Buffer {
  return fieldsMessage(BackendCode.ErrorResponse, f)
}

export function noticeResponse(f: { severity: 'NOTICE' | 'WARNING' | 'INFO' | 'LOG' | 'DEBUG'; code: string; message: string; detail?: string; hint?: string }): Buffer {
  return fieldsMessage(BackendCode.NoticeResponse, f)
}

const READY = {
  [TxStatus.Idle]: new Writer(BackendCode.ReadyForQuery, 1).int8(TxStatus.Idle).buf,
  [TxStatus.InTransaction]: new Writer(BackendCode.ReadyForQuery, 1).int8(TxStatus.InTransaction).buf,
  [TxStatus.Failed]: new Writer(BackendCode.ReadyForQuery, 1).int8(TxStatus.Failed).buf,
} as Record<number, Buffer>

export function readyForQuery(status: number): Buffer {
  const b = READY[status]
  if (b === undefined) throw new RangeError(`invalid transaction status ${status}`)
  return b
}

export function parameterStatus(name: string, value: string): Buffer {
  return new Writer(BackendCode.ParameterStatus, cstrLen(name) + cstrLen(value)).cstring(name).cstring(value).buf
}

export function backendKeyData(pid: number, secret: number): Buffer {
  return new Writer(BackendCode.BackendKeyData, 8).int32(pid).int32(secret).buf
}

const AUTH_OK = new Writer(BackendCode.Authentication, 4).int32(AuthCode.Ok).buf
export function authenticationOk(): Buffer {
  return AUTH_OK
}

export function authenticationCleartextPassword(): Buffer {
  return new Writer(BackendCode.Authentication, 4).int32(AuthCode.CleartextPassword).buf
}

export function authenticationMd5Password(salt: Buffer): Buffer {
  return new Writer(BackendCode.Authentication, 8).int32(AuthCode.MD5Password).bytes(salt.subarray(0, 4)).buf
}

export function authenticationSasl(mechanisms: string[]): Buffer {
  let len = 4 + 1
  for (const m of mechanisms) len += cstrLen(m)
  const w = new Writer(BackendCode.Authentication, len).int32(AuthCode.SASL)
  for (const m of mechanisms) w.cstring(m)
  return w.int8(0).buf
}

export function authenticationSaslContinue(data: Buffer): Buffer {
  return new Writer(BackendCode.Authentication, 4 + data.length).int32(AuthCode.SASLContinue).bytes(data).buf
}

export function authenticationSaslFinal(data: Buffer): Buffer {
  return new Writer(BackendCode.Authentication, 4 + data.length).int32(AuthCode.SASLFinal).bytes(data).buf
}

export function negotiateProtocolVersion(newestMinor: number, unrecognized: string[]): Buffer {
  let len = 8
  for (const u of unrecognized) len += cstrLen(u)
  const w = new Writer(BackendCode.NegotiateProtocolVersion, len).int32(newestMinor).int32(unrecognized.length)
  for (const u of unrecognized) w.cstring(u)
  return w.buf
}

/** Text-format columns; tidepool's own result sets (the console) are always text. */
export function rowDescription(columns: Array<{ name: string; typeOid: number }>): Buffer {
  let len = 2
  for (const c of columns) len += cstrLen(c.name) + 18
  const w = new Writer(BackendCode.RowDescription, len).int16(columns.length)
  for (const c of columns) w.cstring(c.name).int32(0).int16(0).int32(c.typeOid).int16(-1).int32(-1).int16(0)
  return w.buf
}

export function dataRow(values: Array<string | null>): Buffer {
  let len = 2
  const encoded: Array<Buffer | null> = values.map((v) => (v === null ? null : Buffer.from(v, 'utf8')))
  for (const e of encoded) len += 4 + (e === null ? 0 : e.length)
  const w = new Writer(BackendCode.DataRow, len).int16(values.length)
  for (const e of encoded) {
    if (e === null) w.int32(-1)
    else w.int32(e.length).bytes(e)
  }
  return w.buf
}

export function commandComplete(tag: string): Buffer {
  return new Writer(BackendCode.CommandComplete, cstrLen(tag)).cstring(tag).buf
}

export function emptyQueryResponse(): Buffer {
  return new Writer(BackendCode.EmptyQueryResponse, 0).buf
}

export function notificationResponse(pid: number, channel: string, payload: string): Buffer {
  return new Writer(BackendCode.NotificationResponse, 4 + cstrLen(channel) + cstrLen(payload)).int32(pid).cstring(channel).cstring(payload).buf
}

// ---- frontend (to servers) ----

export function startupMessage(params: Record<string, string>): Buffer {
  let len = 4 + 1
  for (const [k, v] of Object.entries(params)) len += cstrLen(k) + cstrLen(v)
  const w = new Writer(null, len).int32(StartupCode.Protocol3)
  for (const [k, v] of Object.entries(params)) w.cstring(k).cstring(v)
  return w.int8(0).buf
}

export function query(sql: string): Buffer {
  return new Writer(FrontendCode.Query, cstrLen(sql)).cstring(sql).buf
}

export function passwordMessage(password: string): Buffer {
  return new Writer(FrontendCode.Password, cstrLen(password)).cstring(password).buf
}

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  return new Writer(FrontendCode.Password, cstrLen(mechanism) + 4 + data.length).cstring(mechanism).int32(data.length).bytes(data).buf
}

export function saslResponse(data: Buffer): Buffer {
  return new Writer(FrontendCode.Password, data.length).bytes(data).buf
}

const TERMINATE = new Writer(FrontendCode.Terminate, 0).buf
export function terminate(): Buffer {
  return TERMINATE
}

const SYNC = new Writer(FrontendCode.Sync, 0).buf
export function sync(): Buffer {
  return SYNC
}

export function flush(): Buffer {
  return new Writer(FrontendCode.Flush, 0).buf
}

export function cancelRequest(pid: number, secret: number): Buffer {
  return new Writer(null, 12).int32(StartupCode.CancelRequest).int32(pid).int32(secret).buf
}

export function sslRequest(): Buffer {
  return new Writer(null, 4).int32(StartupCode.SSLRequest).buf
}

export function parse(name: string, sql: string, paramOids: number[]): Buffer {
  const w = new Writer(FrontendCode.Parse, cstrLen(name) + cstrLen(sql) + 2 + 4 * paramOids.length).cstring(name).cstring(sql).int16(paramOids.length)
  for (const o of paramOids) w.int32(o)
  return w.buf
}

/** Text-format parameters and results. */
export function bind(portal: string, statement: string, params: Array<Buffer | null>): Buffer {
  let len = cstrLen(portal) + cstrLen(statement) + 2 + 2 + 2
  for (const p of params) len += 4 + (p === null ? 0 : p.length)
  const w = new Writer(FrontendCode.Bind, len).cstring(portal).cstring(statement).int16(0).int16(params.length)
  for (const p of params) {
    if (p === null) w.int32(-1)
    else w.int32(p.length).bytes(p)
  }
  return w.int16(0).buf
}

export function describeStatement(name: string): Buffer {
  return new Writer(FrontendCode.Describe, 1 + cstrLen(name)).int8(0x53).cstring(name).buf
}

export function describePortal(name: string): Buffer {
  return new Writer(FrontendCode.Describe, 1 + cstrLen(name)).int8(0x50).cstring(name).buf
}

export function execute(portal: string, maxRows: number): Buffer {
  return new Writer(FrontendCode.Execute, cstrLen(portal) + 4).cstring(portal).int32(maxRows).buf
}

export function closeStatement(name: string): Buffer {
  return new Writer(FrontendCode.Close, 1 + cstrLen(name)).int8(0x53).cstring(name).buf
}

export function closePortal(name: string): Buffer {
  return new Writer(FrontendCode.Close, 1 + cstrLen(name)).int8(0x50).cstring(name).buf
}
