// PoolControl is the seam that will carry commands to worker processes and fleet nodes, so each
// command must mean the same when its message and its answer are JSON-encoded on the way. Here
// every command runs twice on identical PoolSets (socket-free fake clients and servers that
// implement the pool's own interfaces): once called directly, once through a transport that
// stringifies and parses both ways. Acks, counts and the state left behind must match, and each
// row also checks the effect itself, so a command that did nothing would fail.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { loadConfigFromText } from '../../src/config/load.ts'
import { entryFor } from '../../src/config/effective.ts'
import type { Config } from '../../src/config/types.ts'
import { Logger } from '../../src/observe/log.ts'
import type { Ack, PoolCommand, PoolControl, PoolRow } from '../../src/pool/control.ts'
import { LocalPoolControl } from '../../src/pool/local-control.ts'
import { PoolSet } from '../../src/pool/pool-set.ts'
import type { Pool } from '../../src/pool/pool.ts'
import { ClientState, ServerState, type ClientFailure, type PooledClient, type PooledServer } from '../../src/pool/states.ts'

const INI = `[databases]
app = host=10.0.0.1 port=5432
other = host=10.0.0.2 port=5432
[pgbouncer]
pool_mode = transaction
default_pool_size = 4
`
const APP_HOST = '10.0.0.1:5432'

class FakeServer implements PooledServer {
  state: ServerState = ServerState.Login
  client: PooledClient | null = null
  closeOnRelease = false
  connectedAtMs = 0
  idleSinceMs = 0
  readyAtMs = 0
  /** False while a transaction is in flight. */
  isReady = true
  cancelsInFlight = 0
  isCancelUnsure = false
  isIdleInTransaction = false
  transactionStartUs = 0
  lifetimeFactor = 1
  retireAtMs = 0
  prev: PooledServer | null = null
  next: PooledServer | null = null
  list: object | null = null
  closedBecause: string | null = null

  constructor(readonly pool: Pool) {}

  runInternal(_sql: string, done: (ok: boolean) => void): void {
    done(true)
  }

  close(reason: string): void {
    if (this.closedBecause !== null) return
    this.closedBecause = reason
    const c = this.client
    this.pool.serverClosed(this)
    if (c !== null) c.fail({ sqlstate: '08006', message: 'server closed' } as unknown as ClientFailure)
  }
}

class FakeClient implements PooledClient {
  state: ClientState = ClientState.Login
  server: PooledServer | null = null
  waitSinceMs = 0
  connectedAtMs = 0
  requestAtMs = 0
  isWaitNoticeSent = false
  prev: PooledClient | null = null
  next: PooledClient | null = null
  list: object | null = null
  failedWith: string | null = null

  constructor(readonly pool: Pool) {}

  onServerAssigned(): void {}
  onPoolReady(): void {
    this.pool.clientLoggedIn(this)
  }
  notice(): void {}
  fail(err: ClientFailure): void {
    if (this.failedWith !== null) return
    this.failedWith = err.message
    if (this.server !== null) (this.server as FakeServer).close('client gone')
    this.pool.removeClient(this)
  }
}

/** One process's pools: app/alice with a client mid-transaction and one between transactions, other/bob with an idle server. */
interface World {
  set: PoolSet
  control: LocalPoolControl
  clients: FakeClient[]
  servers: FakeServer[]
}

function world(config: Config): World {
  const servers: FakeServer[] = []
  const set: PoolSet = new PoolSet({
    config: () => config,
    log: new Logger(() => {}),
    factory: { openServer: (pool) => { const s = new FakeServer(pool); servers.push(s); return s } },
    isOnHosts: (pool, hosts) => {
      const e = entryFor(config, pool.database)
      return e !== undefined && e.hosts.some((h, i) => hosts.includes(`${h}:${e.ports[i] ?? 5432}`))
    },
    onCreated: () => {},
    onDropped: () => {},
  })
  const clients: FakeClient[] = []
  const now = Date.now()
  const login = (db: string, user: string): FakeClient => {
    const pool = set.poolFor(db, user) as Pool
    const c = new FakeClient(pool)
    clients.push(c)
    pool.addLoginClient(c, now)
    return c
  }
  const busy = login('app', 'alice')
  const between = login('app', 'alice')
  const bob = login('other', 'bob')
  for (const s of [...servers]) s.pool.serverLoggedIn(s, new Map(), now)
  for (const c of [busy, between, bob]) assert.equal(c.state, ClientState.Active)
  // The busy client takes a server and starts a transaction; the others hold none.
  assert.equal(busy.pool.acquire(busy, now), true)
  ;(busy.server as FakeServer).isReady = false
  return { set, control: new LocalPoolControl(set, new Logger(() => {})), clients, servers }
}

