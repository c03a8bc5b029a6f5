// What a console reply is made of: a result set (columns with PgBouncer's type letters, rows of
// plain values), and its encoding onto the wire as one Buffer that ends with ReadyForQuery('I').
// Also the value formats and row order PgBouncer uses, so every SHOW writes them alike.
// Must not: read the view; SHOW modules build ResultSets, console.ts sends them.

import * as build from '../protocol/build.ts'
import { TxStatus } from '../protocol/codes.ts'
import { SqlState } from '../protocol/pg-error.ts'

export interface Column {
  name: string
  typeOid: number
}

export type Row = Array<string | number | null>

export interface ResultSet {
  columns: Column[]
  rows: Row[]
}

// PgBouncer's column type letters (src/pktbuf.c): s text, i int4, q int8, N numeric, T a time sent
// as text, b bytea.
const TYPE_OIDS: Record<string, number> = { s: 25, i: 23, q: 20, N: 1700, T: 25, b: 17 }

/** Columns from a string of type letters, one per name: columns('si', ['list', 'items']). */
export function columns(types: string, names: readonly string[]): Column[] {
  if (types.length !== names.length) throw new Error(`console: ${types.length} types for ${names.length} columns`)
  return names.map((name, i) => ({ name, typeOid: TYPE_OIDS[types[i]] }))
}

/** RowDescription, a DataRow per row (text format; null stays NULL), CommandComplete, ReadyForQuery. */
export function resultReply(r: ResultSet, tag = 'SHOW'): Buffer {
  const parts: Buffer[] = [build.rowDescription(r.columns)]
  for (const row of r.rows) parts.push(build.dataRow(row.map((v) => (v === null ? null : String(v)))))
  parts.push(build.commandComplete(tag), build.readyForQuery(TxStatus.Idle))
  return Buffer.concat(parts)
}

/** CommandComplete and ReadyForQuery, after a NOTICE (SQLSTATE 00000) per notice. */
export function doneReply(tag: string, notices: ReadonlyArray<{ message: string; detail?: string }> = []): Buffer {
  const parts = notices.map((n) => build.noticeResponse({ severity: 'NOTICE', code: SqlState.SuccessfulCompletion, message: n.message, detail: n.detail }))
  parts.push(build.commandComplete(tag), build.readyForQuery(TxStatus.Idle))
  return Buffer.concat(parts)
}

/** ERROR (never FATAL: the console connection goes on), then ReadyForQuery. */
export function errorReply(code: string, message: string, detail?: string): Buffer {
  return Buffer.concat([build.errorResponse({ severity: 'ERROR', code, message, detail }), build.readyForQuery(TxStatus.Idle)])
}

/** Byte order, as PgBouncer's strcmp: no locale. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Puts a row where its first two columns sort among the others (the console's own database/pool). */
export function insertSorted(rows: Row[], row: Row): void {
  const key = (r: Row) => [String(r[0]), String(r[1] ?? '')]
  const [a0, a1] = key(row)
  let i = 0
  for (; i < rows.length; i++) {
    const [b0, b1] = key(rows[i])
    if ((compare(a0, b0) || compare(a1, b1)) < 0) break
  }
  rows.splice(i, 0, row)
}

/** The digits that end a connection id ('C-17' → 17): PgBouncer's id column is int4. */
export function numericId(id: string): number {
  const m = /(\d+)$/.exec(id)
  return m === null ? 0 : Number(m[1])
}

const ZONE_NAME = new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' })

/** PgBouncer's format_time_s: local time, 'YYYY-MM-DD HH:MM:SS ZONE'. */
export function formatTime(ms: number): string {
  const d = new Date(ms)
  const p2 = (n: number) => String(n).padStart(2, '0')
  const zone = ZONE_NAME.formatToParts(d).find((x) => x.type === 'timeZoneName')?.value ?? 'UTC'
  return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${zone}`
}

/** tidepool's own views (HOSTS, SWITCHOVER) write times as ISO 8601, UTC. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString()
}
