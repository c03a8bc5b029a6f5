// The work phase's client message tables (which types are valid, which run SQL, which are read
// whole), and the messages read whole (transaction and statement mode): how they
// are rewritten for the server the client is linked to: Query and Parse texts are scanned for
// session state (refused under session_state_policy = error); with max_prepared_statements > 0,
// a Parse of a named statement, Bind and Describe go out under the statement's server name (after
// a Parse where the server lacks it), Close and `DEALLOCATE name` are answered by tidepool. What
// goes to the server instead is appended to REPL; each request is queued on the server's
// RequestQueue (prepared.ts), so responses can be matched.
// Hot path: called from ClientConn.forward once per such message; plain calls, no closures, and
// no objects beyond the messages built (a Bind of a statement the server has: one renamed copy).
// Must not: touch sockets, or keep per-client state (the client passes its own).

import { FrontendCode, TxStatus } from '../protocol/codes.ts'
import * as build from '../protocol/build.ts'
import { SqlState } from '../protocol/pg-error.ts'
import type { PoolStats } from '../pool/stats.ts'
import { inspectTable } from '../protocol/framer.ts'
import { TidepoolError } from '../util/errors.ts'
import {
  Act, MISSING_NAME, RequestRef, duplicateError, missingError, parseMessage, renamed, statementFor, type ClientStatements, type ServerPrepared, type Statement,
} from './prepared.ts'
import { SqlScanner, refusalSql, refusedMessage } from './session-state.ts'

/**
 * Replacement messages for the one being forwarded: filled and drained within one forward() call,
 * so one array serves every client.
 */
export const REPL: Buffer[] = []

/** What a scanned text may have done to the session goes to the client (ClientConn implements it). */
export interface ScanSink {
  noteScan(flags: number, names: string[] | null): void
}

/** Scans texts that arrived whole, for every client: scan() runs start to finish in one call, and its results are read at once. */
const WHOLE_TEXT_SCANNER = new SqlScanner()

/** Work-phase messages read whole: those that name prepared statements, and Query when refusing session state. */
const TRACKED_CODES = inspectTable([FrontendCode.Parse, FrontendCode.Bind, FrontendCode.Describe, FrontendCode.Close])
const TRACKED_REFUSING_CODES = inspectTable([FrontendCode.Parse, FrontendCode.Bind, FrontendCode.Describe, FrontendCode.Close, FrontendCode.Query])
/** Without statement mapping only Parse texts are read whole (a Query is scanned as it streams). */
const SCANNED_CODES = inspectTable([FrontendCode.Parse])
const SCANNED_REFUSING_CODES = inspectTable([FrontendCode.Parse, FrontendCode.Query])
/** Describe/Close target byte for a prepared statement ('P' is a portal). */
const STATEMENT = 0x53

/** Where the NUL that ends the string at `from` is; a string running past `end` is a protocol violation. */
function cstringEnd(buf: Buffer, from: number, end: number): number {
  const nul = buf.indexOf(0, from)
  if (nul < 0 || nul >= end) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'string without terminating NUL')
  return nul
}

/**
 * A message that is not read whole (Sync outside copy-in, Execute, Query, FunctionCall): queued
 * for response matching only, so the responses of the messages around it match their requests.
 */
export function queueStreamed(sp: ServerPrepared, code: number, isCopyIn: boolean): void {
  switch (code) {
    case FrontendCode.Sync:
      if (!isCopyIn) sp.push(code, Act.Forward, null)
      break
    case FrontendCode.Execute:
    case FrontendCode.Query:
    case FrontendCode.FunctionCall:
      sp.push(code, Act.Forward, null)
      break
  }
}

/** The work phase's inspect table: which client messages are read whole. */
export function wholeMessageCodes(isMapping: boolean, isRefusing: boolean): Uint8Array {
  return isMapping ? (isRefusing ? TRACKED_REFUSING_CODES : TRACKED_CODES) : (isRefusing ? SCANNED_REFUSING_CODES : SCANNED_CODES)
}

/**
 * A Parse, Bind, Describe or Close (or a Query under the error policy) at buf[start, end), read
 * whole: scanned for session state (reported to `sink`), refused under the error policy
 * (`isRefusing`), renamed when the client's statements are mapped (`ps` not null). Returns true
 * when REPL holds what goes to the server instead (possibly nothing).
 */
