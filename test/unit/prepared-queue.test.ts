// The prepared-statement request queue of one server connection (proxy/prepared.ts), driven without
// sockets: requests are queued as ClientConn queues them, responses arrive as response codes. One
// entry per Parse, Bind, Describe, Execute, Close and Sync; each response pops its request; after an
// ErrorResponse to an extended-protocol request the server skips to Sync, and at ReadyForQuery the
// skipped entries are rolled back: an injected Parse that never ran leaves its statement unprepared
// on that server, an eviction that never ran leaves it prepared, and a client's Parse or Close that
// never ran is undone in the client's names.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { BackendCode, FrontendCode } from '../../src/protocol/codes.ts'
import * as build from '../../src/protocol/build.ts'
import {
  Act, CacheState, CLOSE_COMPLETE, ClientStatements, PARSE_COMPLETE, RequestRef, Resp, ServerPrepared,
  isDropAllTag, registrySize, statementFor, type Statement,
} from '../../src/proxy/prepared.ts'

let texts = 0
/** A statement of its own (a fresh query text), as the registry hands out for a Parse. */
function newStatement(): Statement {
  const query = Buffer.from(`SELECT ${++texts} -- prepared-queue test`)
  const body = Buffer.concat([query, Buffer.from([0, 0, 0])]) // query\0, then 0 parameter types
  return statementFor(body, 0, query.length, body.length, 0, null)
}

// The requests as ClientConn queues them (onWholeMessage, forwardRenamed, ensurePrepared, onStreamedMessage).

/** A client Parse of `name`: answered by tidepool when the server has `s`, else sent under its server name. Returns the eviction Closes. */
function clientParse(sp: ServerPrepared, ps: ClientStatements, name: string, s: Statement, max = 100): Buffer[] {
  const out: Buffer[] = []
  ps.add(name, s)
  if (sp.touch(s)) {
    sp.push(FrontendCode.Parse, Act.FakeParse, new RequestRef(s, ps, name, null))
    sp.drain()
    return out
  }
  sp.addPending(s, max, out)
  sp.push(FrontendCode.Parse, Act.ClientParse, new RequestRef(s, ps, name, null))
  return out
}

/** A Bind or Describe of a client's statement: a Parse goes first on a server that lacks it. */
function useStatement(sp: ServerPrepared, code: number, s: Statement, max = 100): void {
  if (!sp.touch(s)) {
    sp.addPending(s, max, [])
    sp.push(FrontendCode.Parse, Act.InjectedParse, s)
  }
  sp.push(code, Act.Forward, null)
}

function clientClose(sp: ServerPrepared, ps: ClientStatements, name: string): void {
  const s = ps.get(name) ?? null
  if (s !== null) ps.forget(name)
  sp.push(FrontendCode.Close, Act.FakeClose, new RequestRef(s, ps, name, null))
  sp.drain()
}

function plain(sp: ServerPrepared, code: number): void {
  sp.push(code, Act.Forward, null)
}

/** A server that has `s` prepared already (its Parse went through earlier). */
function preparedOn(sp: ServerPrepared, s: Statement): void {
  useStatement(sp, FrontendCode.Describe, s)
  plain(sp, FrontendCode.Sync)
  respond(sp, BackendCode.ParseComplete, BackendCode.NoData, BackendCode.ReadyForQuery)
  assert.equal(sp.cache.get(s), CacheState.Prepared)
}

/** Feeds responses; returns what each one came to (Forward or Drop). */
function respond(sp: ServerPrepared, ...codes: number[]): number[] {
  return codes.map((c) => sp.onResponse(c))
}

const F = Resp.Forward
const D = Resp.Drop

