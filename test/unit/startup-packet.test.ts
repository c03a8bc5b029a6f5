// Startup-phase packets, valid and invalid, with PostgreSQL's limits and texts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseStartupOptions, parseStartupPacket } from '../../src/protocol/startup.ts'
import * as build from '../../src/protocol/build.ts'

function packet(version: number, body: Buffer, lengthOverride?: number): Buffer {
  const b = Buffer.alloc(8 + body.length)
  b.writeInt32BE(lengthOverride ?? b.length, 0)
  b.writeInt32BE(version, 4)
  body.copy(b, 8)
  return b
}
const kv = (...s: string[]) => Buffer.from(s.map((x) => x + '\u0000').join('') + '\u0000')

const cases: Array<{ name: string; bytes: Buffer; expect: string | RegExp }> = [
  { name: 'a plain startup', bytes: build.startupMessage({ user: 'alice', database: 'app' }), expect: 'startup' },
  { name: 'protocol 3.2', bytes: packet((3 << 16) | 2, kv('user', 'a')), expect: 'startup' },
  { name: 'SSLRequest', bytes: packet(80877103, Buffer.alloc(0)), expect: 'ssl' },
  { name: 'GSSENCRequest', bytes: packet(80877104, Buffer.alloc(0)), expect: 'gssenc' },
  { name: 'CancelRequest', bytes: build.cancelRequest(1, 2), expect: 'cancel' },
  { name: 'SSLRequest with a body', bytes: packet(80877103, Buffer.alloc(4)), expect: /invalid length of SSL request/ },
  { name: 'CancelRequest of 20 bytes', bytes: packet(80877102, Buffer.alloc(12)), expect: /invalid length of cancel request/ },
  { name: 'length field larger than the packet', bytes: packet(196608, kv('user', 'a'), 100), expect: /invalid length of startup packet/ },
  { name: 'length field below 8', bytes: packet(196608, Buffer.alloc(0), 4), expect: /invalid length of startup packet/ },
  { name: 'protocol 2.0', bytes: packet(2 << 16, kv('user', 'a')), expect: /unsupported frontend protocol 2\.0/ },
  { name: 'protocol 4.0', bytes: packet(4 << 16, kv('user', 'a')), expect: /unsupported frontend protocol 4\.0/ },
  { name: 'no user', bytes: packet(196608, kv('database', 'app')), expect: /no PostgreSQL user name specified/ },
  { name: 'empty user', bytes: packet(196608, kv('user', '')), expect: /no PostgreSQL user name specified/ },
  { name: 'missing final NUL', bytes: packet(196608, Buffer.from('user\u0000alice\u0000')), expect: /expected terminator as last byte/ },
  { name: 'a name without a value', bytes: packet(196608, Buffer.from('user\u0000alice\u0000database\u0000')), expect: /expected terminator/ },
]

for (const c of cases) {
  test(`startup packet: ${c.name}`, () => {
    const p = parseStartupPacket(c.bytes)
    if (typeof c.expect === 'string') assert.equal(p.kind, c.expect)
    else {
      assert.equal(p.kind, 'invalid')
      assert.match((p as { reason: string }).reason, c.expect)
    }
  })
}

test('_pq_ options are set aside as unrecognized, other parameters kept', () => {
  const p = parseStartupPacket(build.startupMessage({ user: 'u', options: '-c geqo=off', '_pq_.x': '1' }))
  assert.equal(p.kind, 'startup')
  if (p.kind !== 'startup') return
  assert.deepEqual(p.unrecognized, ['_pq_.x'])
  assert.equal(p.params.get('options'), '-c geqo=off')
  assert.equal(p.params.has('_pq_.x'), false)
})

// PgBouncer 1.20's own cases (test/test_misc.py, test_options_startup_param), and the edges.
const optionCases: Array<{ options: string; expect: Array<[string, string]> | null }> = [
  { options: '', expect: [] },
  { options: '  -c    datestyle=German,\\ YMD', expect: [['datestyle', 'German, YMD']] },
  { options: '-c timezone=Europe/Lisbon  -c    datestyle=German,\\ YMD', expect: [['timezone', 'Europe/Lisbon'], ['datestyle', 'German, YMD']] },
  { options: '-ctimezone=Europe/Lisbon  -cdatestyle=German,\\ YMD', expect: [['timezone', 'Europe/Lisbon'], ['datestyle', 'German, YMD']] },
  { options: '--timezone=Europe/Lisbon  --datestyle=German,\\ YMD', expect: [['timezone', 'Europe/Lisbon'], ['datestyle', 'German, YMD']] },
  { options: '-c t\\imezone=\\E\\u\\r\\o\\pe/Lisbon  -c    dat\\estyle\\=\\Ge\\rman,\\ YMD', expect: [['timezone', 'Europe/Lisbon'], ['datestyle', 'German, YMD']] },
  { options: '-c search_path=a,b -c x.y=', expect: [['search_path', 'a,b'], ['x.y', '']] },
  { options: '-c a=b=c\t', expect: [['a', 'b=c']] },
  { options: '-c a=\\\\', expect: [['a', '\\']] },
  { options: '-c a=b\\', expect: [['a', 'b']] },
  { options: '-d', expect: null },
  { options: '-c timezone', expect: null },
  { options: '-c', expect: null },
  { options: '-- timezone=UTC', expect: null },
  { options: '-c a=b -B 10', expect: null },
  { options: 'timezone=UTC', expect: null },
]

for (const c of optionCases) {
  test(`options: ${JSON.stringify(c.options)}`, () => {
    assert.deepEqual(parseStartupOptions(c.options), c.expect)
  })
}
