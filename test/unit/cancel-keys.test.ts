// Cancel keys tidepool hands to clients: both halves random (a sequential pid let a client guess
// its neighbours' pids), a pid never issued twice while in use, never 0.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CancelRegistry, WORKER_KEY_SHIFT, keyOwner, type Cancellable } from '../../src/proxy/cancel.ts'

const idle: Cancellable = { cancelSecret: 0, cancelTarget: () => null }

test('the pid half of a cancel key is random, not the next number', () => {
  const reg = new CancelRegistry()
  const pids = Array.from({ length: 200 }, () => reg.issue().pid)
  let consecutive = 0
  for (let i = 1; i < pids.length; i++) if (Math.abs(pids[i] - pids[i - 1]) <= 1) consecutive++
  assert.ok(consecutive < 3, `${consecutive} of 199 pids followed the one before`)
  assert.ok(pids.every((p) => Number.isInteger(p) && p >= 1 && p <= 0x7fffffff), 'positive 31-bit pids')
})

test('a pid in use is drawn again, so each pid names one client', () => {
  const draws = [5, 5, 9, 1234, 5, 77]
  const reg = new CancelRegistry(() => draws.shift() as number)
  const first = reg.issue()
  assert.deepEqual(first, { pid: 5, secret: 5 })
  reg.register(first.pid, idle)
  assert.equal(reg.issue().pid, 9, 'drawn again until free')
  const third = new CancelRegistry(() => 5)
  third.register(5, idle)
  // Once unregistered the pid may be issued again.
  third.unregister(5)
  assert.equal(third.issue().pid, 5)
})

test('thousands of registered keys: all pids distinct', () => {
  const reg = new CancelRegistry()
  for (let i = 0; i < 5000; i++) reg.register(reg.issue().pid, idle)
  assert.equal(reg.size, 5000)
})

test('a worker\'s keys carry its index; a key of another worker goes to that worker, unread here', () => {
  const forwarded: Array<[number, number, number]> = []
  const reg = new CancelRegistry(undefined, { index: 5, forward: (owner, pid, secret) => forwarded.push([owner, pid, secret]) })
  const keys = Array.from({ length: 200 }, () => reg.issue())
  assert.ok(keys.every((k) => keyOwner(k.pid) === 5 && k.pid > 0 && k.pid <= 0x7fffffff), 'every pid names worker 5')
  assert.ok(new Set(keys.map((k) => k.pid & ((1 << WORKER_KEY_SHIFT) - 1))).size > 190, 'the bits below the index stay random')
  const c: Cancellable = { cancelSecret: 42, cancelTarget: () => null }
  reg.register(keys[0].pid, c)
  assert.equal(reg.cancel(keys[0].pid, 42, 0), 'no query running', 'its own key is handled here')
  const other = (2 << WORKER_KEY_SHIFT) | 99
  assert.equal(reg.cancel(other, 7, 0), 'sent to its worker')
  assert.deepEqual(forwarded, [[2, other, 7]])
  assert.equal(reg.cancel((5 << WORKER_KEY_SHIFT) | 99, 7, 0), 'unknown key', 'an unknown key of its own is dropped')
})

test('without workers a pid uses all 31 bits: no owner is read from it', () => {
  const reg = new CancelRegistry(() => 0x7ffffffe)
  assert.equal(reg.issue().pid, 0x7ffffffe)
  assert.equal(reg.cancel(0x7ffffffe, 1, 0), 'unknown key')
})
