// Cancel keys tidepool hands to clients: both halves random (a sequential pid let a client guess
// its neighbours' pids), a secret never issued twice while in use, a pid never 0; a worker's index
// and a peer id in the bits PgBouncer's peering reads, and where a key of another peer goes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CANCEL_TTL_MASK, CancelRegistry, WORKER_KEY_SHIFT, keyOwner, keyPeerId, withPeerId, type CancelPeering, type Cancellable } from '../../src/proxy/cancel.ts'
import { peerTable } from '../../src/proxy/peer-pools.ts'
import * as build from '../../src/protocol/build.ts'

function client(key: { pid: number; secret: number }): Cancellable {
  return { cancelPid: key.pid, cancelSecret: key.secret, cancelTarget: () => null }
}

/** Peering with id `own`; forwards are recorded. */
function peering(own: number): CancelPeering & { sent: Array<[number, number, number]> } {
  const sent: Array<[number, number, number]> = []
  return { sent, ownId: () => own, forward: (id, pid, secret) => { sent.push([id, pid, secret]); return id === 404 ? 'no such peer' : 'sent to its peer' } }
}

test('the pid half of a cancel key is random, not the next number', () => {
  const reg = new CancelRegistry()
  const pids = Array.from({ length: 200 }, () => reg.issue().pid)
  let consecutive = 0
  for (let i = 1; i < pids.length; i++) if (Math.abs(pids[i] - pids[i - 1]) <= 1) consecutive++
  assert.ok(consecutive < 3, `${consecutive} of 199 pids followed the one before`)
  assert.ok(pids.every((p) => Number.isInteger(p) && p >= 1 && p <= 0x7fffffff), 'positive 31-bit pids')
})

test('a secret in use is drawn again, so each secret names one client', () => {
  const draws = [5, 7, 5, 7, 9]
  const reg = new CancelRegistry(() => draws.shift() as number)
  const first = reg.issue()
  assert.deepEqual(first, { pid: 5, secret: 7 })
  reg.register(client(first))
  assert.deepEqual(reg.issue(), { pid: 5, secret: 9 }, 'the secret is drawn again until free; the pid may repeat')
  const c = client({ pid: 5, secret: 5 })
  const third = new CancelRegistry(() => 5)
  third.register(c)
  // Once unregistered the secret may be issued again.
  third.unregister(c)
  assert.equal(third.issue().secret, 5)
})

test('thousands of registered keys: all secrets distinct, each found by its own key only', () => {
  const reg = new CancelRegistry(undefined, { index: 3, forward: () => {} }, peering(9))
  const keys = Array.from({ length: 5000 }, () => reg.issue())
  for (const k of keys) reg.register(client(k))
  assert.equal(reg.size, 5000, 'with a worker index and a peer id the pid keeps 8 random bits, the secret tells clients apart')
  assert.equal(reg.cancel(keys[10].pid, keys[10].secret, 0), 'no query running')
  assert.equal(reg.cancel(keys[10].pid ^ 1, keys[10].secret, 0), 'unknown key', 'another pid with this secret')
})

test('a worker\'s keys carry its index; a key of another worker goes to that worker, unread here', () => {
  const forwarded: Array<[number, number, number]> = []
  const reg = new CancelRegistry(undefined, { index: 5, forward: (owner, pid, secret) => forwarded.push([owner, pid, secret]) })
  const keys = Array.from({ length: 200 }, () => reg.issue())
  assert.ok(keys.every((k) => keyOwner(k.pid) === 5 && k.pid > 0 && k.pid <= 0x7fffffff), 'every pid names worker 5')
  assert.ok(new Set(keys.map((k) => k.pid & ((1 << WORKER_KEY_SHIFT) - 1))).size > 190, 'the bits below the index stay random')
  reg.register(client(keys[0]))
  assert.equal(reg.cancel(keys[0].pid, keys[0].secret, 0), 'no query running', 'its own key is handled here')
  const other = (2 << WORKER_KEY_SHIFT) | 99
  assert.equal(reg.cancel(other, 7, 0), 'sent to its worker')
  assert.deepEqual(forwarded, [[2, other, 7]])
  assert.equal(reg.cancel((5 << WORKER_KEY_SHIFT) | 99, 7, 0), 'unknown key', 'an unknown key of its own is dropped')
})

test('a client an online restart moved here keeps its key: found here whatever worker index it names', () => {
  const forwarded: Array<[number, number, number]> = []
  const reg = new CancelRegistry(undefined, { index: 1, forward: (owner, pid, secret) => forwarded.push([owner, pid, secret]) })
  // Worker 3 of the old pooler issued it; the new pooler has two workers: it lives on worker 3 mod 2.
  const moved = { pid: (3 << WORKER_KEY_SHIFT) | 12345, secret: 424242 }
  reg.register(client(moved))
  assert.equal(reg.cancel(moved.pid, moved.secret, 0), 'no query running', 'handled here, not sent back to worker 3')
  assert.deepEqual(forwarded, [])
  assert.equal(reg.cancel(moved.pid, moved.secret + 1, 0), 'sent to its worker', 'a wrong secret is not this client\'s key')
  reg.orElse = () => {}
  assert.equal(reg.cancel((1 << WORKER_KEY_SHIFT) | 7, 9, 0), 'sent to the old process', 'a key of its own index nobody here knows: the old pooler')
})

