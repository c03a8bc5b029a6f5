// The primary's slot ledger (src/workers/ledger.ts): workers lease server connections from it so
// that pool_size (+ reserve), max_db_connections and max_user_connections stay totals over all
// workers, and capacity one worker leaves idle moves to another whose clients wait.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Ledger, RECLAIM_RETRY_MS, type LedgerAction, type SlotLimits } from '../../src/workers/ledger.ts'
import { CLIENT_ASK_TIMEOUT_MS, ClientLedger } from '../../src/workers/client-ledger.ts'

const POOL: SlotLimits = { pool: 20, reserve: 0, db: 0, user: 0 }
const key = (db: string, user: string) => `${db}\u0000${user}`
const APP = key('app', 'alice')

function grants(actions: LedgerAction[]): Array<[number, string, number]> {
  return actions.flatMap((a) => (a.kind === 'grant' ? [[a.worker, a.key, a.n] as [number, string, number]] : []))
}

function reclaims(actions: LedgerAction[]): Array<{ worker: number; key: string; n: number; keep: number }> {
  return actions.flatMap((a) => (a.kind === 'reclaim' ? [{ worker: a.worker, key: a.key, n: a.n, keep: a.keep }] : []))
}

test('free room is granted at once, up to the pool\'s limit over all workers', () => {
  const l = new Ledger()
  assert.deepEqual(grants(l.want(1, APP, 'app', 'alice', 12, false, POOL, 0)), [[1, APP, 12]])
  assert.deepEqual(grants(l.want(2, APP, 'app', 'alice', 12, false, POOL, 0)), [[2, APP, 8]], 'only what is left of 20')
  assert.equal(l.totalOfPool(APP), 20)
  assert.equal(l.held(2, APP), 8)
})

test('online restart: the old pooler\'s slots count until it reports them closed; then the new workers get them', () => {
  const OLD = -1
  const l = new Ledger()
  assert.deepEqual(grants(l.setHeld(OLD, APP, 'app', 'alice', 18, POOL, 0)), [])
  assert.deepEqual(grants(l.want(1, APP, 'app', 'alice', 10, false, POOL, 0)), [[1, APP, 2]], 'only what the old pooler leaves of 20')
  assert.equal(l.totalOfPool(APP), 20)
  assert.deepEqual(grants(l.setHeld(OLD, APP, 'app', 'alice', 11, POOL, 1000)), [[1, APP, 7]], 'what it closed goes to the waiter')
  assert.deepEqual(l.holdings(), [{ key: APP, db: 'app', user: 'alice', n: 20, limits: POOL }])
  assert.deepEqual(grants(l.dropWorker(OLD, 2000)), [[1, APP, 1]], 'gone: the rest of the waiter\'s target')
  assert.equal(l.totalOfPool(APP), 10)
})

test('50 clients on one worker still use the whole pool; a second worker\'s waiters then get their fair share', () => {
  const l = new Ledger()
  // Worker 1 has 50 waiters; its pool asks for what pool_size allows.
  assert.deepEqual(grants(l.want(1, APP, 'app', 'alice', 20, false, POOL, 0)), [[1, APP, 20]])
  // Worker 2's clients wait too: no room, so worker 1 is asked to come down to half (20 over 2 workers).
  const a = l.want(2, APP, 'app', 'alice', 20, false, POOL, 0)
  assert.deepEqual(grants(a), [])
  assert.deepEqual(reclaims(a), [{ worker: 1, key: APP, n: 20, keep: 10 }])
  // Worker 1 gives slots back as its busy servers are released: each goes to worker 2.
  let toTwo = 0
  for (let i = 0; i < 10; i++) toTwo += grants(l.release(1, APP, 1, 1 + i)).reduce((n, [w, , k]) => n + (w === 2 ? k : 0), 0)
  assert.equal(toTwo, 10)
  assert.equal(l.held(1, APP), 10)
  assert.equal(l.held(2, APP), 10)
  assert.equal(l.totalOfPool(APP), 20)
})

