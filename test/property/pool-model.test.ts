// The pool against a model: random runs of acquire, release, pause, resume, kill, RECONNECT, client
// and server closes, server logins, internal queries, cancel requests in flight and janitor sweeps
// on a controlled clock,
// applied both to a real Pool (driven through its own seams, PooledClient, PooledServer and
// ServerFactory, with tiny fakes) and to a plain model of the same rules written with arrays.
// After every step each connection's state and link, the waiters' order, the idle servers' order
// and the notices and failures must agree, and the pool's own invariants must hold: list
// membership equals state, links are symmetric, never more servers than pool_size +
// reserve_pool_size, no idle server while someone waits, no waiter older than query_wait_timeout
// after a sweep, a waiter always has a server on the way while the pool may open one, and a
// server with a cancel in flight is never linked to a client other than the one it was sent for.
//
// The model covers what these settings exercise: transaction or session mode, server_reset_query
// (always or not), LIFO or round-robin reuse, reserve_pool_size/timeout, server_idle_timeout,
// query_wait_timeout, query_wait_notify and server_connect_timeout. server_check_query is off
// (no Used servers), min_pool_size 0 and one pool per database and user.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Pool, SharedCount } from '../../src/pool/pool.ts'
import type { PoolSettings } from '../../src/config/effective.ts'
import { ClientState, ServerState, type ClientFailure, type PooledClient, type PooledServer } from '../../src/pool/states.ts'
import { sweepPool, type JanitorSettings } from '../../src/pool/janitor.ts'
import { ClientErrors } from '../../src/protocol/client-errors.ts'
import type { IntrusiveList } from '../../src/util/intrusive-list.ts'

// ---- the real pool, with fakes for the connections ----

class World {
  now = 1_000_000
  isHostDown = false
  readonly clients: FakeClient[] = []
  readonly servers: FakeServer[] = []
  readonly pool: Pool

  constructor(readonly settings: PoolSettings, readonly janitor: JanitorSettings) {
    this.pool = new Pool('db', 'user', settings, new SharedCount(), new SharedCount(), {
      openServer: () => {
        if (this.isHostDown) return null
        const s = new FakeServer(this.servers.length, this)
        this.servers.push(s)
        return s
      },
    })
  }
}

class FakeClient implements PooledClient {
  // Not on any pool list yet: the runtime's pre-pool login list hands clients over detached.
  state: ClientState = ClientState.Login
  server: PooledServer | null = null
  prev: PooledClient | null = null
  next: PooledClient | null = null
  list: object | null = null
  waitSinceMs = 0
  requestAtMs: number
  readonly connectedAtMs: number
  isWaitNoticeSent = false
  isClosed = false
  failure: ClientFailure | null = null
  notices = 0

  constructor(readonly id: number, readonly w: World) {
    this.connectedAtMs = w.now
    this.requestAtMs = w.now
  }

  onServerAssigned(): void { /* the model says which server; the state checks compare it */ }

  // The proxy finishes the login later; at once is a legal schedule too.
  onPoolReady(): void {
    this.w.pool.clientLoggedIn(this)
  }

  /** What ClientConn.close does with the pool: release a ready server, close a busy one, leave. */
  fail(err: ClientFailure): void {
    if (this.isClosed) return
    this.isClosed = true
    this.failure = err
    const pool = this.w.pool
    const s = this.server as FakeServer | null
    if (s !== null) {
      if (s.isReady) pool.release(s, this.w.now)
      else {
        s.client = null
        this.server = null
        s.close('client disconnected while server was not ready')
      }
    }
    pool.removeClient(this)
    pool.kick(this.w.now)
  }

  notice(): void {
    this.notices++
  }
}

class FakeServer implements PooledServer {
  state: ServerState = ServerState.Login
  client: PooledClient | null = null
  prev: PooledServer | null = null
  next: PooledServer | null = null
  list: object | null = null
  closeOnRelease = false
  connectedAtMs: number
  idleSinceMs = 0
  readyAtMs = 0
  isReady = true
  cancelsInFlight = 0
  isCancelUnsure = false
  /** The client whose query the cancels in flight were sent to stop. */
  cancelFor: PooledClient | null = null
  readonly isIdleInTransaction = false
  readonly transactionStartUs = 0
  readonly lifetimeFactor = 1
  readonly retireAtMs = 0
  isClosed = false
  internal: ((ok: boolean) => void) | null = null

