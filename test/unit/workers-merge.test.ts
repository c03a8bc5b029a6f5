// With workers, the console shows one pooler: every worker's pool rows summed per (database, user)
// and SHOW STATS recombined (src/workers/snapshot.ts).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mergePools, mergeStats } from '../../src/workers/snapshot.ts'
import { PoolStats, type StatsAverages } from '../../src/pool/stats.ts'
import type { PoolRow } from '../../src/pool/control.ts'

function row(user: string, n: number, maxwait: number): PoolRow {
  return {
    database: 'app', user, pool_mode: 'transaction', pool_size: 20, paused: false, databaseServers: n, userServers: n,
    counts: { cl_active: n, cl_waiting: n, cl_pinned: n, sv_active: n, sv_idle: n, sv_used: n, sv_tested: n, sv_being_canceled: n, sv_login: n, maxwait_ms: maxwait },
  }
}

test('pool rows of one (database, user) add up over the workers; the longest wait wins', () => {
  const merged = mergePools([[row('alice', 1, 30), row('bob', 5, 0)], [row('alice', 2, 70)]])
  const alice = merged.find((r) => r.user === 'alice') as PoolRow
  assert.deepEqual(alice.counts, { cl_active: 3, cl_waiting: 3, cl_pinned: 3, sv_active: 3, sv_idle: 3, sv_used: 3, sv_tested: 3, sv_being_canceled: 3, sv_login: 3, maxwait_ms: 70 })
  assert.equal(alice.databaseServers, 3)
  assert.equal(merged.find((r) => r.user === 'bob')?.counts.sv_active, 5, 'a pool of one worker alone is as it was')
  assert.equal(merged.length, 2)
})

test('SHOW STATS: totals add up, rates add up, times weigh by their counts', () => {
  const avg = (xacts: number, xactTimeUs: number): StatsAverages => ({ serverAssignments: xacts, xacts, queries: xacts, received: 10, sent: 20, xactTimeUs, queryTimeUs: xactTimeUs, waitTimeUs: 0, clientParses: 0, serverParses: 0, binds: 0, clientLogins: 1 })
  const totals = (xacts: number) => Object.assign(new PoolStats(), { xacts, queries: xacts })
  totals(1).waitHist.observe(100)
  const a = totals(100)
  a.waitHist.observe(100)
  // What a worker sends is a structured clone: plain data, no methods.
  const clone = structuredClone(a)
  const [r] = mergeStats([{ stats: [{ database: 'app', totals: clone, averages: avg(100, 1000) }] }, { stats: [{ database: 'app', totals: totals(300), averages: avg(300, 2000) }] }])
  assert.equal(r.totals.xacts, 400)
  assert.equal(r.totals.waitHist.counts.reduce((x, y) => x + y, 0), 1)
  assert.equal(r.averages.xacts, 400)
  assert.equal(r.averages.received, 20)
  assert.equal(r.averages.xactTimeUs, 1750, '(100 × 1000 + 300 × 2000) / 400')
  assert.equal(r.averages.waitTimeUs, 0)
})