test('a worker at or above its fair share takes only what others do not use', () => {
  const l = new Ledger()
  l.want(1, APP, 'app', 'alice', 10, false, POOL, 0)
  l.want(2, APP, 'app', 'alice', 10, false, POOL, 0)
  const a = l.want(2, APP, 'app', 'alice', 15, false, POOL, 0)
  assert.deepEqual(reclaims(a), [{ worker: 1, key: APP, n: 5, keep: 10 }], 'keep = all it holds: unused slots and idle servers only')
})

test('a holder whose own clients wait is not asked for idle slots, only to come down to its fair share', () => {
  const l = new Ledger()
  // Two busy workers at their fair share: neither is asked to close an idle server for the other,
  // which would only move a server login back and forth between them.
  l.want(1, APP, 'app', 'alice', 10, false, POOL, 0)
  l.want(2, APP, 'app', 'alice', 10, false, POOL, 0)
  l.want(1, APP, 'app', 'alice', 20, false, POOL, 0)
  assert.deepEqual(reclaims(l.want(2, APP, 'app', 'alice', 20, false, POOL, 0)), [])
  assert.deepEqual(reclaims(l.settle(10 * RECLAIM_RETRY_MS)), [])
  // A third worker below its share still makes both come down to it.
  const a = l.want(3, APP, 'app', 'alice', 5, false, POOL, 20 * RECLAIM_RETRY_MS)
  assert.deepEqual(reclaims(a).map((r) => [r.worker, r.keep]), [[1, 6], [2, 6]])
})

test('a reclaim answered with nothing is not repeated before the retry interval', () => {
  const l = new Ledger()
  l.want(1, APP, 'app', 'alice', 20, false, POOL, 0)
  l.want(2, APP, 'app', 'alice', 10, false, POOL, 0)
  assert.deepEqual(reclaims(l.release(1, APP, 0, 5)), [], 'answered with 0 at once: not asked again yet')
  assert.deepEqual(reclaims(l.settle(5 + RECLAIM_RETRY_MS)).length, 1, 'asked again later')
})

test('waiters below their fair share are served before one above it', () => {
  const l = new Ledger()
  l.want(1, APP, 'app', 'alice', 15, false, POOL, 0)
  l.want(2, APP, 'app', 'alice', 5, false, POOL, 0)
  // Both want more; 3 workers now share 20 (fair 6). Worker 3 holds nothing.
  l.want(1, APP, 'app', 'alice', 20, false, POOL, 0)
  l.want(3, APP, 'app', 'alice', 10, false, POOL, 0)
  const g = grants(l.release(1, APP, 3, 200))
  assert.deepEqual(g, [[3, APP, 3]], 'the freed slots go to the worker holding least')
})

test('max_db_connections over all workers: idle slots of any pool of the database are asked for, busy ones kept', () => {
  const l = new Ledger()
  const db: SlotLimits = { pool: 20, reserve: 0, db: 10, user: 0 }
  const bob = key('app', 'bob')
  assert.deepEqual(grants(l.want(1, APP, 'app', 'alice', 6, false, db, 0)), [[1, APP, 6]])
  const a = l.want(2, bob, 'app', 'bob', 6, false, db, 0)
  assert.deepEqual(grants(a), [[2, bob, 4]], 'the database has 10 in all')
  assert.equal(l.totalOfDb('app'), 10)
  assert.deepEqual(reclaims(a), [{ worker: 1, key: APP, n: 2, keep: 6 }], 'sibling pool asked for what it does not use')
  assert.deepEqual(reclaims(l.want(2, bob, 'app', 'bob', 8, false, db, RECLAIM_RETRY_MS)), [{ worker: 1, key: APP, n: 4, keep: 6 }])
  // Worker 2's own other pool of the database is a candidate too.
  const carol = key('app', 'carol')
  const l2 = new Ledger()
  l2.want(2, carol, 'app', 'carol', 10, false, db, 0)
  assert.deepEqual(reclaims(l2.want(2, bob, 'app', 'bob', 2, false, db, 0)), [{ worker: 2, key: carol, n: 2, keep: 10 }])
})