  constructor(readonly id: number, readonly w: World) {
    this.connectedAtMs = w.now
  }

  runInternal(_sql: string, done: (ok: boolean) => void): void {
    this.internal = done
  }

  /** What ServerConn's cancel target does when a cancel connection ends. */
  cancelEnded(isConfirmed: boolean): void {
    this.cancelsInFlight--
    if (!isConfirmed) this.isCancelUnsure = true
    if (this.state !== ServerState.BeingCanceled) return
    if (this.isCancelUnsure) this.close('a cancel request for it was not confirmed')
    else this.w.pool.cancelsDone(this, this.w.now)
  }

  /** What ServerConn.close does with the pool. */
  close(_reason?: string, isHostToBlame = true): void {
    if (this.isClosed) return
    this.isClosed = true
    const pool = this.w.pool
    const client = this.client as FakeClient | null
    if (this.state === ServerState.Login && isHostToBlame) pool.serverLoginFailed(this, null, this.w.now)
    else pool.serverClosed(this)
    const done = this.internal
    this.internal = null
    if (client !== null) client.fail(ClientErrors.serverConnCrashed)
    else if (done !== null) done(false)
    pool.kick(this.w.now)
  }
}

// ---- the model ----

type MClientState = 'login' | 'active' | 'waiting' | 'closed'
type MServerState = 'login' | 'idle' | 'active' | 'tested' | 'being_canceled' | 'closed'
interface MClient { state: MClientState; server: number | null; connectedAt: number; waitSince: number; isNoticed: boolean; notices: number; failure: string | null }
interface MServer {
  state: MServerState; client: number | null; connectedAt: number; idleSince: number; isReady: boolean; closeOnRelease: boolean
  /** Cancel requests in flight, whether one ended unconfirmed, and the client they were for. */
  cancels: number; isCancelUnsure: boolean; cancelFor: number | null
}

class Model {
  now = 1_000_000
  isPaused = false
  isHostDown = false
  hasWelcome = false
  assignments = 0
  readonly clients: MClient[] = []
  readonly servers: MServer[] = []
  /** Waiting clients, first come first served. */
  readonly queue: number[] = []
  /** Idle servers in list order: the first is the next one used. */
  readonly idle: number[] = []

  constructor(readonly st: PoolSettings, readonly js: JanitorSettings) {}

  live(state: MServerState): number[] {
    return this.servers.flatMap((s, i) => (s.state === state ? [i] : []))
  }

  get serverCount(): number {
    return this.servers.filter((s) => s.state !== 'closed').length
  }

  allowed(): number {
    const first = this.queue[0]
    const reserve = this.st.reserve_pool_size > 0 && first !== undefined && this.now - this.clients[first].waitSince >= this.st.reserve_pool_timeout * 1000
    return this.st.pool_size + (reserve ? this.st.reserve_pool_size : 0)
  }

  /** Open servers while waiters outnumber the logins on the way and limits allow. */
  launch(): void {
    const loginClients = this.clients.filter((c) => c.state === 'login').length
    const wanted = this.queue.length + (this.hasWelcome ? 0 : Math.min(1, loginClients))
    while (this.live('login').length + this.live('tested').length < wanted) {
      if (this.serverCount >= this.allowed() || this.isHostDown) break
      this.servers.push({ state: 'login', client: null, connectedAt: this.now, idleSince: 0, isReady: true, closeOnRelease: false, cancels: 0, isCancelUnsure: false, cancelFor: null })
    }
  }

  kick(): void {
    if (this.isPaused) return
    while (this.queue.length > 0 && this.idle.length > 0) this.ready(this.idle[0])
    this.launch()
  }

  link(c: number, s: number): void {
    this.dropIdle(s)
    this.clients[c].state = 'active'
    this.clients[c].server = s
    this.servers[s].state = 'active'
    this.servers[s].client = c
    this.assignments++
  }

