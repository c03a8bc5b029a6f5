// What a fleet node accepts as another node's record from etcd (src/ha/fleet/record.ts): a valid
// record under its own name, and every kind of bad data refused with its reason.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { nodeKey, nodesPrefix, parseAddress, parseNodeRecord } from '../../src/ha/fleet/record.ts'

const PREFIX = nodesPrefix('tp')
const GOOD = { name: 'n1', region: 'eu', address: 'n1:6432', version: '0.1.0', config_version: 'abc', clients: 3, servers: 2, tps: 1.5, heartbeat_ms: 1, started_ms: 0 }

test('a record under its own key is accepted whole', () => {
  assert.equal(nodeKey('tp', 'n1'), 'tp/nodes/n1')
  assert.deepEqual(parseNodeRecord(PREFIX, 'tp/nodes/n1', JSON.stringify({ ...GOOD, peer_id: 3, extra: true })), { ok: true, record: { ...GOOD, peer_id: 3 } })
})

test('a record without peer_id (a node from before peer ids) has none: 0', () => {
  assert.deepEqual(parseNodeRecord(PREFIX, 'tp/nodes/n1', JSON.stringify(GOOD)), { ok: true, record: { ...GOOD, peer_id: 0 } })
})

test('a node\'s address as a peer: host:port, [v6]:port; anything else is no peer', () => {
  assert.deepEqual(parseAddress('10.0.0.1:6432'), { host: '10.0.0.1', port: 6432 })
  assert.deepEqual(parseAddress('pooler-2.example:7000'), { host: 'pooler-2.example', port: 7000 })
  assert.deepEqual(parseAddress('[fd00::2]:6432'), { host: 'fd00::2', port: 6432 })
  for (const bad of ['pooler-2', 'host:', ':6432', 'host:99999', 'fd00::2:6432', 'a:b:1']) assert.equal(parseAddress(bad), null, bad)
})

const BAD: Array<[string, string, string, RegExp]> = [
  ['a deeper key', 'tp/nodes/n1/x', JSON.stringify(GOOD), /not a node key/],
  ['the bare prefix', 'tp/nodes/', JSON.stringify(GOOD), /not a node key/],
  ['a key of another prefix', 'other/nodes/n1', JSON.stringify(GOOD), /not a node key/],
  ['a value that is not JSON', 'tp/nodes/n1', 'n1 is up', /not JSON/],
  ['a JSON array', 'tp/nodes/n1', '[1,2]', /not a JSON object/],
  ['JSON null', 'tp/nodes/n1', 'null', /not a JSON object/],
  ['a missing field', 'tp/nodes/n1', JSON.stringify({ ...GOOD, address: undefined }), /field address is not a string/],
  ['a count as text', 'tp/nodes/n1', JSON.stringify({ ...GOOD, clients: '3' }), /field clients is not a number/],
  ['another node\'s name', 'tp/nodes/n1', JSON.stringify({ ...GOOD, name: 'n2' }), /record names node "n2", key names "n1"/],
  ['a peer id as text', 'tp/nodes/n1', JSON.stringify({ ...GOOD, peer_id: '2' }), /field peer_id is not a peer id/],
  ['a peer id out of range', 'tp/nodes/n1', JSON.stringify({ ...GOOD, peer_id: 70000 }), /field peer_id is not a peer id/],
]

for (const [what, key, value, reason] of BAD) {
  test(`refused: ${what}`, () => {
    const r = parseNodeRecord(PREFIX, key, value)
    assert.equal(r.ok, false)
    if (!r.ok) assert.match(r.reason, reason)
  })
}