test('max_user_connections over all workers and databases', () => {
  const l = new Ledger()
  const u: SlotLimits = { pool: 20, reserve: 0, db: 0, user: 5 }
  const other = key('other', 'alice')
  assert.deepEqual(grants(l.want(1, APP, 'app', 'alice', 3, false, u, 0)), [[1, APP, 3]])
  assert.deepEqual(grants(l.want(2, other, 'other', 'alice', 3, false, u, 0)), [[2, other, 2]])
  assert.equal(l.totalOfUser('alice'), 5)
})

test('the reserve pool opens only for a request that qualifies for it', () => {
  const l = new Ledger()
  const r: SlotLimits = { pool: 4, reserve: 2, db: 0, user: 0 }
  assert.deepEqual(grants(l.want(1, APP, 'app', 'alice', 6, false, r, 0)), [[1, APP, 4]])
  assert.deepEqual(grants(l.want(2, APP, 'app', 'alice', 2, true, r, 0)), [[2, APP, 2]], 'a waiter past reserve_pool_timeout')
  assert.equal(l.totalOfPool(APP), 6)
})

test('a dead worker\'s slots are free again and go to whoever waits', () => {
  const l = new Ledger()
  l.want(1, APP, 'app', 'alice', 20, false, POOL, 0)
  l.want(2, APP, 'app', 'alice', 5, false, POOL, 0)
  assert.deepEqual(grants(l.dropWorker(1, 10)), [[2, APP, 5]])
  assert.equal(l.totalOfPool(APP), 5)
})

test('a request withdrawn is not granted later', () => {
  const l = new Ledger()
  l.want(1, APP, 'app', 'alice', 20, false, POOL, 0)
  l.want(2, APP, 'app', 'alice', 5, false, POOL, 0)
  l.want(2, APP, 'app', 'alice', 0, false, POOL, 0)
  assert.deepEqual(grants(l.release(1, APP, 10, 10)), [])
  assert.equal(l.hasWants, false)
})

test('random wants, releases, reclaims and deaths never hold more than a limit at any level', () => {
  const users = ['alice', 'bob']
  const dbs = ['app', 'other']
  const limitsFor = (db: string, user: string): SlotLimits => ({ pool: db === 'app' ? 6 : 4, reserve: user === 'bob' ? 2 : 0, db: db === 'app' ? 8 : 0, user: user === 'alice' ? 7 : 0 })
  const op = fc.oneof(
    fc.record({ k: fc.constant('want' as const), w: fc.integer({ min: 1, max: 4 }), db: fc.constantFrom(...dbs), user: fc.constantFrom(...users), target: fc.integer({ min: 0, max: 10 }), reserve: fc.boolean() }),
    fc.record({ k: fc.constant('release' as const), w: fc.integer({ min: 1, max: 4 }), db: fc.constantFrom(...dbs), user: fc.constantFrom(...users), n: fc.integer({ min: 0, max: 4 }) }),
    fc.record({ k: fc.constant('drop' as const), w: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ k: fc.constant('tick' as const) }),
  )
  fc.assert(fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
    const l = new Ledger()
    let now = 0
    const answer = (actions: LedgerAction[]) => {
      // Workers answer a reclaim with part of what was asked, as busy servers allow.
      for (const a of actions) if (a.kind === 'reclaim') answer(l.release(a.worker, a.key, Math.min(a.n, Math.max(0, l.held(a.worker, a.key) - a.keep)), now))
    }
    for (const o of ops) {
      now += 37
      if (o.k === 'want') answer(l.want(o.w, key(o.db, o.user), o.db, o.user, o.target, o.reserve, limitsFor(o.db, o.user), now))
      else if (o.k === 'release') answer(l.release(o.w, key(o.db, o.user), Math.min(o.n, l.held(o.w, key(o.db, o.user))), now))
      else if (o.k === 'drop') answer(l.dropWorker(o.w, now))
      else answer(l.settle(now))
      for (const db of dbs) {
        for (const user of users) {
          const lim = limitsFor(db, user)
          assert.ok(l.totalOfPool(key(db, user)) <= lim.pool + lim.reserve, `pool ${db}/${user}`)
        }
      }
      assert.ok(l.totalOfDb('app') <= 8, 'max_db_connections of app')
      assert.ok(l.totalOfUser('alice') <= 7, 'max_user_connections of alice')
    }
  }), { numRuns: 300 })
})