  dropIdle(s: number): void {
    const at = this.idle.indexOf(s)
    if (at >= 0) this.idle.splice(at, 1)
  }

  acquire(c: number): boolean {
    if (!this.isPaused && this.queue.length === 0 && this.idle.length > 0) {
      this.link(c, this.idle[0])
      return true
    }
    const mc = this.clients[c]
    mc.state = 'waiting'
    mc.waitSince = this.now
    mc.isNoticed = false
    this.queue.push(c)
    if (!this.isPaused) this.launch()
    return false
  }

  ready(s: number): void {
    if (this.servers[s].closeOnRelease) {
      this.closeServer(s)
      return
    }
    this.servers[s].idleSince = this.now
    this.dropIdle(s)
    const waiter = this.isPaused ? undefined : this.queue.shift()
    if (waiter !== undefined) {
      this.link(waiter, s)
      return
    }
    this.servers[s].state = 'idle'
    if (this.st.server_round_robin) this.idle.push(s)
    else this.idle.unshift(s)
  }

  unlink(s: number): void {
    const c = this.servers[s].client
    if (c === null) return
    this.clients[c].server = null
    this.servers[s].client = null
  }

  release(s: number): void {
    this.unlink(s)
    const ms = this.servers[s]
    if (ms.closeOnRelease || ms.isCancelUnsure) {
      this.closeServer(s)
      return
    }
    if (ms.cancels > 0) {
      ms.state = 'being_canceled'
      return
    }
    const st = this.st
    if (st.server_reset_query !== '' && (st.pool_mode === 'session' || st.server_reset_query_always)) {
      this.servers[s].state = 'tested'
      return
    }
    this.ready(s)
  }

  closeServer(s: number): void {
    const ms = this.servers[s]
    if (ms.state === 'closed') return
    const c = ms.client
    this.unlink(s)
    this.dropIdle(s)
    ms.state = 'closed'
    if (c !== null) this.failClient(c, ClientErrors.serverConnCrashed.message)
    this.kick()
  }

  failClient(c: number, why: string): void {
    const mc = this.clients[c]
    if (mc.state === 'closed') return
    mc.failure = why
    const s = mc.server
    if (s !== null) {
      if (this.servers[s].isReady) this.release(s)
      else {
        this.unlink(s)
        this.closeServer(s)
      }
    }
    mc.state = 'closed'
    const at = this.queue.indexOf(c)
    if (at >= 0) this.queue.splice(at, 1)
    this.kick()
  }

  /** RECONNECT: logins and idle servers close now, busy ones are marked; new clients wait for a fresh login. */
  retire(): void {
    this.hasWelcome = false
    for (const s of [...this.live('login'), ...this.idle]) this.closeServer(s)
    for (const s of this.servers) if (s.state === 'active' || s.state === 'tested' || s.state === 'being_canceled') s.closeOnRelease = true
    this.kick()
  }

  serverLoggedIn(s: number): void {
    if (!this.hasWelcome) {
      this.hasWelcome = true
      for (const c of this.clients) if (c.state === 'login') c.state = 'active'
    }
    this.ready(s)
  }

  /** The janitor's sweep, for the settings this model covers, in the janitor's order. */
  sweep(): void {
    const js = this.js
    const st = this.st
    if (js.query_wait_timeout > 0) {
      while (this.queue.length > 0 && this.now - this.clients[this.queue[0]].waitSince > js.query_wait_timeout * 1000) {
        this.failClient(this.queue[0], ClientErrors.queryWaitTimeout.message)
      }
    }
    if (js.query_wait_notify > 0) {
      for (const c of this.queue) {
        const mc = this.clients[c]
        if (this.now - mc.waitSince <= js.query_wait_notify * 1000) break
        if (!mc.isNoticed) {
          mc.isNoticed = true
          mc.notices++
        }
      }
    }
    // A client still waiting for the pool's first login waits for a server too.
    if (js.query_wait_timeout > 0) {
      for (const [i, c] of this.clients.entries()) {
        if (c.state === 'login' && this.now - c.connectedAt > js.query_wait_timeout * 1000) this.failClient(i, ClientErrors.queryWaitTimeout.message)
      }
    }
    if (js.server_connect_timeout > 0) {
      for (const s of this.live('login')) {
        if (this.now - this.servers[s].connectedAt > js.server_connect_timeout * 1000) this.closeServer(s)
      }
    }
    for (const s of [...this.idle]) {
      const ms = this.servers[s]
      if (ms.state !== 'idle') continue
      if (ms.closeOnRelease || this.isPaused) this.closeServer(s)
      else if (st.server_idle_timeout > 0 && this.now - ms.idleSince > st.server_idle_timeout * 1000) this.closeServer(s)
    }
    for (let extra = this.serverCount - (st.pool_size + st.reserve_pool_size); extra > 0 && this.idle.length > 0; extra--) {
      this.closeServer(this.idle[0])
    }
    this.kick()
  }
}