test('one entry per Parse, Bind, Describe, Execute and Sync; each response pops its own', () => {
  const sp = new ServerPrepared()
  const ps = new ClientStatements()
  const s = newStatement()
  clientParse(sp, ps, 'q', s)
  useStatement(sp, FrontendCode.Bind, s)
  useStatement(sp, FrontendCode.Describe, s)
  plain(sp, FrontendCode.Execute)
  plain(sp, FrontendCode.Sync)
  assert.equal(sp.size, 5, 'a Bind/Describe of a Pending statement needs no second Parse')
  assert.equal(sp.cache.get(s), CacheState.Pending)

  assert.deepEqual(respond(sp, BackendCode.ParseComplete), [F])
  assert.equal(sp.cache.get(s), CacheState.Prepared)
  assert.equal(sp.size, 4)
  assert.deepEqual(respond(sp, BackendCode.BindComplete, BackendCode.RowDescription), [F, F])
  assert.equal(sp.size, 2)
  assert.deepEqual(respond(sp, BackendCode.DataRow, BackendCode.DataRow), [F, F])
  assert.equal(sp.size, 2, 'rows do not end an Execute')
  assert.deepEqual(respond(sp, BackendCode.CommandComplete), [F])
  assert.equal(sp.size, 1)
  assert.deepEqual(respond(sp, BackendCode.ReadyForQuery), [F])
  assert.equal(sp.size, 0)
  assert.equal(ps.get('q'), s)
  assert.deepEqual(sp.emit, [])
})

test('the ring keeps order as it wraps and grows past its first 32 slots', () => {
  const sp = new ServerPrepared()
  // Move the head to an odd slot first, so that the first growth has a wrapped ring to unwind and
  // a copy from the wrong slot would put an Execute where a Bind belongs.
  for (let i = 0; i < 11; i++) plain(sp, FrontendCode.Sync)
  respond(sp, ...new Array<number>(11).fill(BackendCode.ReadyForQuery))
  assert.equal(sp.size, 0)
  for (let round = 0; round < 3; round++) {
    // 20 pipelined Bind+Execute pairs and a Sync: 41 entries, past the first growth and wrapped.
    for (let i = 0; i < 20; i++) {
      plain(sp, FrontendCode.Bind)
      plain(sp, FrontendCode.Execute)
    }
    plain(sp, FrontendCode.Sync)
    assert.equal(sp.size, 41)
    for (let i = 0; i < 20; i++) {
      // A CommandComplete while a Bind is at the head is not that Bind's answer.
      assert.deepEqual(respond(sp, BackendCode.CommandComplete), [F])
      assert.equal(sp.size, 41 - 2 * i, `round ${round}, pair ${i}: the Bind is still first`)
      respond(sp, BackendCode.BindComplete, BackendCode.CommandComplete)
    }
    respond(sp, BackendCode.ReadyForQuery)
    assert.equal(sp.size, 0)
  }
})

test('an injected Parse is swallowed; a Parse of a statement the server has is answered by tidepool in its place', () => {
  const sp = new ServerPrepared()
  const ps = new ClientStatements()
  const s = newStatement()
  ps.add('q', s) // prepared by this client on another server

  useStatement(sp, FrontendCode.Bind, s)
  plain(sp, FrontendCode.Execute)
  plain(sp, FrontendCode.Sync)
  assert.equal(sp.size, 4)
  assert.deepEqual(respond(sp, BackendCode.ParseComplete), [D], 'the client never sent that Parse')
  assert.equal(sp.cache.get(s), CacheState.Prepared)
  respond(sp, BackendCode.BindComplete, BackendCode.CommandComplete, BackendCode.ReadyForQuery)

  // Outstanding work first: the fake ParseComplete waits for it, then goes out after its answer.
  plain(sp, FrontendCode.Execute)
  clientParse(sp, ps, 'again', s)
  plain(sp, FrontendCode.Sync)
  assert.deepEqual(sp.emit, [])
  assert.deepEqual(respond(sp, BackendCode.CommandComplete), [F])
  assert.deepEqual(sp.emit, [PARSE_COMPLETE])
  sp.emit.length = 0
  respond(sp, BackendCode.ReadyForQuery)
  assert.equal(sp.size, 0)
  assert.equal(ps.get('again'), s)

  // Nothing outstanding: it is due at once.
  clientParse(sp, ps, 'third', s)
  assert.deepEqual(sp.emit, [PARSE_COMPLETE])
  assert.equal(sp.size, 0)
})

