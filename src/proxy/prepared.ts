// Protocol-level prepared statements in transaction and statement mode (PgBouncer 1.21+'s
// max_prepared_statements): a client's statement names live on whichever server it gets, so
// tidepool maps them to server-side names and prepares statements where they are missing.
//
//   Statement      one per distinct (query text, parameter types), process-wide, named TP_<n> on
//                  every server; shared by all clients that parse the same text. Reference-counted
//                  by client mappings and server caches; dropped from the registry at zero.
//   ClientStatements  a client's names → Statement. Parse adds (42P05 for a name in use, as
//                  PostgreSQL), Close removes and is answered by tidepool.
//   ServerCache    per server: Statement → Prepared | Pending, in LRU order (Map order; a use moves
//                  it to the end). Above max_prepared_statements the oldest are closed.
//   RequestQueue   per server: one entry per extended-protocol message, Query and FunctionCall sent,
//                  in order, so that each response can be matched to its request. This is how
//                  tidepool swallows the ParseComplete of a Parse it injected, the CloseComplete of
//                  an eviction, and puts the ParseComplete/CloseComplete it answers itself at the
//                  right place in the stream.
//
// Errors follow PostgreSQL: after an ErrorResponse to an extended-protocol message the server skips
// everything up to Sync. Entries skipped that way are rolled back at ReadyForQuery: an injected
// Parse that never ran leaves its statement unprepared, an eviction that never ran leaves it
// prepared, a client's Parse or Close that PostgreSQL would have skipped is undone in its mapping.
//
// Hot path: a Bind/Execute/Sync of a statement already on the server costs two Map operations
// and ring writes (numbers, no objects). Query text is hashed only in Parse.
// Must not: touch sockets (the connections write what these functions return).

import { BackendCode, FrontendCode } from '../protocol/codes.ts'
import * as build from '../protocol/build.ts'
import { SqlState } from '../protocol/pg-error.ts'

let nextStatementId = 1
const registry = new Map<string, Statement>()

export class Statement {
  readonly serverName: string
  /** The Parse message to send a server that lacks this statement. */
  parseMsg: Buffer
  refs = 0
  /** ScanFlag bits of the query text (session-state.ts): a Bind of it counts as running the text. */
  readonly scanFlags: number
  constructor(readonly key: string, paramsAndRest: Buffer, query: Buffer, scanFlags: number) {
    this.serverName = `TP_${nextStatementId++}`
    this.scanFlags = scanFlags
    this.parseMsg = parseMessage(this.serverName, query, paramsAndRest)
  }
}

/** The registry's statement for this Parse body (query\0 + parameter types), created on first use. */
export function statementFor(body: Buffer, queryStart: number, queryEnd: number, bodyEnd: number, scanFlags: number, replacementQuery: Buffer | null): Statement {
  const key = body.toString('latin1', queryStart, bodyEnd)
  let s = registry.get(key)
  if (s === undefined) {
    s = new Statement(key, body.subarray(queryEnd + 1, bodyEnd), replacementQuery ?? body.subarray(queryStart, queryEnd), scanFlags)
    registry.set(key, s)
  }
  return s
}

/**
 * The registry's statement for `key` (query text, NUL, parameter types, as latin1), made from a
 * Parse message of it when this process has none: a client handed over by another tidepool
 * brings its statements this way (runtime/takeover.ts).
 */
export function statementFromParse(key: string, parseMsg: Buffer, scanFlags: number): Statement {
  let s = registry.get(key)
  if (s !== undefined) return s
  // 'P', length, name\0, query\0, parameter types
  const nameEnd = parseMsg.indexOf(0, 5)
  const queryEnd = parseMsg.indexOf(0, nameEnd + 1)
  if (nameEnd < 0 || queryEnd < 0) throw new Error('prepared: a handed-over Parse message without its strings')
  s = new Statement(key, parseMsg.subarray(queryEnd + 1), parseMsg.subarray(nameEnd + 1, queryEnd), scanFlags)
  registry.set(key, s)
  return s
}

export function ref(s: Statement): void {
  s.refs++
}

export function unref(s: Statement): void {
  if (--s.refs <= 0 && registry.get(s.key) === s) registry.delete(s.key)
}

/** How many distinct statements the process holds (for tests and metrics). */
export function registrySize(): number {
  return registry.size
}

export function parseMessage(name: string, query: Buffer, paramTypes: Buffer): Buffer {
  const nameLen = Buffer.byteLength(name)
  const len = 4 + nameLen + 1 + query.length + 1 + paramTypes.length
  const b = Buffer.allocUnsafe(1 + len)
  b[0] = FrontendCode.Parse
  b.writeInt32BE(len, 1)
  let p = 5 + b.write(name, 5, 'utf8')
  b[p++] = 0
  p += query.copy(b, p)
  b[p++] = 0
  paramTypes.copy(b, p)
  return b
}