// ---- comparing the two ----

const CLIENT_LISTS: Array<[ClientState, (p: Pool) => IntrusiveList<PooledClient>]> = [
  [ClientState.Login, (p) => p.lists.loginClients],
  [ClientState.Active, (p) => p.lists.activeClients],
  [ClientState.Waiting, (p) => p.lists.waitingClients],
]
const SERVER_LISTS: Array<[ServerState, (p: Pool) => IntrusiveList<PooledServer>]> = [
  [ServerState.BeingCanceled, (p) => p.lists.beingCanceledServers],
  [ServerState.Login, (p) => p.lists.loginServers],
  [ServerState.Idle, (p) => p.lists.idleServers],
  [ServerState.Used, (p) => p.lists.usedServers],
  [ServerState.Active, (p) => p.lists.activeServers],
  [ServerState.Tested, (p) => p.lists.testedServers],
]

function ids(list: Iterable<{ id: number }>): number[] {
  return [...list].map((x) => x.id)
}

/** The pool's own invariants, whatever the model says. */
function checkInvariants(w: World): void {
  const p = w.pool
  for (const [state, listOf] of [...CLIENT_LISTS, ...SERVER_LISTS]) {
    const list = listOf(p) as IntrusiveList<PooledClient | PooledServer>
    let n = 0
    for (const x of list) {
      n++
      assert.equal(x.state, state, `a connection on the ${state} list says ${x.state}`)
      assert.equal(x.list, list)
    }
    assert.equal(n, list.size, `${state} list size`)
  }
  for (const c of w.clients) {
    if (c.isClosed) {
      assert.equal(c.state, ClientState.Closed, `closed client C${c.id} in state ${c.state}`)
      assert.equal(c.list, null, `closed client C${c.id} still on a list`)
      assert.equal(c.server, null)
      continue
    }
    assert.equal(c.list, p.lists.clientList(c.state), `client C${c.id} in ${c.state} is not on that list`)
    if (c.server !== null) {
      assert.equal(c.state, ClientState.Active, `client C${c.id} has a server in ${c.state}`)
      assert.equal(c.server.client, c, `C${c.id}'s server does not point back`)
    }
  }
  for (const s of w.servers) {
    if (s.isClosed) {
      assert.equal(s.state, ServerState.Closed, `closed server S${s.id} in state ${s.state}`)
      assert.equal(s.list, null, `closed server S${s.id} still on a list`)
      continue
    }
    assert.equal(s.list, p.lists.serverList(s.state), `server S${s.id} in ${s.state} is not on that list`)
    assert.equal(s.client !== null, s.state === ServerState.Active, `server S${s.id} in ${s.state} linked=${s.client !== null}`)
    if (s.client !== null) assert.equal(s.client.server, s)
    if (s.cancelsInFlight > 0 && s.client !== null) {
      assert.equal(s.client, s.cancelFor, `S${s.id} went to another client while a cancel for C${(s.cancelFor as FakeClient).id}'s query was in flight`)
    }
  }
  const st = w.settings
  assert.ok(p.lists.serverCount <= st.pool_size + st.reserve_pool_size, `${p.lists.serverCount} servers > pool_size ${st.pool_size} + reserve ${st.reserve_pool_size}`)
  assert.equal(p.dbCount.servers, p.lists.serverCount, 'max_db_connections count')
  assert.equal(p.userCount.servers, p.lists.serverCount, 'max_user_connections count')
  if (!p.isPaused) assert.ok(p.lists.waitingClients.size === 0 || p.lists.idleServers.size === 0, 'an idle server while a client waits')
}