/** What a worker or a fleet node would see: the command and its answer both cross as JSON text. */
function overJson(inner: PoolControl): PoolControl {
  const wire = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T
  return {
    run: async (cmd) => wire(await inner.run(wire(cmd))),
    counts: async (db) => wire(await inner.counts(wire(db))),
  }
}

/** The state a command may leave behind, as plain data. */
function snapshot(w: World): unknown {
  return {
    paused: { all: w.set.isPaused(null), app: w.set.isPaused('app'), other: w.set.isPaused('other') },
    disabled: [...w.set.disabledDbs].sort(),
    clients: w.clients.map((c) => [c.state, c.failedWith]),
    servers: w.servers.map((s) => [s.state, s.closeOnRelease, s.closedBecause]),
  }
}

const row = (rows: PoolRow[], db: string): PoolRow => rows.find((r) => r.database === db) as PoolRow

interface Case {
  name: string
  cmds: PoolCommand[]
  check(acks: Ack[], rows: PoolRow[], w: World): void
}

const CASES: Case[] = [
  {
    name: 'pause of a database with a transaction running times out, and stays paused',
    cmds: [{ op: 'pause', database: 'app', timeoutMs: 40 }],
    check: ([ack], rows) => {
      assert.deepEqual(ack, { ok: false, error: 'PAUSE timed out after 40 ms (pause_timeout_ms) waiting for app/alice (1 active); still paused, RESUME to lift it' })
      assert.equal(row(rows, 'app').paused, true)
      assert.equal(row(rows, 'other').paused, false)
    },
  },
  {
    name: 'pause of an idle database is acknowledged once nothing is busy',
    cmds: [{ op: 'pause', database: 'other', timeoutMs: 1000 }],
    check: ([ack], rows) => {
      assert.deepEqual(ack, { ok: true, pools: 1, cancelled: 0 })
      assert.equal(row(rows, 'other').paused, true)
    },
  },
  {
    name: 'resume of everything lifts a pause of one database',
    cmds: [{ op: 'pause', database: 'other', timeoutMs: 1000 }, { op: 'resume', database: null }],
    check: (acks, rows) => {
      assert.deepEqual(acks[1], { ok: true, pools: 2, cancelled: 0 })
      assert.equal(rows.some((r) => r.paused), false)
    },
  },
  {
    name: 'hold pauses the pools on the hosts, and RESUME does not lift a hold',
    cmds: [{ op: 'pause', database: null, timeoutMs: 20 }, { op: 'hold', hosts: [APP_HOST] }, { op: 'resume', database: null }],
    check: (acks, rows) => {
      assert.deepEqual(acks[1], { ok: true, pools: 1, cancelled: 0 })
      assert.equal(row(rows, 'app').paused, true, 'held')
      assert.equal(row(rows, 'other').paused, false, 'resumed')
    },
  },
  {
    name: 'drain closes the transaction still running at its deadline, release lets the pool go',
    cmds: [{ op: 'hold', hosts: [APP_HOST] }, { op: 'drain', hosts: [APP_HOST], timeoutMs: 30, reason: 'drain deadline' }, { op: 'release' }],
    check: (acks, rows, w) => {
      assert.deepEqual(acks[1], { ok: true, pools: 1, cancelled: 1 })
      assert.deepEqual(acks[2], { ok: true, pools: 1, cancelled: 0 })
      assert.equal(w.servers[0].closedBecause, 'drain deadline')
      assert.equal(row(rows, 'app').counts.sv_active, 0)
      assert.equal(row(rows, 'app').paused, false)
    },
  },
  {
    name: 'kill drops the clients and servers of one database and keeps it paused',
    cmds: [{ op: 'kill', database: 'other' }],
    check: ([ack], rows, w) => {
      assert.deepEqual(ack, { ok: true, pools: 1, cancelled: 0 })
      assert.deepEqual(row(rows, 'other'), { database: 'other', user: 'bob', pool_mode: 'transaction', pool_size: 4, paused: true, counts: { cl_active: 0, cl_waiting: 0, cl_pinned: 0, sv_active: 0, sv_idle: 0, sv_used: 0, sv_tested: 0, sv_being_canceled: 0, sv_login: 0, maxwait_ms: 0 }, databaseServers: 0, userServers: 0 })
      assert.equal(w.clients[2].failedWith, 'database removed')
      assert.equal(row(rows, 'app').counts.cl_active, 2, 'other databases untouched')
    },
  },
  {
    name: 'kill of every database (no name, PgBouncer 1.25) drops every pool and pauses each database, not the pooler',
    cmds: [{ op: 'kill', database: null }],
    check: ([ack], rows, w) => {
      assert.deepEqual(ack, { ok: true, pools: 2, cancelled: 0 })
      for (const db of ['app', 'other']) {
        const k = row(rows, db).counts
        assert.equal(row(rows, db).paused, true, `${db} paused`)
        assert.equal(k.cl_active + k.cl_waiting + k.sv_active + k.sv_idle + k.sv_login, 0, `${db} has nothing left`)
        assert.equal(w.set.isPaused(db), true, `${db} waits for RESUME ${db}`)
      }
      assert.equal(w.set.isPaused(null), false, 'as KILL db for each: the pooler as a whole is not paused')
      assert.deepEqual(w.clients.map((c) => c.failedWith), ['database removed', 'database removed', 'database removed'])
      assert.ok(w.servers.every((s) => s.closedBecause !== null), 'every server closed')
    },
  },
  {
    name: 'reconnect closes idle servers now and marks busy ones to close when released',
    cmds: [{ op: 'reconnect', database: null }],
    check: ([ack], _rows, w) => {
      assert.deepEqual(ack, { ok: true, pools: 2, cancelled: 0 })
      const [busy, idle] = w.servers
      assert.equal(busy.closedBecause, null)
      assert.equal(busy.closeOnRelease, true)
      assert.equal(idle.closedBecause, 'obsolete connection (RECONNECT)')
    },
  },
  {
    name: 'wait_close answers at once when no server is marked',
    cmds: [{ op: 'wait_close', database: 'other' }],
    check: ([ack]) => assert.deepEqual(ack, { ok: true, pools: 1, cancelled: 0 }),
  },
  {
    name: 'disable and enable',
    cmds: [{ op: 'disable', database: 'app' }, { op: 'disable', database: 'other' }, { op: 'enable', database: 'other' }],
    check: (acks, _rows, w) => {
      assert.ok(acks.every((a) => a.ok))
      assert.deepEqual([...w.set.disabledDbs], ['app'])
    },
  },
]