export function rewriteWhole(buf: Buffer, start: number, end: number, ps: ClientStatements | null, sp: ServerPrepared,
  stats: PoolStats, maxPrepared: number, isRefusing: boolean, sink: ScanSink): boolean {
  const code = buf[start]
  const body = start + 5
  switch (code) {
    case FrontendCode.Query: {
      const sc = WHOLE_TEXT_SCANNER
      sc.scan(buf, body, end)
      if (ps !== null) sp.push(code, Act.Forward, null)
      if (sc.creator !== '') {
        REPL.push(build.query(refusalSql(refusedMessage(sc.creator))))
        return true
      }
      sink.noteScan(sc.flags, sc.names)
      return false
    }
    case FrontendCode.Parse: {
      const nameEnd = cstringEnd(buf, body, end)
      const qStart = nameEnd + 1
      const qEnd = cstringEnd(buf, qStart, end)
      const sc = WHOLE_TEXT_SCANNER
      const flags = sc.scan(buf, qStart, qEnd)
      const isRefused = isRefusing && sc.creator !== ''
      if (isRefused && ps !== null) {
        // Refused at Parse, as a statement PostgreSQL cannot parse would be: no name is created.
        failRequest(sp, build.errorResponse({ severity: 'ERROR', code: SqlState.FeatureNotSupported, message: refusedMessage(sc.creator) }))
        return true
      }
      const replacement = isRefused ? Buffer.from(refusalSql(refusedMessage(sc.creator)), 'utf8') : null
      if (!isRefused) sink.noteScan(flags, sc.names)
      if (nameEnd === body || ps === null) {
        if (ps !== null) sp.push(code, Act.Forward, null)
        if (replacement === null) return false
        REPL.push(parseMessage(buf.toString('utf8', body, nameEnd), replacement, buf.subarray(qEnd + 1, end)))
        return true
      }
      mapParse(ps, sp, stats, maxPrepared, buf, body, nameEnd, qStart, qEnd, end, isRefused ? 0 : flags, replacement)
      return true
    }
    case FrontendCode.Bind: {
      const portalEnd = cstringEnd(buf, body, end)
      const sStart = portalEnd + 1
      const sEnd = cstringEnd(buf, sStart, end)
      if (sEnd === sStart || ps === null) {
        if (ps !== null) sp.push(code, Act.Forward, null)
        return false
      }
      stats.binds++
      return forwardRenamed(ps, sp, stats, maxPrepared, sink, code, buf, body, sStart, sEnd, end)
    }
    case FrontendCode.Describe:
    case FrontendCode.Close: {
      const nStart = body + 1
      const nEnd = cstringEnd(buf, nStart, end)
      if (buf[body] !== STATEMENT || nEnd === nStart || ps === null) {
        if (ps !== null) sp.push(code, Act.Forward, null)
        return false
      }
      if (code === FrontendCode.Close) mapClose(ps, sp, buf, nStart, nEnd)
      else forwardRenamed(ps, sp, stats, maxPrepared, sink, code, buf, body, nStart, nEnd, end)
      return true
    }
  }
  return false
}


/**
 * A Parse of the named statement buf[body, nameEnd) with query buf[qStart, qEnd): maps the name,
 * and sends the server a Parse of the shared statement unless it has it (then tidepool answers
 * ParseComplete itself). A name in use gets PostgreSQL's 42P05 in place of the Parse.
 */
function mapParse(ps: ClientStatements, sp: ServerPrepared, stats: PoolStats, maxPrepared: number,
  buf: Buffer, body: number, nameEnd: number, qStart: number, qEnd: number, end: number, scanFlags: number, replacement: Buffer | null): void {
  const name = buf.toString('utf8', body, nameEnd)
  if (ps.get(name) !== undefined) {
    failRequest(sp, duplicateError(name))
    return
  }
  const stmt = statementFor(buf, qStart, qEnd, end, scanFlags, replacement)
  ps.add(name, stmt)
  stats.clientParses++
  if (sp.touch(stmt)) {
    sp.push(FrontendCode.Parse, Act.FakeParse, new RequestRef(stmt, ps, name, null))
    sp.drain()
    return
  }
  sp.addPending(stmt, maxPrepared, REPL)
  REPL.push(stmt.parseMsg)
  stats.serverParses++
  sp.push(FrontendCode.Parse, Act.ClientParse, new RequestRef(stmt, ps, name, null))
}

/**
 * A Bind or Describe naming the client's statement buf[from, to) goes out under the statement's
 * server name, after a Parse when this server lacks it; an unknown name queues PostgreSQL's
 * 26000 error in its place. Always true: the message is replaced either way.
 */
function forwardRenamed(ps: ClientStatements, sp: ServerPrepared, stats: PoolStats, maxPrepared: number, sink: ScanSink,
  code: number, buf: Buffer, body: number, from: number, to: number, end: number): true {
  const name = buf.toString('utf8', from, to)
  const stmt = ps.get(name)
  if (stmt === undefined) {
    failRequest(sp, missingError(name))
    return true
  }
  // Running a statement runs its text: what it may do to the session counts now.
  if (stmt.scanFlags !== 0) sink.noteScan(stmt.scanFlags, null)
  ensurePrepared(sp, stats, maxPrepared, stmt)
  REPL.push(renamed(code, buf, body, from, stmt.serverName, to, end))
  sp.push(code, Act.Forward, null)
  return true
}