/** After a sweep: nobody waits past query_wait_timeout, and every waiter has a server on the way if one may open. */
function checkAfterSweep(w: World): void {
  const p = w.pool
  const q = w.janitor.query_wait_timeout
  if (q > 0) for (const c of p.lists.waitingClients) assert.ok(w.now - c.waitSinceMs <= q * 1000, `C${(c as FakeClient).id} waits past query_wait_timeout`)
  if (!p.isPaused && !w.isHostDown) {
    const coming = p.lists.loginServers.size + p.lists.testedServers.size
    assert.ok(coming >= p.lists.waitingClients.size || p.lists.serverCount >= p.allowedServers(w.now),
      `${p.lists.waitingClients.size} waiting, ${coming} servers on the way, ${p.lists.serverCount} of ${p.allowedServers(w.now)} open`)
  }
}

function checkAgainstModel(m: Model, w: World): void {
  checkInvariants(w)
  const p = w.pool
  assert.equal(w.servers.length, m.servers.length, 'servers opened')
  for (const [i, mc] of m.clients.entries()) {
    const c = w.clients[i]
    assert.equal(c.isClosed ? 'closed' : c.state, mc.state, `C${i} state`)
    assert.equal((c.server as FakeServer | null)?.id ?? null, mc.server, `C${i} server`)
    assert.equal(c.failure?.message ?? null, mc.failure, `C${i} failure`)
    assert.equal(c.notices, mc.notices, `C${i} notices`)
  }
  for (const [i, ms] of m.servers.entries()) {
    const s = w.servers[i]
    assert.equal(s.isClosed ? 'closed' : s.state, ms.state, `S${i} state`)
    assert.equal((s.client as FakeClient | null)?.id ?? null, ms.client, `S${i} client`)
    assert.equal(s.cancelsInFlight, ms.cancels, `S${i} cancels in flight`)
  }
  assert.deepEqual(ids(p.lists.waitingClients as Iterable<FakeClient>), m.queue, 'waiters in arrival order')
  assert.deepEqual(ids(p.lists.idleServers as Iterable<FakeServer>), m.idle, 'idle servers in reuse order')
  assert.equal(p.stats.serverAssignments, m.assignments, 'server assignments')
}

// ---- commands ----

type Cmd = fc.Command<Model, World>

/** The i-th (modulo) of the model's clients or servers that a command may act on. */
function pick<T>(items: T[], i: number): T | undefined {
  return items.length === 0 ? undefined : items[i % items.length]
}
const clientsIn = (m: Model, f: (c: MClient) => boolean): number[] => m.clients.flatMap((c, i) => (f(c) ? [i] : []))
const serversIn = (m: Model, f: (s: MServer) => boolean): number[] => m.servers.flatMap((s, i) => (f(s) ? [i] : []))

class Connect implements Cmd {
  check(): boolean { return true }
  run(m: Model, w: World): void {
    const id = m.clients.length
    m.clients.push({ state: 'login', server: null, connectedAt: m.now, waitSince: 0, isNoticed: false, notices: 0, failure: null })
    if (!m.hasWelcome) m.launch()
    else m.clients[id].state = 'active'
    const c = new FakeClient(id, w)
    w.clients.push(c)
    w.pool.addLoginClient(c, w.now)
    if (w.pool.isReady) w.pool.clientLoggedIn(c)
    checkAgainstModel(m, w)
  }
  toString(): string { return 'connect' }
}

