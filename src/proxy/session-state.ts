// Session state a client leaves on a server in transaction (and statement) mode, and how tidepool
// keeps it from reaching other clients.
//
// Two halves:
//   - SqlScanner reads the leading keywords of each statement in a Query or Parse text (and a few
//     function names anywhere) to notice that a transaction *may* have changed session state: SET,
//     RESET, set_config(), DISCARD, LISTEN, advisory locks, temporary tables, cursors, PREPARE.
//     It is a lexer, not a parser: it skips strings, quoted identifiers, comments and dollar
//     quotes so that text inside them never counts, and it never allocates for statements that
//     touch nothing (the hot path: SELECT/INSERT/UPDATE/...).
//   - When such a transaction ends (ReadyForQuery idle), the server itself is asked what state is
//     left (PROBE_SQL): GUCs whose source is 'session', the custom GUCs and role the client named,
//     and whether it listens, holds session advisory locks, has temporary tables, WITH HOLD
//     cursors or SQL prepared statements. Asking after the fact makes the answer exact: SET LOCAL,
//     a rolled-back SET, UNLISTEN *, pg_advisory_unlock_all() or DISCARD need no modelling here.
//
// A client's GUC values are re-applied when it is linked to a server whose values differ, and
// values it never set are RESET (syncSql). Session-bound state pins the client to its server
// (session_state_policy = pin) until a later probe finds it gone, or is refused up front (error).
// Must not: do I/O, or decode text for statements that touch no session state.

import { parseDataRow } from '../protocol/reader.ts'
import { SqlState } from '../protocol/pg-error.ts'
import { quoteIdent, quoteLiteral } from './server-params.ts'

/** What a scanned text may have done; a transaction with any of Probe set is probed at its end. */
export const ScanFlag = {
  /** Something session-scoped may have changed: probe the server when the transaction ends. */
  Probe: 1,
  /**
   * DISCARD ALL / DEALLOCATE ALL: the client's protocol-level prepared statements may be gone. Only
   * the command's CommandComplete tag drops them (it may fail); what the client sends after it
   * waits for that answer.
   */
  DropStatements: 2,
  /** LISTEN: notifications may arrive for this client from here on. */
  Listen: 4,
} as const

/** A client's own GUC values (name → value), replaced whole after each probe, never mutated. */
export type GucMap = ReadonlyMap<string, string>
export const NO_GUCS: GucMap = new Map()

const S = {
  Normal: 0, Word: 1, Squote: 2, SquoteEnd: 3, SquoteEsc: 4, Dquote: 5, DquoteEnd: 6, Dash: 7, Line: 8,
  Slash: 9, Block: 10, BlockStar: 11, BlockSlash: 12, DollarTag: 13, Dollar: 14,
} as const

/** Byte classes: 1 = may start a word, 2 = may continue one ('.' keeps schema.func and a.b GUCs whole). */
const WORD = new Uint8Array(256)
for (let c = 0; c < 256; c++) {
  const isAlpha = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c >= 0x80
  const isDigit = c >= 0x30 && c <= 0x39
  WORD[c] = isAlpha ? 3 : isDigit || c === 0x24 || c === 0x2e ? 2 : 0
}

const kw = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'latin1'))
const K = {
  set: kw('set'), reset: kw('reset'), discard: kw('discard'), listen: kw('listen'), unlisten: kw('unlisten'),
  prepare: kw('prepare'), deallocate: kw('deallocate'), declare: kw('declare'), close: kw('close'), create: kw('create'),
  do: kw('do'), call: kw('call'), temp: kw('temp'), temporary: kw('temporary'), all: kw('all'), with: kw('with'),
  hold: kw('hold'), session: kw('session'), authorization: kw('authorization'), local: kw('local'), role: kw('role'), transaction: kw('transaction'),
  setConfig: kw('set_config'), pgAdvisory: kw('pg_advisory_'), pgTryAdvisory: kw('pg_try_advisory_'), xact: kw('_xact_'),
  unlock: kw('unlock'),
} as const

const Cmd = { None: 0, Other: 1, Set: 2, Reset: 3, Discard: 4, Listen: 5, Prepare: 6, Deallocate: 7, Declare: 8, Create: 9 } as const

