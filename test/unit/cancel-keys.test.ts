// Cancel keys tidepool hands to clients: both halves random (a sequential pid let a client guess
// its neighbours' pids), a pid never issued twice while in use, never 0.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CancelRegistry, type Cancellable } from '../../src/proxy/cancel.ts'

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