class Acquire implements Cmd {
  constructor(readonly i: number) {}
  check(m: Model): boolean { return clientsIn(m, (c) => c.state === 'active' && c.server === null).length > 0 }
  run(m: Model, w: World): void {
    const c = pick(clientsIn(m, (x) => x.state === 'active' && x.server === null), this.i) as number
    const expected = m.acquire(c)
    w.clients[c].requestAtMs = w.now
    assert.equal(w.pool.acquire(w.clients[c], w.now), expected, `acquire by C${c}`)
    checkAgainstModel(m, w)
  }
  toString(): string { return `acquire(${this.i})` }
}

/** The linked client's server sends ReadyForQuery(idle): in transaction mode the proxy releases it. */
class Release implements Cmd {
  constructor(readonly i: number) {}
  check(m: Model): boolean { return serversIn(m, (s) => s.client !== null && s.isReady).length > 0 }
  run(m: Model, w: World): void {
    const s = pick(serversIn(m, (x) => x.client !== null && x.isReady), this.i) as number
    m.release(s)
    w.pool.release(w.servers[s], w.now)
    checkAgainstModel(m, w)
  }
  toString(): string { return `release(${this.i})` }
}

/** A query goes out (the server owes a response) or its ReadyForQuery comes back. */
class Busy implements Cmd {
  constructor(readonly i: number, readonly isBusy: boolean) {}
  check(m: Model): boolean { return serversIn(m, (s) => s.client !== null).length > 0 }
  run(m: Model, w: World): void {
    const s = pick(serversIn(m, (x) => x.client !== null), this.i) as number
    m.servers[s].isReady = !this.isBusy
    w.servers[s].isReady = !this.isBusy
    checkAgainstModel(m, w)
  }
  toString(): string { return `${this.isBusy ? 'query' : 'ready'}(${this.i})` }
}

class CloseClient implements Cmd {
  constructor(readonly i: number) {}
  check(m: Model): boolean { return clientsIn(m, (c) => c.state !== 'closed').length > 0 }
  run(m: Model, w: World): void {
    const c = pick(clientsIn(m, (x) => x.state !== 'closed'), this.i) as number
    m.failClient(c, ClientErrors.killedByAdmin.message)
    w.clients[c].fail(ClientErrors.killedByAdmin)
    checkAgainstModel(m, w)
  }
  toString(): string { return `closeClient(${this.i})` }
}

/** A server connection ends: in Login that is a failed login, later a crash or a kill. */
class CloseServer implements Cmd {
  constructor(readonly i: number) {}
  check(m: Model): boolean { return serversIn(m, (s) => s.state !== 'closed').length > 0 }
  run(m: Model, w: World): void {
    const s = pick(serversIn(m, (x) => x.state !== 'closed'), this.i) as number
    m.closeServer(s)
    w.servers[s].close()
    checkAgainstModel(m, w)
  }
  toString(): string { return `closeServer(${this.i})` }
}

class LoginDone implements Cmd {
  constructor(readonly i: number) {}
  check(m: Model): boolean { return serversIn(m, (s) => s.state === 'login').length > 0 }
  run(m: Model, w: World): void {
    const s = pick(serversIn(m, (x) => x.state === 'login'), this.i) as number
    m.serverLoggedIn(s)
    w.pool.serverLoggedIn(w.servers[s], new Map([['server_version', '17']]), w.now)
    checkAgainstModel(m, w)
  }
  toString(): string { return `loginDone(${this.i})` }
}

/** server_reset_query's ReadyForQuery (ok) or its error (not ok). */
class InternalDone implements Cmd {
  constructor(readonly i: number, readonly ok: boolean) {}
  check(m: Model): boolean { return serversIn(m, (s) => s.state === 'tested').length > 0 }
  run(m: Model, w: World): void {
    const s = pick(serversIn(m, (x) => x.state === 'tested'), this.i) as number
    if (this.ok) m.ready(s)
    else m.closeServer(s)
    const fs = w.servers[s]
    const done = fs.internal as (ok: boolean) => void
    assert.notEqual(done, null, `S${s} in Tested runs no query`)
    fs.internal = null
    done(this.ok) // the pool closes a server whose reset failed
    checkAgainstModel(m, w)
  }
  toString(): string { return `internalDone(${this.i}, ${this.ok})` }
}