const MAX_WORD = 64
const NO_BYTES = new Uint8Array(0)

/**
 * One per client, reused for every text: feed() may be called for consecutive parts of one text
 * (a Query cut by chunks), so every bit of lexer state lives in fields.
 */
export class SqlScanner {
  flags = 0
  /** The first statement that creates session-bound state, for session_state_policy = error; '' if none. */
  creator = ''
  /** Custom (dotted) GUC names and `role` the text set or reset: pg_settings does not list those. */
  names: string[] | null = null
  private state: number = S.Normal
  // Both made at the first scan, in one allocation: an idle client never needs them.
  private word: Uint8Array = NO_BYTES
  private wordLen = 0
  private cmd: number = Cmd.None
  private wordIndex = 0
  private prevWasWith = false
  private blockDepth = 0
  private tag: Uint8Array = NO_BYTES
  private tagLen = 0
  /** Inside a dollar-quoted body: how many bytes of `$tag` matched so far; -1 when not matching. */
  private tagMatch = -1
  private isEscapeString = false
  /** set_config( seen: the next string literal is a GUC name. 1 = want '(', 2 = want the literal. */
  private wantConfigName = 0
  private capture: number[] | null = null

  begin(): void {
    if (this.word === NO_BYTES) {
      const b = new Uint8Array(2 * MAX_WORD)
      this.word = b.subarray(0, MAX_WORD)
      this.tag = b.subarray(MAX_WORD)
    }
    this.flags = 0
    this.creator = ''
    this.names = null
    this.state = S.Normal
    this.wordLen = 0
    this.cmd = Cmd.None
    this.wordIndex = 0
    this.prevWasWith = false
    this.blockDepth = 0
    this.tagMatch = -1
    this.wantConfigName = 0
    this.capture = null
  }

  /** Scans buf[start, end); call begin() first and finish() after the last part. */
  feed(buf: Buffer | Uint8Array, start: number, end: number): void {
    let i = start
    while (i < end) {
      const c = buf[i]
      switch (this.state) {
        case S.Normal:
          if (WORD[c] & 1) {
            this.state = S.Word
            this.wordLen = 0
            continue
          }
          i++
          if (c === 0x27) { // '
            this.isEscapeString = false
            this.startLiteral()
            this.state = S.Squote
          } else if (c === 0x22) this.state = S.Dquote
          else if (c === 0x2d) this.state = S.Dash
          else if (c === 0x2f) this.state = S.Slash
          else if (c === 0x24) { // $: a parameter ($1) or a dollar quote ($$, $tag$)
            this.tagLen = 0
            this.state = S.DollarTag
          } else if (c === 0x3b) this.endStatement()
          else if (c === 0x28 && this.wantConfigName === 1) this.wantConfigName = 2
          else if (c > 0x20) this.wantConfigName = 0
          break
        case S.Word: {
          // A tight loop over the word: most bytes of a query are in words.
          const w = this.word
          let n = this.wordLen
          let b = c
          while (WORD[b] !== 0) {
            if (n < MAX_WORD) w[n] = b >= 0x41 && b <= 0x5a ? b + 0x20 : b
            n++
            if (++i === end) break
            b = buf[i]
          }
          this.wordLen = n
          if (i === end) break
          this.state = S.Normal
          if (b === 0x27 && n === 1 && w[0] === 0x65) { // E'...': backslash escapes
            i++
            this.isEscapeString = true
            this.startLiteral()
            this.state = S.Squote
            break
          }
          this.onWord()
          break
        }
        case S.Squote:
          i++
          if (c === 0x27) this.state = S.SquoteEnd
          else if (c === 0x5c && this.isEscapeString) this.state = S.SquoteEsc
          else if (this.capture !== null && this.capture.length < MAX_WORD) this.capture.push(c)
          break
        case S.SquoteEsc:
          i++
          this.state = S.Squote
          break
        case S.SquoteEnd:
          if (c === 0x27) { // '' inside a literal
            i++
            this.state = S.Squote
            this.capture?.push(c)
            break
          }
          this.endLiteral()
          this.state = S.Normal
          break
        case S.Dquote:
          i++
          if (c === 0x22) this.state = S.DquoteEnd
          break
        case S.DquoteEnd:
          if (c === 0x22) {
            i++
            this.state = S.Dquote
            break
          }
          this.state = S.Normal
          this.wordIndex++
          break
        case S.Dash:
          if (c === 0x2d) {
            i++
            this.state = S.Line
          } else this.state = S.Normal
          break
        case S.Line:
          i++
          if (c === 0x0a || c === 0x0d) this.state = S.Normal
          break
        case S.Slash:
          if (c === 0x2a) {
            i++
            this.blockDepth = 1
            this.state = S.Block
          } else this.state = S.Normal
          break
        case S.Block:
          i++
          if (c === 0x2a) this.state = S.BlockStar
          else if (c === 0x2f) this.state = S.BlockSlash
          break
        case S.BlockStar:
          i++
          if (c === 0x2f) {
            this.blockDepth--
            this.state = this.blockDepth === 0 ? S.Normal : S.Block
          } else if (c !== 0x2a) this.state = S.Block
          break
        case S.BlockSlash:
          i++
          if (c === 0x2a) this.blockDepth++ // comments nest in PostgreSQL
          this.state = c === 0x2f ? S.BlockSlash : S.Block
          break
        case S.DollarTag:
          if (c === 0x24) {
            i++
            this.tagMatch = -1
            this.state = S.Dollar
          } else if ((WORD[c] & 1) || (this.tagLen > 0 && c >= 0x30 && c <= 0x39)) {
            i++
            if (this.tagLen < MAX_WORD) this.tag[this.tagLen++] = c
          } else {
            this.state = S.Normal // $1, or a lone $: not a quote
          }
          break
        case S.Dollar:
          i++
          if (this.tagMatch < 0) {
            if (c === 0x24) this.tagMatch = 0
          } else if (this.tagMatch === this.tagLen) {
            if (c === 0x24) {
              this.state = S.Normal
              this.wordIndex++
            } else this.tagMatch = -1
          } else if (c === this.tag[this.tagMatch]) {
            this.tagMatch++
          } else {
            this.tagMatch = c === 0x24 ? 0 : -1
          }
          break
      }
    }
  }