/** A Close of the client's statement buf[from, to): dropped from its map and answered here (PostgreSQL answers an unknown name with CloseComplete too). */
function mapClose(ps: ClientStatements, sp: ServerPrepared, buf: Buffer, from: number, to: number): void {
  const name = buf.toString('utf8', from, to)
  const stmt = ps.get(name) ?? null
  if (stmt !== null) ps.forget(name) // the request keeps the reference until answered
  sp.push(FrontendCode.Close, Act.FakeClose, new RequestRef(stmt, ps, name, null))
  sp.drain()
}

/**
 * The server fails a harmless request in place of the client's (a Describe of a name nobody
 * uses), so that it aborts the transaction and skips to Sync exactly as for the real error;
 * the error it sends is replaced by `error`.
 */
function failRequest(sp: ServerPrepared, error: Buffer): void {
  REPL.push(build.describeStatement(MISSING_NAME))
  sp.push(FrontendCode.Describe, Act.Replace, new RequestRef(null, null, '', error))
}

/** A Parse goes ahead of a Bind/Describe on a server that lacks the statement. */
function ensurePrepared(sp: ServerPrepared, stats: PoolStats, maxPrepared: number, stmt: Statement): void {
  if (sp.touch(stmt)) return
  sp.addPending(stmt, maxPrepared, REPL)
  REPL.push(stmt.parseMsg)
  stats.serverParses++
  sp.push(FrontendCode.Parse, Act.InjectedParse, stmt)
}

/** `DEALLOCATE [PREPARE] name` alone in a Query (PostgreSQL folds an unquoted name to lower case). */
const DEALLOCATE_RX = /^\s*deallocate\s+(?:prepare\s+)?("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s*;?\s*$/i

/**
 * SQL `DEALLOCATE [PREPARE] name` (the Query at buf[start, end)) of a statement this client
 * prepared at protocol level: on the server it lives under tidepool's name, so the server would
 * answer 26000 and, inside a transaction, abort it (DBD::Pg and ruby-pg free their statements this
 * way). Answered here instead, as PostgreSQL would: the name is dropped and DEALLOCATE completes,
 * or in a failed transaction 25P02 comes back and the name stays. Only with nothing outstanding on
 * the server (`txStatus` its last status), so the reply cannot overtake another. True when answered.
 */
export function answerDeallocate(ps: ClientStatements, sp: ServerPrepared, txStatus: number, buf: Buffer, start: number, end: number): boolean {
  const m = DEALLOCATE_RX.exec(buf.toString('utf8', start + 5, end - 1))
  if (m === null) return false
  const isQuoted = m[1].startsWith('"')
  const name = isQuoted ? m[1].slice(1, -1).replaceAll('""', '"') : m[1].toLowerCase()
  if (!isQuoted && name === 'all') return false // DEALLOCATE ALL: the server runs it, its tag drops every name
  const stmt = ps.get(name)
  if (stmt === undefined) return false // an SQL-level PREPARE: the server has it under that name
  let reply: Buffer
  if (txStatus === TxStatus.Failed) {
    reply = build.errorResponse({ severity: 'ERROR', code: SqlState.InFailedSqlTransaction, message: 'current transaction is aborted, commands ignored until end of transaction block' })
  } else {
    ps.undoAdd(name, stmt)
    reply = build.commandComplete('DEALLOCATE')
  }
  sp.emit.push(Buffer.concat([reply, build.readyForQuery(txStatus)]))
  return true
}

/** Message types a client may send after login (PostgreSQL's frontend messages, less the auth ones). */
const VALID_WORK_CODES = new Uint8Array(256)
for (const c of [FrontendCode.Bind, FrontendCode.Close, FrontendCode.CopyData, FrontendCode.CopyDone, FrontendCode.CopyFail,
  FrontendCode.Describe, FrontendCode.Execute, FrontendCode.Flush, FrontendCode.FunctionCall, FrontendCode.Parse,
  FrontendCode.Query, FrontendCode.Sync, FrontendCode.Terminate]) VALID_WORK_CODES[c] = 1

/** Messages that run SQL, which may make session state inside a function: Query, Execute, FunctionCall. */
export const RUNS_SQL = new Uint8Array(256)
RUNS_SQL[FrontendCode.Query] = 1
RUNS_SQL[FrontendCode.Execute] = 1
RUNS_SQL[FrontendCode.FunctionCall] = 1

/** disable_pqexec: the extended protocol only, since a simple Query may carry several statements. */
const NO_PQEXEC_WORK_CODES = VALID_WORK_CODES.slice()
NO_PQEXEC_WORK_CODES[FrontendCode.Query] = 0

/** The message types a client may send in the work phase. */
export function workCodes(disablePqexec: boolean): Uint8Array {
  return disablePqexec ? NO_PQEXEC_WORK_CODES : VALID_WORK_CODES
}

/** A chunk that is exactly one Terminate. */
export function isTerminate(chunk: Buffer): boolean {
  return chunk.length === 5 && chunk[0] === FrontendCode.Terminate && chunk.readInt32BE(1) === 4
}