for (const c of CASES) {
  test(`PoolControl over JSON: ${c.name}`, async (t) => {
    const config = await configOf(t)
    const direct = world(config)
    const remote = world(config)
    const wire = overJson(remote.control)
    const acks: Ack[] = []
    const wireAcks: Ack[] = []
    for (const cmd of c.cmds) {
      acks.push(await direct.control.run(cmd))
      wireAcks.push(await wire.run(cmd))
    }
    assert.deepEqual(wireAcks, acks)
    const rows = await direct.control.counts(null)
    assert.deepEqual(await wire.counts(null), rows)
    assert.deepEqual(snapshot(remote), snapshot(direct))
    c.check(acks, rows, direct)
  })
}

test('PoolControl over JSON: wait_close resolves once the marked servers are gone', async (t) => {
  const w = world(await configOf(t))
  const wire = overJson(w.control)
  await wire.run({ op: 'reconnect', database: 'app' })
  let isAcked = false
  const waiting = wire.run({ op: 'wait_close', database: 'app' }).then((a) => { isAcked = true; return a })
  await new Promise((r) => setTimeout(r, 50))
  assert.equal(isAcked, false, 'a marked server is still open')
  w.servers[0].close('released after RECONNECT')
  assert.deepEqual(await waiting, { ok: true, pools: 1, cancelled: 0 })
})

test('PoolControl: a pool made while its hosts are held starts held', async (t) => {
  const w = world(await configOf(t))
  await w.control.run({ op: 'hold', hosts: [APP_HOST] })
  const late = w.set.poolFor('app', 'carol') as Pool
  assert.equal(late.isPaused, true)
  await w.control.run({ op: 'release' })
  assert.equal(late.isPaused, false)
  assert.deepEqual((await w.control.counts('app')).map((r) => r.user), ['alice', 'carol'])
})

async function configOf(t: { after(fn: () => void): void }): Promise<Config> {
  // The pools' waits use unref'd timers (they must never keep tidepool alive); this keeps the test alive.
  const alive = setInterval(() => {}, 1000)
  t.after(() => clearInterval(alive))
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-control-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const r = await loadConfigFromText(INI, join(dir, 'tidepool.ini'))
  assert.ok(r.ok, JSON.stringify(r))
  return r.config
}