  finish(): void {
    if (this.state === S.Word) this.onWord()
    else if (this.state === S.SquoteEnd) this.endLiteral()
    this.state = S.Normal
  }

  /** Scans one whole text. */
  scan(buf: Buffer | Uint8Array, start: number, end: number): number {
    this.begin()
    this.feed(buf, start, end)
    this.finish()
    return this.flags
  }

  private startLiteral(): void {
    this.capture = this.wantConfigName === 2 ? [] : null
    this.wantConfigName = 0
  }

  private endLiteral(): void {
    const cap = this.capture
    this.capture = null
    this.wordIndex++
    if (cap !== null) this.addName(Buffer.from(cap).toString('utf8').toLowerCase())
  }

  private endStatement(): void {
    this.cmd = Cmd.None
    this.wordIndex = 0
    this.prevWasWith = false
    this.wantConfigName = 0
  }

  private is(k: Uint8Array): boolean {
    const n = this.wordLen
    if (n !== k.length) return false
    const w = this.word
    for (let j = 0; j < n; j++) if (w[j] !== k[j]) return false
    return true
  }

  /** The word without a schema prefix starts with k. */
  private baseStartsWith(k: Uint8Array): boolean {
    const n = Math.min(this.wordLen, MAX_WORD)
    let from = 0
    for (let j = 0; j < n; j++) if (this.word[j] === 0x2e) from = j + 1
    if (n - from < k.length) return false
    for (let j = 0; j < k.length; j++) if (this.word[from + j] !== k[j]) return false
    return true
  }

  private contains(k: Uint8Array): boolean {
    const n = Math.min(this.wordLen, MAX_WORD)
    outer: for (let j = 0; j + k.length <= n; j++) {
      for (let m = 0; m < k.length; m++) if (this.word[j + m] !== k[m]) continue outer
      return true
    }
    return false
  }

  private wordText(): string {
    return Buffer.from(this.word.subarray(0, Math.min(this.wordLen, MAX_WORD))).toString('utf8')
  }

