// The framer must give the same messages and the same bytes however a stream is cut into chunks.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Framer, inspectTable } from '../../src/protocol/framer.ts'

function message(code: number, body: Buffer): Buffer {
  const b = Buffer.allocUnsafe(5 + body.length)
  b[0] = code
  b.writeInt32BE(4 + body.length, 1)
  body.copy(b, 5)
  return b
}

const arbMessages = fc.array(
  fc.record({ code: fc.constantFrom(0x44, 0x5a, 0x53, 0x43, 0x45), body: fc.uint8Array({ maxLength: 300 }) }),
  { maxLength: 40 },
)

function cut(stream: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b)
  const out: Buffer[] = []
  let prev = 0
  for (const p of points) {
    out.push(stream.subarray(prev, p))
    prev = p
  }
  out.push(stream.subarray(prev))
  return out
}

test('any split of a stream yields the same messages and bytes', () => {
  fc.assert(
    fc.property(arbMessages, fc.array(fc.nat(), { maxLength: 30 }), fc.boolean(), (msgs, cuts, inspectZ) => {
      const stream = Buffer.concat(msgs.map((m) => message(m.code, Buffer.from(m.body))))
      const f = new Framer()
      if (inspectZ) f.inspect = inspectTable([0x5a, 0x45])
      const out: Buffer[] = []
      const seen: Array<{ code: number; length: number }> = []
      let current: Buffer[] = []
      for (const chunk of cut(stream, cuts)) {
        f.push(chunk)
        while (f.next()) {
          if (f.stashed) current.push(f.stashed)
          current.push(Buffer.from(f.buf.subarray(f.start, f.end)))
          if (f.isFirst) seen.push({ code: f.code, length: f.length })
          if (f.inspect[f.code] === 1) assert.ok(f.isFirst && f.isLast, 'inspected messages come whole')
          if (f.isLast) { out.push(Buffer.concat(current)); current = [] }
        }
      }
      assert.ok(f.isAtBoundary)
      assert.deepEqual(seen, msgs.map((m) => ({ code: m.code, length: m.body.length + 4 })))
      assert.deepEqual(out, msgs.map((m) => message(m.code, Buffer.from(m.body))))
    }),
    { numRuns: 500 },
  )
})

test('stopping after any whole message and pushing the rest later yields the same messages', () => {
  // How a client's chunk is held behind a DISCARD ALL (client-conn.ts): takeRest at a boundary.
  fc.assert(
    fc.property(arbMessages, fc.array(fc.nat(), { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 5 }), (msgs, cuts, stops) => {
      const stream = Buffer.concat(msgs.map((m) => message(m.code, Buffer.from(m.body))))
      const f = new Framer()
      f.inspect = inspectTable([0x53])
      const stopAfter = new Set(stops.map((s) => s % Math.max(1, msgs.length)))
      const out: Buffer[] = []
      let current: Buffer[] = []
      let n = 0
      const queue = cut(stream, cuts)
      while (queue.length > 0) {
        f.push(queue.shift() as Buffer)
        while (f.next()) {
          if (f.stashed) current.push(f.stashed)
          current.push(Buffer.from(f.buf.subarray(f.start, f.end)))
          if (!f.isLast) continue
          out.push(Buffer.concat(current))
          current = []
          if (stopAfter.has(n++)) {
            const rest = f.takeRest()
            if (rest.length > 0) queue.unshift(rest)
            break
          }
        }
      }
      assert.deepEqual(out, msgs.map((m) => message(m.code, Buffer.from(m.body))))
    }),
    { numRuns: 500 },
  )
})

test('takeRest inside a message is refused', () => {
  const f = new Framer()
  f.push(message(0x44, Buffer.alloc(10)).subarray(0, 8))
  assert.ok(f.next())
  assert.equal(f.isLast, false)
  assert.throws(() => f.takeRest(), /inside a message/)
})

test('lengths below 4 or above the limit are protocol violations', () => {
  for (const [len, max] of [[3, 100], [-1, 100], [101, 100]] as const) {
    const f = new Framer(max)
    const b = Buffer.from([0x51, 0, 0, 0, 0])
    b.writeInt32BE(len, 1)
    f.push(b)
    assert.throws(() => f.next(), (e: any) => e.code === 'TP_PROTOCOL_VIOLATION', `length ${len}`)
  }
})