class Pause implements Cmd {
  check(m: Model): boolean { return !m.isPaused }
  run(m: Model, w: World): void {
    m.isPaused = true
    w.pool.isPaused = true
    checkAgainstModel(m, w)
  }
  toString(): string { return 'pause' }
}

/** RESUME, as Runtime.resume does it. */
class Resume implements Cmd {
  check(m: Model): boolean { return m.isPaused }
  run(m: Model, w: World): void {
    m.isPaused = false
    m.kick()
    w.pool.isPaused = false
    w.pool.kick(w.now)
    checkAgainstModel(m, w)
  }
  toString(): string { return 'resume' }
}

/** KILL db, as Runtime.kill does it: paused, every client failed, every server closed. */
class Kill implements Cmd {
  check(): boolean { return true }
  run(m: Model, w: World): void {
    m.isPaused = true
    for (const [i, c] of m.clients.entries()) if (c.state !== 'closed') m.failClient(i, ClientErrors.databaseRemoved.message)
    for (const [i, s] of m.servers.entries()) if (s.state !== 'closed') m.closeServer(i)
    const p = w.pool
    p.isPaused = true
    for (const c of p.lists.allClients()) c.fail(ClientErrors.databaseRemoved)
    for (const s of p.lists.allServers()) s.close('database removed')
    assert.equal(p.lists.clientCount + p.lists.serverCount, 0, 'KILL left connections')
    checkAgainstModel(m, w)
  }
  toString(): string { return 'kill' }
}

/** RECONNECT: idle servers and logins close now, busy ones when released; no client gets one again. */
class Reconnect implements Cmd {
  check(): boolean { return true }
  run(m: Model, w: World): void {
    m.retire()
    w.pool.retireServers('obsolete connection (RECONNECT)', w.now)
    checkAgainstModel(m, w)
    for (const s of [...w.pool.lists.idleServers, ...w.pool.lists.loginServers]) {
      assert.equal(s.closeOnRelease, false, `S${(s as FakeServer).id} from before RECONNECT is still idle or logging in`)
    }
  }
  toString(): string { return 'reconnect' }
}

/** The backend host becomes unusable (the factory opens nothing) or usable again. */
class Host implements Cmd {
  constructor(readonly isDown: boolean) {}
  check(m: Model): boolean { return m.isHostDown !== this.isDown }
  run(m: Model, w: World): void {
    m.isHostDown = this.isDown
    w.isHostDown = this.isDown
    checkAgainstModel(m, w)
  }
  toString(): string { return this.isDown ? 'hostDown' : 'hostUp' }
}

/**
 * A client's cancel request reaches its server's query and goes out to PostgreSQL (what
 * ServerConn.cancelTargetFor's begin does: only while the query runs).
 */
class CancelSent implements Cmd {
  constructor(readonly i: number) {}
  check(m: Model): boolean { return serversIn(m, (s) => s.client !== null && !s.isReady).length > 0 }
  run(m: Model, w: World): void {
    const s = pick(serversIn(m, (x) => x.client !== null && !x.isReady), this.i) as number
    const ms = m.servers[s]
    ms.cancels++
    ms.cancelFor = ms.client
    const fs = w.servers[s]
    fs.cancelsInFlight++
    fs.cancelFor = fs.client
    checkAgainstModel(m, w)
  }
  toString(): string { return `cancelSent(${this.i})` }
}

/** PostgreSQL closes a cancel connection (confirmed), or it times out (not: the server is never reused). */
class CancelDone implements Cmd {
  constructor(readonly i: number, readonly isConfirmed: boolean) {}
  check(m: Model): boolean { return serversIn(m, (s) => s.cancels > 0).length > 0 }
  run(m: Model, w: World): void {
    const s = pick(serversIn(m, (x) => x.cancels > 0), this.i) as number
    const ms = m.servers[s]
    ms.cancels--
    if (!this.isConfirmed) ms.isCancelUnsure = true
    if (ms.state === 'being_canceled') {
      if (ms.isCancelUnsure) m.closeServer(s)
      else if (ms.cancels === 0) m.release(s)
    }
    w.servers[s].cancelEnded(this.isConfirmed)
    checkAgainstModel(m, w)
  }
  toString(): string { return `cancelDone(${this.i}, ${this.isConfirmed})` }
}