  private onWord(): void {
    const index = this.wordIndex++
    const n = this.wordLen
    this.wantConfigName = 0
    if (index === 0) {
      this.cmd = this.commandOf()
      return
    }
    // Function names and TEMP can appear anywhere; test cheaply by length and first byte first.
    const first = this.word[0]
    if (first === 0x70 && n >= 12) { // p: pg_advisory_*, pg_try_advisory_*, schema.pg_...
      this.onMaybeAdvisory()
    } else if (n >= 10 && this.baseStartsWith(K.setConfig) && (n === 10 || this.word[n - 11] === 0x2e)) {
      this.flags |= ScanFlag.Probe
      this.wantConfigName = 1
    } else if ((n === 4 && this.is(K.temp)) || (n === 9 && this.is(K.temporary))) {
      this.flags |= ScanFlag.Probe
      if (this.cmd === Cmd.Create || this.cmd === Cmd.Other) this.noteCreator(this.cmd === Cmd.Create ? 'CREATE TEMPORARY' : 'SELECT INTO TEMPORARY')
    } else if (n > 12 && this.contains(K.pgAdvisory)) {
      this.onMaybeAdvisory()
    }
    switch (this.cmd) {
      case Cmd.Set:
      case Cmd.Reset:
        if (index === 1 && this.cmd === Cmd.Set && (this.is(K.session) || this.is(K.local))) {
          this.wordIndex = 1 // SET SESSION name / SET LOCAL name: the name comes next
          return
        }
        if (index === 1) {
          if (this.is(K.role)) this.addName('role')
          else if (this.cmd === Cmd.Set && this.is(K.authorization)) this.noteCreator('SET SESSION AUTHORIZATION')
          else if (this.word.subarray(0, Math.min(n, MAX_WORD)).includes(0x2e)) this.addName(this.wordText())
        }
        break
      case Cmd.Discard:
      case Cmd.Deallocate:
        if (this.is(K.all)) this.flags |= ScanFlag.DropStatements
        break
      case Cmd.Prepare:
        if (index === 1 && !this.is(K.transaction)) this.noteCreator('PREPARE')
        break
      case Cmd.Declare:
        if (this.prevWasWith && this.is(K.hold)) this.noteCreator('DECLARE ... WITH HOLD')
        this.prevWasWith = this.is(K.with)
        break
    }
  }

  private onMaybeAdvisory(): void {
    if (!this.baseStartsWith(K.pgAdvisory) && !this.baseStartsWith(K.pgTryAdvisory)) return
    if (this.contains(K.xact)) return // transaction-scoped: released at COMMIT/ROLLBACK
    this.flags |= ScanFlag.Probe
    if (!this.contains(K.unlock)) this.noteCreator(this.wordText())
  }

  private commandOf(): number {
    const n = this.wordLen
    const f = ScanFlag.Probe
    switch (this.word[0]) {
      case 0x73: if (n === 3 && this.is(K.set)) { this.flags |= f; return Cmd.Set } break
      case 0x72: if (this.is(K.reset)) { this.flags |= f; return Cmd.Reset } break
      case 0x64:
        if (this.is(K.discard)) { this.flags |= f; return Cmd.Discard }
        if (this.is(K.deallocate)) { this.flags |= f; return Cmd.Deallocate }
        if (this.is(K.declare)) { this.flags |= f; return Cmd.Declare }
        if (this.is(K.do)) { this.flags |= f; return Cmd.Other }
        break
      case 0x6c: if (this.is(K.listen)) { this.flags |= f | ScanFlag.Listen; this.noteCreator('LISTEN'); return Cmd.Listen } break
      case 0x75: if (this.is(K.unlisten)) { this.flags |= f; return Cmd.Other } break
      case 0x70: if (this.is(K.prepare)) { this.flags |= f; return Cmd.Prepare } break
      case 0x63:
        if (this.is(K.close) || this.is(K.call)) { this.flags |= f; return Cmd.Other }
        if (this.is(K.create)) return Cmd.Create
        break
    }
    return Cmd.Other
  }

  private noteCreator(what: string): void {
    if (this.creator === '') this.creator = what
  }

