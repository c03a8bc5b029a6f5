// Host health and role bookkeeping, and the choice of a host: the rules an operator relies on
// during a failover, driven without any I/O.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Host, pickHost, type CheckOutcome, type Role } from '../../src/ha/hosts.ts'

const H = { rise: 2, fall: 2, banMs: 5_000 }
const ok = (inRecovery: boolean | null, patroni: Role | null = null): CheckOutcome => ({ ok: true, inRecovery, patroni, latencyMs: 1, error: null })
const bad: CheckOutcome = { ok: false, inRecovery: null, patroni: null, latencyMs: 1, error: 'connection refused' }

function pgHost(name: string, inRecovery: boolean | null, patroni: Role | null = null): Host {
  const h = new Host(name, 5432, 'postgresql', 0)
  if (inRecovery !== null) h.record(ok(inRecovery, patroni), H, 0)
  return h
}

test('a host goes down after `fall` failed checks in a row and back up after `rise` good ones', () => {
  const h = pgHost('a', false)
  assert.equal(h.isUp, true)
  assert.deepEqual(h.record(bad, H, 1), { upChanged: false, roleChanged: false })
  assert.equal(h.isUp, true, 'one failure is not enough')
  assert.deepEqual(h.record(bad, H, 2), { upChanged: true, roleChanged: true })
  assert.equal(h.isUp, false)
  assert.equal(h.role, 'unknown', 'a down host has no known role')
  assert.equal(h.lastChangeMs, 2)
  h.record(ok(false), H, 3)
  assert.equal(h.isUp, false, 'one success is not enough')
  assert.deepEqual(h.record(ok(false), H, 4), { upChanged: true, roleChanged: false })
  assert.equal(h.isUp, true)
  assert.equal(h.role, 'primary')
})

test('a good check between failures resets the count, as in HAProxy', () => {
  const h = pgHost('a', false)
  h.record(bad, H, 1)
  h.record(ok(false), H, 2)
  h.record(bad, H, 3)
  assert.equal(h.isUp, true)
})

test('a host is primary only when the backend and Patroni both say so', () => {
  assert.equal(pgHost('a', false, 'primary').role, 'primary')
  assert.equal(pgHost('a', true, 'replica').role, 'replica')
  const stale = pgHost('a', false, 'replica')
  assert.equal(stale.role, 'unknown')
  assert.equal(stale.isConflicted, true)
  const unreachablePatroni = pgHost('a', false, 'unknown')
  assert.equal(unreachablePatroni.role, 'unknown')
})

test('read-write picks the one primary; replicas serve read-only; nothing is picked while none qualifies', () => {
  const p = pgHost('p', false)
  const r1 = pgHost('r1', true)
  const r2 = pgHost('r2', true)
  assert.equal(pickHost([r1, p, r2], 'read-write', 10, 0), p)
  assert.equal(pickHost([r1, p, r2], 'primary', 10, 0), p)
  const ro = pickHost([r1, p, r2], 'read-only', 10, 0)
  assert.ok(ro === r1 || ro === r2)
  assert.equal(pickHost([r1, r2], 'read-write', 10, 0), 'no primary known')
  assert.equal(pickHost([p], 'standby', 10, 0), 'no standby known')
  assert.equal(pickHost([p], 'prefer-standby', 10, 0), p, 'prefer-standby falls back to the primary')
  assert.equal(pickHost([r1, p], 'prefer-standby', 10, 0), r1)
})

test('two PostgreSQL primaries are a split brain: no host for writes', () => {
  const a = pgHost('a', false)
  const b = pgHost('b', false)
  assert.equal(pickHost([a, b], 'read-write', 10, 0), 'several primaries (split brain)')
  // With Patroni naming the leader, the stale one is not primary and writes go to the leader.
  const leader = pgHost('a', false, 'primary')
  const stale = pgHost('b', false, 'replica')
  assert.equal(pickHost([leader, stale], 'read-write', 10, 0), leader)
})

test('CockroachDB nodes are all equal: writes spread by least connections', () => {
  const nodes = ['n1', 'n2', 'n3'].map((n) => {
    const h = new Host(n, 26257, 'cockroachdb', 0)
    h.record(ok(null), H, 0)
    return h
  })
  nodes[0].servers = 3
  nodes[1].servers = 1
  nodes[2].servers = 2
  assert.equal(pickHost(nodes, 'read-write', 10, 0), nodes[1])
  nodes[1].servers = 3
  nodes[2].servers = 3
  const picked = new Set([0, 1, 2].map((turn) => pickHost(nodes, 'read-write', 10, turn)))
  assert.equal(picked.size, 3, 'ties rotate')
})

test('a banned host is skipped until the ban ends; a down host is skipped until it rises', () => {
  const a = pgHost('a', true)
  const b = pgHost('b', true)
  a.ban(H, 'connect refused', 100)
  assert.equal(a.health(101), 'banned')
  assert.equal(pickHost([a, b], 'read-only', 101, 0), b)
  assert.equal(pickHost([a, b], 'read-only', 100 + H.banMs, 0), a, 'ban over; least connections and turn 0 pick a')
  b.record(bad, H, 200)
  b.record(bad, H, 201)
  assert.equal(b.health(202), 'down')
  assert.equal(pickHost([b], 'any', 202, 0), 'no usable host')
  assert.equal(new Host('c', 1, 'postgresql', 0).health(0), 'unchecked')
})

test('any accepts a host before its first check; roles need a check', () => {
  const fresh = new Host('x', 5432, 'postgresql', 0)
  assert.equal(pickHost([fresh], 'any', 0, 0), fresh)
  assert.equal(pickHost([fresh], 'read-write', 0, 0), 'no primary known')
})

test('writes wait until every PostgreSQL host has answered one check: an unasked host may be a second primary', () => {
  const a = pgHost('a', false)
  const b = new Host('b', 5432, 'postgresql', 0)
  assert.equal(pickHost([a, b], 'read-write', 0, 0), 'not every host checked yet')
  assert.equal(pickHost([a, b], 'any', 0, 0), a, 'reads need no role')
  b.record(ok(false), H, 1)
  assert.equal(pickHost([a, b], 'read-write', 1, 0), 'several primaries (split brain)')
  const c = new Host('c', 5432, 'postgresql', 0)
  c.record(bad, H, 1)
  assert.equal(pickHost([a, c], 'read-write', 1, 0), a, 'a host whose check failed has been asked')
})