/**
 * `src`'s message at its body start `body`, with the string at [nameStart, nameEnd) replaced by
 * `name`: the bytes before it (a portal name, a Describe's 'S') and after it are copied as they are.
 */
export function renamed(code: number, src: Buffer, body: number, nameStart: number, name: string, nameEnd: number, srcEnd: number): Buffer {
  const nameLen = Buffer.byteLength(name)
  const len = 4 + (nameStart - body) + nameLen + (srcEnd - nameEnd)
  const b = Buffer.allocUnsafe(1 + len)
  b[0] = code
  b.writeInt32BE(len, 1)
  let p = 5 + src.copy(b, 5, body, nameStart)
  p += b.write(name, p, 'latin1')
  src.copy(b, p, nameEnd, srcEnd)
  return b
}

export const PARSE_COMPLETE = Buffer.from([BackendCode.ParseComplete, 0, 0, 0, 4])
export const CLOSE_COMPLETE = Buffer.from([BackendCode.CloseComplete, 0, 0, 0, 4])
/** A statement name no client is expected to use: a Bind or Describe of it fails as "does not exist". */
export const MISSING_NAME = 'tidepool: no such statement'

export function closeMessage(name: string): Buffer {
  return build.closeStatement(name)
}

export function duplicateError(name: string): Buffer {
  return build.errorResponse({ severity: 'ERROR', code: SqlState.DuplicatePreparedStatement, message: `prepared statement "${name}" already exists` })
}

export function missingError(name: string): Buffer {
  return build.errorResponse({ severity: 'ERROR', code: SqlState.InvalidSqlStatementName, message: `prepared statement "${name}" does not exist` })
}

// ---- per client ----

export class ClientStatements {
  /** Made at the first Parse: most clients of a big idle fan-in never prepare anything. */
  private byName: Map<string, Statement> | null = null

  get(name: string): Statement | undefined {
    return this.byName?.get(name)
  }

  add(name: string, s: Statement): void {
    ref(s)
    ;(this.byName ??= new Map()).set(name, s)
  }

  /** Puts back an entry whose reference the caller already holds (undo of a Close). */
  restore(name: string, s: Statement): void {
    ;(this.byName ??= new Map()).set(name, s)
  }

  /** Drops a name without releasing its reference (a pending request holds it until answered). */
  forget(name: string): void {
    this.byName?.delete(name)
  }

  /** Undo of add(): only if the name still maps to `s`. */
  undoAdd(name: string, s: Statement): void {
    if (this.byName === null || this.byName.get(name) !== s) return
    this.byName.delete(name)
    unref(s)
  }

  /** Every name and its statement (a handover carries them to another process). */
  entries(): Iterable<[string, Statement]> {
    return this.byName ?? []
  }

  clear(): void {
    if (this.byName === null) return
    for (const s of this.byName.values()) unref(s)
    this.byName.clear()
  }

  get size(): number {
    return this.byName?.size ?? 0
  }
}

// ---- per server ----

export const CacheState = { Prepared: 1, Pending: 2 } as const

/** What the server must do with a request's response(s). */
export const Act = {
  Forward: 0,
  /** A client Parse sent under the server name: ParseComplete marks it prepared; failure undoes the client's name. */
  ClientParse: 1,
  /** A client Parse of a statement the server already has: tidepool answers ParseComplete. */
  FakeParse: 2,
  /** A Parse tidepool injected before a Bind/Describe: its ParseComplete is swallowed. */
  InjectedParse: 3,
  /** A Close tidepool sent to evict a statement: its CloseComplete is swallowed. */
  EvictClose: 4,
  /** A client Close of a named statement: tidepool answers CloseComplete; skipped, the name comes back. */
  FakeClose: 5,
  /** The server will fail this request; its ErrorResponse is replaced by the entry's own. */
  Replace: 6,
} as const

/** Extra data of a request that needs it: what to undo or emit. */
export class RequestRef {
  constructor(
    readonly stmt: Statement | null,
    readonly owner: ClientStatements | null,
    readonly name: string,
    readonly reply: Buffer | null,
  ) {}
}

const INITIAL = 32

/** Outcome of a response message for the server's forwarding loop. */
export const Resp = { Forward: 0, Drop: 1 } as const