test('an error skips to Sync: an injected Parse that never ran leaves its statement unprepared on that server', () => {
  const sp = new ServerPrepared()
  const ps = new ClientStatements()
  const s1 = newStatement()
  const s2 = newStatement()
  ps.add('one', s1)
  ps.add('two', s2)
  preparedOn(sp, s1)
  const refs2 = s2.refs

  useStatement(sp, FrontendCode.Bind, s1)
  plain(sp, FrontendCode.Execute)
  useStatement(sp, FrontendCode.Bind, s2) // injects a Parse of s2
  plain(sp, FrontendCode.Execute)
  plain(sp, FrontendCode.Sync)
  assert.equal(sp.cache.get(s2), CacheState.Pending)
  assert.equal(s2.refs, refs2 + 1, 'the cache holds a reference')

  assert.deepEqual(respond(sp, BackendCode.BindComplete, BackendCode.ErrorResponse), [F, F], 'the first Execute fails')
  assert.equal(sp.size, 4, 'the skipped requests stay queued until ReadyForQuery')
  assert.deepEqual(respond(sp, BackendCode.ReadyForQuery), [F])
  assert.equal(sp.size, 0)
  assert.equal(sp.cache.has(s2), false, 's2 is not on this server: the next Bind must parse it again')
  assert.equal(s2.refs, refs2)
  assert.equal(sp.cache.get(s1), CacheState.Prepared)
  assert.equal(ps.get('two'), s2, "the client's own name is untouched")

  // The next use injects the Parse again.
  useStatement(sp, FrontendCode.Bind, s2)
  assert.equal(sp.size, 2)
})

test('an eviction that never ran leaves the statement prepared; the client Parse that caused it is undone', () => {
  const sp = new ServerPrepared()
  const ps = new ClientStatements()
  const old = newStatement()
  ps.add('old', old)
  preparedOn(sp, old)
  const oldRefs = old.refs
  const before = registrySize()
  const fresh = newStatement()

  plain(sp, FrontendCode.Execute) // fails below
  const closes = clientParse(sp, ps, 'fresh', fresh, 1) // max_prepared_statements = 1: evicts `old`
  plain(sp, FrontendCode.Sync)
  assert.equal(closes.length, 1, 'one Close goes out to keep the cache at 1')
  assert.equal(sp.cache.has(old), false)
  assert.equal(sp.size, 4, 'Execute, the eviction Close, the Parse, Sync')
  assert.equal(registrySize(), before + 1)

  assert.deepEqual(respond(sp, BackendCode.ErrorResponse, BackendCode.ReadyForQuery), [F, F])
  assert.equal(sp.size, 0)
  assert.equal(sp.cache.get(old), CacheState.Prepared, 'the Close never ran: still on the server')
  assert.equal(old.refs, oldRefs, 'the eviction handed its reference back to the cache')
  assert.equal(sp.cache.has(fresh), false, 'the Parse never ran')
  assert.equal(ps.get('fresh'), undefined, "PostgreSQL skipped the client's Parse, so the name does not exist")
  assert.equal(ps.get('old'), old)
  assert.equal(fresh.refs, 0)
  assert.equal(registrySize(), before, 'nobody holds the fresh statement any more')
})

// The rollback runs in queue order: the eviction's undo sees the statement Pending (the injected
// Parse). It used to keep it Pending, and the injected Parse's undo then deleted it, so the next use
// injected a Parse that the server, which still had the statement, refused with 42P05.
test('an eviction and a re-Parse of the same statement, both skipped: the statement stays prepared', () => {
  const sp = new ServerPrepared()
  const ps = new ClientStatements()
  const old = newStatement()
  const fresh = newStatement()
  ps.add('old', old)
  preparedOn(sp, old)
  const oldRefs = old.refs

  plain(sp, FrontendCode.Execute) // fails below
  clientParse(sp, ps, 'fresh', fresh, 1) // evicts `old`
  useStatement(sp, FrontendCode.Bind, old, 1) // `old` is gone from the cache: a Parse of it is injected
  plain(sp, FrontendCode.Sync)
  respond(sp, BackendCode.ErrorResponse, BackendCode.ReadyForQuery)
  assert.equal(sp.size, 0)
  assert.equal(sp.cache.get(old), CacheState.Prepared, 'neither the Close nor the Parse ran: the server has it')
  assert.equal(old.refs, oldRefs)
})

