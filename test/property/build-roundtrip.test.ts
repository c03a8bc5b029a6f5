// Every message tidepool builds frames correctly and reads back to the same fields.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import * as build from '../../src/protocol/build.ts'
import { Framer, INSPECT_ALL } from '../../src/protocol/framer.ts'
import { BodyReader, parseErrorFields, parseParameterStatus, parseBackendKeyData, parseCommandTag, parseQueryText } from '../../src/protocol/reader.ts'
import { parseStartupPacket } from '../../src/protocol/startup.ts'

/** Strings PostgreSQL can carry in a C string: anything but NUL. */
const text = fc.string({ unit: 'binary', maxLength: 60 }).map((s) => s.replaceAll('\u0000', ''))

function one(msg: Buffer): { code: number; buf: Buffer; start: number; end: number } {
  const f = new Framer()
  f.inspect = INSPECT_ALL
  f.push(msg)
  assert.ok(f.next(), 'one whole message')
  assert.equal(f.end - f.start, msg.length, 'length field matches the bytes')
  assert.ok(!f.next(), 'nothing after it')
  return { code: f.code, buf: f.buf, start: f.start + 5, end: f.end }
}

test('ErrorResponse and NoticeResponse round-trip', () => {
  fc.assert(fc.property(text, text, text, fc.option(text, { nil: undefined }), (code, message, detail, hint) => {
    const m = one(build.errorResponse({ severity: 'FATAL', code, message, detail, hint }))
    assert.equal(m.code, 0x45)
    const e = parseErrorFields(m.buf, m.start, m.end)
    assert.deepEqual([e.severity, e.code, e.message, e.detail, e.hint], ['FATAL', code, message, detail, hint])
    const n = one(build.noticeResponse({ severity: 'WARNING', code, message }))
    assert.equal(parseErrorFields(n.buf, n.start, n.end).message, message)
  }))
})

test('ParameterStatus, BackendKeyData, CommandComplete, Query round-trip', () => {
  fc.assert(fc.property(text, text, fc.integer(), fc.integer(), (a, b, pid, secret) => {
    const p = one(build.parameterStatus(a, b))
    assert.deepEqual(parseParameterStatus(p.buf, p.start, p.end), [a, b])
    const k = one(build.backendKeyData(pid, secret))
    assert.deepEqual(parseBackendKeyData(k.buf, k.start, k.end), { pid, secret })
    const c = one(build.commandComplete(a))
    assert.equal(parseCommandTag(c.buf, c.start, c.end), a)
    const q = one(build.query(b))
    assert.equal(q.code, 0x51)
    assert.equal(parseQueryText(q.buf, q.start, q.end), b)
  }))
})

test('RowDescription and DataRow round-trip', () => {
  fc.assert(fc.property(fc.array(fc.record({ name: text, typeOid: fc.nat(), value: fc.option(text, { nil: null }) }), { maxLength: 12 }), (cols) => {
    const rd = one(build.rowDescription(cols))
    const r = new BodyReader(rd.buf, rd.start, rd.end)
    assert.equal(r.int16(), cols.length)
    for (const c of cols) {
      assert.equal(r.cstring(), c.name)
      r.int32(); r.int16()
      assert.equal(r.int32(), c.typeOid)
      r.int16(); r.int32()
      assert.equal(r.int16(), 0, 'text format')
    }
    assert.equal(r.remaining, 0)
    const dr = one(build.dataRow(cols.map((c) => c.value)))
    const d = new BodyReader(dr.buf, dr.start, dr.end)
    assert.equal(d.int16(), cols.length)
    for (const c of cols) {
      const len = d.int32()
      if (c.value === null) assert.equal(len, -1)
      else assert.equal(d.bytes(len).toString('utf8'), c.value)
    }
  }))
})

test('StartupMessage round-trips through the startup parser', () => {
  fc.assert(fc.property(fc.dictionary(text.filter((k) => k !== '' && !k.startsWith('_pq_.')), text, { maxKeys: 8 }), text.filter((u) => u !== ''), (params, user) => {
    const p = parseStartupPacket(build.startupMessage({ ...params, user }))
    assert.equal(p.kind, 'startup')
    if (p.kind !== 'startup') return
    assert.equal(p.params.get('user'), user)
    for (const [k, v] of Object.entries(params)) if (k !== 'user') assert.equal(p.params.get(k), v)
  }))
})

test('CancelRequest parses back to its key', () => {
  fc.assert(fc.property(fc.integer(), fc.integer(), (pid, secret) => {
    assert.deepEqual(parseStartupPacket(build.cancelRequest(pid, secret)), { kind: 'cancel', pid, secret })
  }))
})

test('ReadyForQuery buffers are shared and correct', () => {
  for (const s of [0x49, 0x54, 0x45]) {
    const m = one(build.readyForQuery(s))
    assert.equal(m.code, 0x5a)
    assert.equal(m.buf[m.start], s)
    assert.equal(build.readyForQuery(s), build.readyForQuery(s), 'cached')
  }
  assert.throws(() => build.readyForQuery(0x41))
})

test('the reader refuses to run past the end or read a string without NUL', () => {
  const b = Buffer.from([0, 0, 0, 1, 0x61, 0x62])
  assert.throws(() => new BodyReader(b, 0, 3).int32(), (e: any) => e.code === 'TP_PROTOCOL_VIOLATION')
  assert.throws(() => new BodyReader(b, 4, 6).cstring(), (e: any) => e.code === 'TP_PROTOCOL_VIOLATION')
  assert.throws(() => new BodyReader(b, 0, 6).bytes(7), (e: any) => e.code === 'TP_PROTOCOL_VIOLATION')
})