/** Time passes, then the janitor sweeps. */
class Tick implements Cmd {
  constructor(readonly ms: number) {}
  check(): boolean { return true }
  run(m: Model, w: World): void {
    m.now += this.ms
    w.now += this.ms
    m.sweep()
    sweepPool(w.pool, w.janitor, w.now)
    checkAgainstModel(m, w)
    checkAfterSweep(w)
  }
  toString(): string { return `tick(${this.ms})` }
}

const arbSettings = fc.record({
  pool_mode: fc.constantFrom('transaction' as const, 'session' as const),
  pool_size: fc.integer({ min: 1, max: 3 }),
  reserve_pool_size: fc.integer({ min: 0, max: 2 }),
  reserve_pool_timeout: fc.integer({ min: 0, max: 3 }),
  server_reset_query: fc.constantFrom('', 'DISCARD ALL'),
  server_reset_query_always: fc.boolean(),
  server_round_robin: fc.boolean(),
  server_idle_timeout: fc.integer({ min: 0, max: 5 }),
}).map((s): PoolSettings => ({
  ...s,
  min_pool_size: 0,
  max_db_connections: 0,
  max_user_connections: 0,
  server_check_query: null,
  server_check_delay: 30,
  server_login_retry: 0,
  server_lifetime: 3600,
  query_timeout: 0,
  idle_transaction_timeout: 0,
  transaction_timeout: 0,
  client_idle_timeout: 0,
}))

const arbJanitor = fc.record({
  query_wait_timeout: fc.integer({ min: 0, max: 5 }),
  query_wait_notify: fc.integer({ min: 0, max: 3 }),
  server_connect_timeout: fc.integer({ min: 0, max: 5 }),
}).map((j): JanitorSettings => ({ ...j, client_login_timeout: 0, server_fast_close: false }))

const index = fc.nat(20)
/** fc.commands picks among its arbitraries evenly; listing one n times makes it n times as likely. */
const times = <T>(n: number, arb: fc.Arbitrary<T>): Array<fc.Arbitrary<T>> => new Array<fc.Arbitrary<T>>(n).fill(arb)
const arbCommands = fc.commands<Model, World>([
  ...times(4, fc.constant(new Connect())),
  ...times(5, index.map((i) => new Acquire(i))),
  ...times(4, index.map((i) => new Release(i))),
  ...times(2, fc.tuple(index, fc.boolean()).map(([i, b]) => new Busy(i, b))),
  ...times(2, index.map((i) => new CloseClient(i))),
  index.map((i) => new CloseServer(i)),
  ...times(4, index.map((i) => new LoginDone(i))),
  ...times(2, fc.tuple(index, fc.boolean()).map(([i, ok]) => new InternalDone(i, ok))),
  ...times(2, index.map((i) => new CancelSent(i))),
  ...times(2, fc.tuple(index, fc.nat(4)).map(([i, n]) => new CancelDone(i, n !== 0))),
  fc.constant(new Pause()),
  ...times(2, fc.constant(new Resume())),
  fc.constant(new Reconnect()),
  fc.boolean().map((b) => new Host(b)),
  ...times(4, fc.integer({ min: 0, max: 2500 }).map((ms) => new Tick(ms))),
  // KILL ends everything; rarely, so that runs build up waiters and servers first.
  fc.nat(4).map((n) => (n === 0 ? new Kill() : new Tick(100))),
], { maxCommands: 120, size: 'max' })

test('the pool agrees with its model over random runs of acquire, release, pause, kill, closes, logins and sweeps', () => {
  fc.assert(
    fc.property(arbSettings, arbJanitor, arbCommands, (settings, janitor, cmds) => {
      const w = new World(settings, janitor)
      // release() and the reset query's callback read Date.now(); they must see the same clock.
      const realNow = Date.now
      Date.now = () => w.now
      try {
        fc.modelRun(() => ({ model: new Model(settings, janitor), real: w }), cmds)
      } finally {
        Date.now = realNow
      }
    }),
    { numRuns: 400 },
  )
})