test('an eviction that ran drops the statement and its CloseComplete', () => {
  const sp = new ServerPrepared()
  const ps = new ClientStatements()
  const old = newStatement()
  const fresh = newStatement()
  preparedOn(sp, old)
  clientParse(sp, ps, 'fresh', fresh, 1)
  plain(sp, FrontendCode.Sync)
  assert.deepEqual(respond(sp, BackendCode.CloseComplete, BackendCode.ParseComplete, BackendCode.ReadyForQuery), [D, F, F])
  assert.equal(sp.cache.has(old), false)
  assert.equal(old.refs, 0)
  assert.equal(sp.cache.get(fresh), CacheState.Prepared)
})

test("a client Close skipped after an error is undone: the client's name comes back, and no CloseComplete goes out", () => {
  const sp = new ServerPrepared()
  const ps = new ClientStatements()
  const s = newStatement()
  clientParse(sp, ps, 'q', s)
  plain(sp, FrontendCode.Sync)
  respond(sp, BackendCode.ParseComplete, BackendCode.ReadyForQuery)
  const refs = s.refs

  plain(sp, FrontendCode.Execute)
  clientClose(sp, ps, 'q')
  plain(sp, FrontendCode.Sync)
  assert.equal(ps.get('q'), undefined, 'forgotten while the Close is pending')
  assert.deepEqual(respond(sp, BackendCode.ErrorResponse), [F])
  assert.deepEqual(sp.emit, [], 'the server skips the Close, so its answer is not due')
  assert.deepEqual(respond(sp, BackendCode.ReadyForQuery), [F])
  assert.deepEqual(sp.emit, [])
  assert.equal(ps.get('q'), s, 'the Close never happened')
  assert.equal(s.refs, refs, 'the pending Close kept the reference and handed it back')

  // A Close that arrives after the error, while the server is skipping: not answered either.
  plain(sp, FrontendCode.Execute)
  respond(sp, BackendCode.ErrorResponse)
  clientClose(sp, ps, 'q')
  assert.deepEqual(sp.emit, [], 'the server is skipping: no CloseComplete before Sync')
  plain(sp, FrontendCode.Sync)
  respond(sp, BackendCode.ReadyForQuery)
  assert.deepEqual(sp.emit, [])
  assert.equal(ps.get('q'), s)
  assert.equal(s.refs, refs)

  // Not skipped: CloseComplete is tidepool's, and the reference goes.
  clientClose(sp, ps, 'q')
  assert.deepEqual(sp.emit, [CLOSE_COMPLETE])
  assert.equal(ps.get('q'), undefined)
  assert.equal(s.refs, refs - 1)
  assert.equal(sp.cache.get(s), CacheState.Prepared, 'the server keeps it for other clients')
})

test("a fake-answered Parse skipped after an error is undone in the client's names; the server keeps the statement", () => {
  const sp = new ServerPrepared()
  const ps = new ClientStatements()
  const s = newStatement()
  preparedOn(sp, s)
  plain(sp, FrontendCode.Execute)
  clientParse(sp, ps, 'q', s)
  plain(sp, FrontendCode.Sync)
  assert.equal(ps.get('q'), s)
  respond(sp, BackendCode.ErrorResponse, BackendCode.ReadyForQuery)
  assert.deepEqual(sp.emit, [], 'no ParseComplete for a Parse the server would have skipped')
  assert.equal(ps.get('q'), undefined)
  assert.equal(ps.size, 0)
  assert.equal(sp.cache.get(s), CacheState.Prepared)
})

test("a client Parse that itself fails (a syntax error) is undone at once, and the error goes to the client", () => {
  const sp = new ServerPrepared()
  const ps = new ClientStatements()
  const s = newStatement()
  clientParse(sp, ps, 'bad', s)
  useStatement(sp, FrontendCode.Bind, s)
  plain(sp, FrontendCode.Sync)
  assert.deepEqual(respond(sp, BackendCode.ErrorResponse), [F])
  assert.equal(ps.get('bad'), undefined)
  assert.equal(sp.cache.has(s), false)
  assert.equal(s.refs, 0)
  respond(sp, BackendCode.ReadyForQuery)
  assert.equal(sp.size, 0)
})