export class ServerPrepared {
  /** Statement → CacheState, least recently used first. */
  readonly cache = new Map<Statement, number>()
  private codes = new Uint8Array(INITIAL)
  private acts = new Uint8Array(INITIAL)
  private refs: Array<Statement | RequestRef | null> = new Array(INITIAL).fill(null)
  private head = 0
  size = 0
  /** An extended-protocol request failed: the server skips requests up to the next Sync. */
  private isSkipping = false
  /** Bytes to send the client after the current response (fake replies that came due). */
  readonly emit: Buffer[] = []

  push(code: number, act: number, r: Statement | RequestRef | null): void {
    if (this.size === this.codes.length) this.grow()
    const at = (this.head + this.size) & (this.codes.length - 1)
    this.codes[at] = code
    this.acts[at] = act
    this.refs[at] = r
    this.size++
  }

  private grow(): void {
    const n = this.codes.length
    const codes = new Uint8Array(n * 2)
    const acts = new Uint8Array(n * 2)
    const refs: Array<Statement | RequestRef | null> = new Array(n * 2).fill(null)
    for (let i = 0; i < this.size; i++) {
      const at = (this.head + i) & (n - 1)
      codes[i] = this.codes[at]
      acts[i] = this.acts[at]
      refs[i] = this.refs[at]
    }
    this.codes = codes
    this.acts = acts
    this.refs = refs
    this.head = 0
  }

  private pop(): void {
    this.refs[this.head] = null
    this.head = (this.head + 1) & (this.codes.length - 1)
    this.size--
  }

  /** Fake replies at the head of the queue come due now (nothing before them is outstanding). */
  drain(): void {
    while (this.size > 0 && !this.isSkipping) {
      const act = this.acts[this.head]
      if (act !== Act.FakeParse && act !== Act.FakeClose) return
      const r = this.refs[this.head] as RequestRef
      this.emit.push(act === Act.FakeParse ? PARSE_COMPLETE : CLOSE_COMPLETE)
      if (act === Act.FakeClose && r.stmt !== null) unref(r.stmt)
      this.pop()
    }
  }

  /**
   * One inspected response. Returns Resp.Drop when the client must not see it; `emit` then holds
   * what goes out in its place or after it.
   */
  onResponse(code: number): number {
    if (this.size === 0) return Resp.Forward
    const hc = this.codes[this.head]
    if (code === BackendCode.ReadyForQuery) return this.onReady(hc)
    if (code === BackendCode.ErrorResponse) {
      if (hc === FrontendCode.Query || hc === FrontendCode.FunctionCall) return Resp.Forward
      const act = this.acts[this.head]
      const r = this.refs[this.head]
      this.pop()
      this.isSkipping = true
      return this.onFailed(act, r)
    }
    if (!isTerminal(hc, code)) return Resp.Forward
    const act = this.acts[this.head]
    const r = this.refs[this.head]
    this.pop()
    let out: number = Resp.Forward
    switch (act) {
      case Act.ClientParse:
        this.markPrepared((r as RequestRef).stmt as Statement)
        break
      case Act.InjectedParse:
        this.markPrepared(r as Statement)
        out = Resp.Drop
        break
      case Act.EvictClose:
        unref(r as Statement)
        out = Resp.Drop
        break
    }
    this.drain()
    return out
  }

  /** The request failed: rolled back like a skipped one, except a Replace, whose own error goes out instead. */
  private onFailed(act: number, r: Statement | RequestRef | null): number {
    if (act === Act.Replace) {
      this.emit.push((r as RequestRef).reply as Buffer)
      return Resp.Drop
    }
    this.onSkipped(act, r)
    return Resp.Forward
  }

  private onReady(hc: number): number {
    // Requests still queued before the Sync were skipped by the server after an error.
    // While skipping, the server ignores a Query or FunctionCall as well; only Sync ends it.
    while (this.size > 0 && this.codes[this.head] !== FrontendCode.Sync &&
      (this.isSkipping || (this.codes[this.head] !== FrontendCode.Query && this.codes[this.head] !== FrontendCode.FunctionCall))) {
      this.onSkipped(this.acts[this.head], this.refs[this.head])
      this.pop()
    }
    void hc
    if (this.size > 0) this.pop()
    this.isSkipping = false
    this.drain()
    return Resp.Forward
  }

  private onSkipped(act: number, r: Statement | RequestRef | null): void {
    switch (act) {
      case Act.ClientParse: {
        const rr = r as RequestRef
        this.forget(rr.stmt as Statement)
        rr.owner?.undoAdd(rr.name, rr.stmt as Statement)
        break
      }
      case Act.FakeParse: {
        const rr = r as RequestRef
        rr.owner?.undoAdd(rr.name, rr.stmt as Statement)
        break
      }
      case Act.InjectedParse:
        this.forget(r as Statement)
        break
      case Act.EvictClose:
        this.unevict(r as Statement)
        break
      case Act.FakeClose: {
        const rr = r as RequestRef
        const s = rr.stmt
        if (s === null) break
        if (rr.owner !== null && rr.owner.get(rr.name) === undefined) rr.owner.restore(rr.name, s) // keeps the entry's ref
        else unref(s)
        break
      }
    }
  }