// ---- client slots: max_client_conn and the per-database and per-user client limits ----

test('client slots: granted from free room; at the limit, others are asked for slots they do not use', () => {
  const l = new ClientLedger()
  assert.deepEqual(l.ask(1, '*', 10, 0, 6, 0), [{ kind: 'grant', worker: 1, key: '*', n: 6 }])
  assert.deepEqual(l.ask(2, '*', 10, 0, 6, 0), [{ kind: 'grant', worker: 2, key: '*', n: 4 }], 'only what is left')
  // Worker 2 uses its 4 and asks again; worker 1 uses 3 of its 6: it is asked to give back.
  l.release(1, '*', 0, 3, 0)
  assert.deepEqual(l.ask(2, '*', 10, 4, 2, 0), [{ kind: 'reclaim', worker: 1, key: '*' }])
  assert.deepEqual(l.release(1, '*', 3, 3, 1), [{ kind: 'grant', worker: 2, key: '*', n: 2 }])
  assert.equal(l.total('*'), 9)
})

test('client slots: at the limit, every other holder is asked (what it reported in use may be stale); with no other holder, no at once', () => {
  const l = new ClientLedger()
  l.ask(1, '*', 4, 4, 4, 0)
  assert.deepEqual(l.ask(2, '*', 4, 0, 1, 0), [{ kind: 'reclaim', worker: 1, key: '*' }], 'worker 1 said 4 in use when it asked, but clients may have left since')
  const c = new ClientLedger()
  c.ask(1, '*', 4, 4, 4, 0)
  assert.deepEqual(c.ask(1, '*', 4, 4, 1, 0), [{ kind: 'deny', worker: 1, key: '*' }], 'nobody else holds any')
})

test('client slots: an ask nobody can meet is answered no when the reclaims come back empty, or after a deadline', () => {
  const l = new ClientLedger()
  l.ask(1, '*', 4, 2, 4, 0)
  assert.deepEqual(l.ask(2, '*', 4, 0, 1, 0), [{ kind: 'reclaim', worker: 1, key: '*' }])
  // Worker 1's clients logged in meanwhile: it has nothing to give.
  assert.deepEqual(l.release(1, '*', 0, 4, 5), [{ kind: 'deny', worker: 2, key: '*' }])
  const m = new ClientLedger()
  m.ask(1, '*', 4, 2, 4, 0)
  m.ask(2, '*', 4, 0, 1, 0)
  assert.deepEqual(m.tick(CLIENT_ASK_TIMEOUT_MS - 1), [])
  assert.deepEqual(m.tick(CLIENT_ASK_TIMEOUT_MS), [{ kind: 'deny', worker: 2, key: '*' }])
})

test('client slots: a dead worker\'s slots serve the next ask', () => {
  const l = new ClientLedger()
  l.ask(1, 'db:app', 3, 3, 3, 0)
  assert.deepEqual(l.ask(2, 'db:app', 3, 0, 1, 0), [{ kind: 'reclaim', worker: 1, key: 'db:app' }])
  assert.deepEqual(l.dropWorker(1, 1), [{ kind: 'grant', worker: 2, key: 'db:app', n: 1 }], 'the waiting ask is served')
})