test("a Replace entry's own error goes out in place of the server's, and the rest is skipped to Sync", () => {
  const sp = new ServerPrepared()
  const error = Buffer.from('E-from-tidepool')
  sp.push(FrontendCode.Describe, Act.Replace, new RequestRef(null, null, '', error))
  plain(sp, FrontendCode.Bind)
  plain(sp, FrontendCode.Execute)
  plain(sp, FrontendCode.Sync)
  assert.deepEqual(respond(sp, BackendCode.ErrorResponse), [D])
  assert.deepEqual(sp.emit, [error])
  sp.emit.length = 0
  assert.deepEqual(respond(sp, BackendCode.ReadyForQuery), [F])
  assert.equal(sp.size, 0)
})

test('a simple Query: its error does not start skipping; while skipping, a queued Query is skipped up to Sync', () => {
  const sp = new ServerPrepared()
  const ps = new ClientStatements()
  plain(sp, FrontendCode.Query)
  assert.deepEqual(respond(sp, BackendCode.ErrorResponse, BackendCode.ReadyForQuery), [F, F])
  assert.equal(sp.size, 0)

  // Extended request fails; a Query and a client Parse pipelined before Sync are skipped with it.
  const s = newStatement()
  plain(sp, FrontendCode.Execute)
  plain(sp, FrontendCode.Query)
  clientParse(sp, ps, 'q', s)
  plain(sp, FrontendCode.Sync)
  respond(sp, BackendCode.ErrorResponse, BackendCode.ReadyForQuery)
  assert.equal(sp.size, 0)
  assert.equal(ps.get('q'), undefined)
  assert.equal(sp.cache.has(s), false)
})

test('reset() rolls back whatever is still queued when the server goes away', () => {
  const sp = new ServerPrepared()
  const ps = new ClientStatements()
  const s = newStatement()
  clientParse(sp, ps, 'q', s)
  useStatement(sp, FrontendCode.Bind, s)
  plain(sp, FrontendCode.Execute)
  sp.emit.push(PARSE_COMPLETE)
  sp.reset()
  assert.equal(sp.size, 0)
  assert.deepEqual(sp.emit, [])
  assert.equal(ps.get('q'), undefined)
  assert.equal(sp.cache.has(s), false)
  assert.equal(s.refs, 0)
})

test('DISCARD ALL and DEALLOCATE ALL tags are told apart from every other CommandComplete, wherever it sits in a buffer', () => {
  for (const [tag, isDrop] of [['DISCARD ALL', true], ['DEALLOCATE ALL', true], ['DISCARD TEMP', false], ['DEALLOCATE', false],
    ['DISCARD PLANS', false], ['SELECT 1', false], ['DISCARD ALX', false], ['DEALLOCATE AL', false], ['', false]] as const) {
    const msg = build.commandComplete(tag)
    const padded = Buffer.concat([Buffer.from('xyz'), msg, Buffer.from('DISCARD ALL\0')])
    assert.equal(isDropAllTag(msg, 0), isDrop, tag)
    assert.equal(isDropAllTag(padded, 3), isDrop, `${tag} at an offset`)
  }
})

test('a DISCARD ALL that ran drops what the server had, and keeps a Parse sent after it', () => {
  const sp = new ServerPrepared()
  const ps = new ClientStatements()
  const before = newStatement()
  const after = newStatement()
  preparedOn(sp, before)
  plain(sp, FrontendCode.Query) // DISCARD ALL
  clientParse(sp, ps, 'after', after) // pipelined behind it: Pending until its ParseComplete
  plain(sp, FrontendCode.Sync)
  assert.deepEqual(respond(sp, BackendCode.CommandComplete), [F])
  sp.dropPrepared()
  assert.equal(sp.cache.has(before), false)
  assert.equal(before.refs, 0, 'the dropped statement is released')
  assert.equal(sp.cache.get(after), CacheState.Pending)
  assert.deepEqual(respond(sp, BackendCode.ReadyForQuery, BackendCode.ParseComplete, BackendCode.ReadyForQuery), [F, F, F])
  assert.equal(sp.cache.get(after), CacheState.Prepared)
  assert.equal(ps.get('after'), after)
})