  private addName(name: string): void {
    this.flags |= ScanFlag.Probe
    if (name === '' || (name !== 'role' && !name.includes('.'))) return
    this.names ??= []
    if (!this.names.includes(name)) this.names.push(name)
  }
}

// ---- probe ----

/** Kinds of session-bound state the probe reports, as they are named to operators and clients. */
export interface ProbeResult {
  gucs: Map<string, string>
  /** Comma-separated kinds of session-bound state left ('' = none): LISTEN, advisory lock, ... */
  bound: string
  /** Protocol-level prepared statements the server holds (DISCARD ALL drops tidepool's too). */
  protocolStatements: number
}

/**
 * One query that reads what a session holds. `trackedLower`: parameters tracked through
 * ParameterStatus (server-params.ts), left out here. `extraNames`: custom GUCs and role, which
 * pg_settings does not list.
 */
export function probeSql(trackedLower: readonly string[], extraNames: ReadonlySet<string>, loginUser: string): string {
  const tracked = trackedLower.map(quoteLiteral).join(',')
  let sql = `SELECT 'g', name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings WHERE source = 'session'` +
    (tracked === '' ? '' : ` AND lower(name) NOT IN (${tracked})`)
  if (extraNames.size > 0) {
    sql += ` UNION ALL SELECT 'g', n, pg_catalog.current_setting(n, true) FROM pg_catalog.unnest(ARRAY[${[...extraNames].map(quoteLiteral).join(',')}]::text[]) AS n`
  }
  return sql + ` UNION ALL SELECT 's', pg_catalog.concat_ws(', ',
    CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_listening_channels()) THEN 'LISTEN' END,
    CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()) THEN 'advisory lock' END,
    CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()) THEN 'temporary table' END,
    CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_cursors WHERE is_holdable) THEN 'WITH HOLD cursor' END,
    CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE from_sql) THEN 'SQL prepared statement' END,
    CASE WHEN session_user OPERATOR(pg_catalog.<>) ${quoteLiteral(loginUser)} THEN 'SET SESSION AUTHORIZATION' END),
    (SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE NOT from_sql)::text`
}

export function newProbeResult(): ProbeResult {
  return { gucs: new Map(), bound: '', protocolStatements: 0 }
}

/** Reads one DataRow body of the probe into `r`. */
export function readProbeRow(r: ProbeResult, buf: Buffer, start: number, end: number): void {
  const vals = parseDataRow(buf, start, end)
  if (vals[0] === 'g') {
    const name = vals[1] as string
    const value = vals[2]
    // What a client that never set them sees: NULL or '' for custom GUCs, 'none' for role.
    if (value === null || (value === '' && name.includes('.')) || (name === 'role' && value === 'none')) return
    r.gucs.set(name, value)
  } else if (vals[0] === 's') {
    r.bound = vals[1] ?? ''
    r.protocolStatements = Number(vals[2] ?? 0)
  }
}

// ---- sync ----

/**
 * SQL that turns a server holding `server` GUC values into one holding `client`'s: RESET for what
 * the client never set, set_config for the rest (not SET: SET quotes a list value such as
 * search_path as one identifier). '' when they already agree.
 */
export function gucSyncSql(client: GucMap, server: GucMap): string {
  if (client === server) return ''
  let resets = ''
  let sets = ''
  for (const name of server.keys()) {
    if (!client.has(name)) resets += name === 'role' ? 'RESET ROLE;' : `RESET ${quoteIdent(name)};`
  }
  for (const [name, value] of client) {
    if (server.get(name) === value) continue
    sets += (sets === '' ? 'SELECT ' : ', ') + `pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, false)`
  }
  return resets + (sets === '' ? '' : sets + ';')
}

/** The ErrorResponse text for a refused statement (session_state_policy = error). */
export function refusedMessage(creator: string): string {
  return `${creator} leaves session state that transaction pooling cannot keep (session_state_policy = error)`
}

/** A statement that fails with `message` when run, so the server itself aborts the transaction and skips to Sync. */
export function refusalSql(message: string): string {
  const tag = '$tidepool$'
  return `DO ${tag}BEGIN RAISE EXCEPTION USING ERRCODE = '${SqlState.FeatureNotSupported}', MESSAGE = ${quoteLiteral(message)}; END${tag}`
}