test('without workers a pid uses all 31 bits: no owner is read from it', () => {
  const reg = new CancelRegistry(() => 0x7ffffffe)
  assert.equal(reg.issue().pid, 0x7ffffffe)
  assert.equal(reg.cancel(0x7ffffffe, 1, 0), 'unknown key')
})

test('the peer id sits in key bytes 1 and 2, low byte first, as PgBouncer writes it; the TTL in byte 7', () => {
  const reg = new CancelRegistry(undefined, null, peering(0x1234))
  for (let i = 0; i < 50; i++) {
    const k = reg.issue()
    // The 8 bytes of BackendKeyData's key, as PgBouncer reads them (cancel_key[0..7]).
    const key = build.backendKeyData(k.pid, k.secret).subarray(5)
    assert.equal(key[1] + (key[2] << 8), 0x1234, 'PgBouncer\'s peer id bytes')
    assert.equal(key[0] & 0x80, 0, 'the pid stays positive')
    assert.equal(key[7] & CANCEL_TTL_MASK, CANCEL_TTL_MASK, 'issued with the full TTL')
    assert.equal(keyPeerId(k.pid), 0x1234)
  }
  assert.equal(keyPeerId(withPeerId(0x7fffffff, 5)), 5)
  assert.equal(withPeerId(0x7fffffff, 5) & 0x7f0000ff, 0x7f0000ff, 'the other bits are kept')
})

test('a worker\'s peered key carries both: worker index in the top byte, peer id below', () => {
  const reg = new CancelRegistry(undefined, { index: 1, forward: () => {} }, peering(300))
  const keys = Array.from({ length: 100 }, () => reg.issue())
  assert.ok(keys.every((k) => keyOwner(k.pid) === 1 && keyPeerId(k.pid) === 300 && k.pid > 0))
  assert.ok(new Set(keys.map((k) => k.pid & 0xff)).size > 40, 'the low byte stays random')
})

test('a key of another peer goes to that peer with its TTL lowered; none left: dropped', () => {
  const p = peering(1)
  const reg = new CancelRegistry(undefined, null, p)
  assert.equal(reg.cancel(withPeerId(99, 2), 0x1003, 0), 'sent to its peer')
  assert.equal(reg.cancel(withPeerId(99, 2), 0x1001, 0), 'sent to its peer')
  assert.equal(reg.cancel(withPeerId(99, 2), 0x1000, 0), 'forwarded too often', 'a key forwarded three times goes nowhere')
  assert.equal(reg.cancel(withPeerId(99, 404), 0x1003, 0), 'no such peer')
  assert.deepEqual(p.sent, [[2, withPeerId(99, 2), 0x1002], [2, withPeerId(99, 2), 0x1000], [404, withPeerId(99, 404), 0x1002]])
})

test('a key of this peer is found whatever TTL the forwards left it; with workers it goes to its worker with the full TTL', () => {
  const reg = new CancelRegistry(undefined, null, peering(1))
  const k = reg.issue()
  reg.register(client(k))
  assert.equal(reg.cancel(k.pid, k.secret & ~CANCEL_TTL_MASK, 0), 'no query running')
  const forwarded: Array<[number, number, number]> = []
  const w = new CancelRegistry(undefined, { index: 0, forward: (o, pid, secret) => forwarded.push([o, pid, secret]) }, peering(1))
  const other = withPeerId((1 << WORKER_KEY_SHIFT) | 5, 1)
  assert.equal(w.cancel(other, 0x100, 0), 'sent to its worker')
  assert.deepEqual(forwarded, [[1, other, 0x103]])
})

test('peering off: no key is read for a peer id; a key issued before peering began is still found here', () => {
  const own = { id: 0 }
  const p: CancelPeering = { ownId: () => own.id, forward: () => 'sent to its peer' }
  const reg = new CancelRegistry(() => 0x00abcd00, null, p)
  const k = reg.issue()
  assert.equal(keyPeerId(k.pid), 0xcdab, 'random bits, read as some peer id')
  assert.equal(k.secret & CANCEL_TTL_MASK, 0, 'no TTL bits set')
  reg.register(client(k))
  assert.equal(reg.cancel(k.pid, k.secret, 0), 'no query running')
  own.id = 7
  assert.equal(reg.cancel(k.pid, k.secret, 0), 'no query running', 'found here, not sent to peer 0xcdab')
  assert.equal(reg.cancel(k.pid, k.secret + 1, 0), 'sent to its peer', 'a key not issued here goes to the peer it names')
})

test('the peer table: [peers] wins over a fleet node with the same id; pool_size defaults to default_pool_size', () => {
  const pos = { file: 'x.ini', line: 1 }
  const fixed = new Map([[2, { peer_id: 2, host: 'static', port: 7000, pool_size: null, pos }], [5, { peer_id: 5, host: '/tmp/p5', port: 6432, pool_size: 3, pos }]])
  const found = [{ peer_id: 1, host: 'n1', port: 6432 }, { peer_id: 2, host: 'n2', port: 6432 }]
  assert.deepEqual(peerTable(fixed, found, 20), [
    { peer_id: 1, host: 'n1', port: 6432, pool_size: 20 },
    { peer_id: 2, host: 'static', port: 7000, pool_size: 20 },
    { peer_id: 5, host: '/tmp/p5', port: 6432, pool_size: 3 },
  ])
})
