// fairShares: where every node of a fleet computes the budget should go, from the same records.
// Each node's target never exceeds its demand, the targets never add up to more than the budget,
// the whole budget goes out while demand is left, and the answer does not depend on the order in
// which the records were read.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { fairShares } from '../../src/ha/fleet/budget-lease.ts'

function sumOf(m: Map<string, number>): number {
  let n = 0
  for (const v of m.values()) n += v
  return n
}

test('10/10/100 clients over a budget of 20: the busy node gets most, each other node at least one', () => {
  const t = fairShares(20, new Map([['a', 10], ['b', 10], ['c', 100]]))
  assert.deepEqual(Object.fromEntries(t), { a: 2, b: 2, c: 16 })
})

test('demand below the budget: everyone gets what it asks; a node without demand gets 0', () => {
  const t = fairShares(20, new Map([['a', 3], ['b', 0], ['c', 5]]))
  assert.deepEqual(Object.fromEntries(t), { a: 3, b: 0, c: 5 })
})

test('more demanding nodes than budget: one each in name order until it is gone', () => {
  const t = fairShares(2, new Map([['c', 4], ['a', 4], ['b', 4]]))
  assert.deepEqual(Object.fromEntries(t), { a: 1, b: 1, c: 0 })
})

test('property: within demand, within budget, all of it used while demand is left, order-free', () => {
  fc.assert(fc.property(
    fc.integer({ min: 0, max: 200 }),
    fc.dictionary(fc.string({ minLength: 1, maxLength: 4 }), fc.integer({ min: 0, max: 300 }), { maxKeys: 8 }),
    (limit, demandsObj) => {
      const entries = Object.entries(demandsObj)
      const t = fairShares(limit, new Map(entries))
      for (const [n, d] of entries) {
        const got = t.get(n) ?? 0
        assert.ok(got >= 0 && got <= d, `${n}: ${got} of demand ${d}`)
      }
      const total = sumOf(t)
      const demand = entries.reduce((a, [, d]) => a + d, 0)
      assert.equal(total, Math.min(limit, demand))
      assert.deepEqual(Object.fromEntries(fairShares(limit, new Map([...entries].reverse()))), Object.fromEntries(t))
    },
  ), { numRuns: 500 })
})