  /** A Pending statement whose Parse failed or never ran is not on the server. */
  private forget(s: Statement): void {
    if (this.cache.get(s) === CacheState.Pending) {
      this.cache.delete(s)
      unref(s)
    }
  }

  /** Only a statement still cached (a DISCARD ALL may have cleared it meanwhile) is marked. */
  private markPrepared(s: Statement): void {
    if (this.cache.has(s)) this.cache.set(s, CacheState.Prepared)
  }

  /**
   * An eviction's Close never ran, so the server still has the statement. A Parse of it queued
   * after the eviction (Pending now, and skipped too) must not make the rollback forget it: the
   * entry is Prepared again, and the eviction's reference goes since the entry holds its own.
   */
  private unevict(s: Statement): void {
    if (this.cache.has(s)) unref(s)
    this.cache.set(s, CacheState.Prepared)
  }

  /** Marks `s` used (LRU); true when the server has it or a Parse of it is on the way. */
  touch(s: Statement): boolean {
    const st = this.cache.get(s)
    if (st === undefined) return false
    this.cache.delete(s)
    this.cache.set(s, st)
    return true
  }

  /** Records a Parse of `s` on its way to the server, and returns the Close messages that keep the cache within `max`. */
  addPending(s: Statement, max: number, out: Buffer[]): void {
    ref(s)
    this.cache.set(s, CacheState.Pending)
    if (this.cache.size <= max) return
    for (const [old, st] of this.cache) {
      if (this.cache.size <= max) break
      if (old === s || st !== CacheState.Prepared) continue
      this.cache.delete(old)
      out.push(closeMessage(old.serverName))
      this.push(FrontendCode.Close, Act.EvictClose, old) // keeps the cache's ref until CloseComplete
    }
  }

  /**
   * The server ran DISCARD ALL or DEALLOCATE ALL (its CommandComplete just arrived): every
   * statement it had is gone. Responses come in request order, so a Parse sent before the command
   * has been answered by now, and one still Pending was sent after it and will be prepared: kept.
   */
  dropPrepared(): void {
    for (const [s, st] of this.cache) {
      if (st !== CacheState.Prepared) continue
      this.cache.delete(s)
      unref(s)
    }
  }

  /** Everything the server held is gone (DISCARD ALL, or the connection closed). */
  clearCache(): void {
    for (const s of this.cache.keys()) unref(s)
    this.cache.clear()
  }

  /** Drops queued requests when the server is released or closed (nothing may be outstanding then). */
  reset(): void {
    while (this.size > 0) {
      this.onSkipped(this.acts[this.head], this.refs[this.head])
      this.pop()
    }
    this.isSkipping = false
    this.emit.length = 0
  }
}

const DISCARD_ALL = Buffer.from('DISCARD ALL\0', 'latin1')
const DEALLOCATE_ALL = Buffer.from('DEALLOCATE ALL\0', 'latin1')

/**
 * The CommandComplete at `at` says DISCARD ALL or DEALLOCATE ALL: the session's prepared
 * statements are gone. The tag is the sure sign (a text that says DISCARD ALL may still fail, in
 * a transaction block say); PgBouncer 1.22+ reads the same tag. Lengths are compared first, so
 * every other tag costs one read.
 */
export function isDropAllTag(buf: Buffer, at: number): boolean {
  const n = buf.readInt32BE(at + 1) - 4
  const tag = n === DISCARD_ALL.length ? DISCARD_ALL : n === DEALLOCATE_ALL.length ? DEALLOCATE_ALL : null
  return tag !== null && buf.compare(tag, 0, n, at + 5, at + 5 + n) === 0
}

function isTerminal(request: number, response: number): boolean {
  switch (request) {
    case FrontendCode.Parse: return response === BackendCode.ParseComplete
    case FrontendCode.Bind: return response === BackendCode.BindComplete
    case FrontendCode.Describe: return response === BackendCode.RowDescription || response === BackendCode.NoData
    case FrontendCode.Execute:
      return response === BackendCode.CommandComplete || response === BackendCode.EmptyQueryResponse || response === BackendCode.PortalSuspended
    case FrontendCode.Close: return response === BackendCode.CloseComplete
    default: return false // Sync, Query, FunctionCall end at ReadyForQuery (onReady)
  }
}
