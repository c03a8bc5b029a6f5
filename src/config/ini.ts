// Reads pgbouncer.ini syntax into a flat list of (section, key, value, file:line) entries, with
// `%include` files spliced in where they appear. It knows nothing about what keys mean.
// Syntax: `[section]` lines; `key = value` lines (value runs to the end of the line, trimmed; a
// key may be quoted with '...' or "..." for names with odd characters); whole-line comments
// starting with ; or #, which are not special later in a line; `%include path`.
// Invariants: every entry and every error carries file:line; section names are lowercased (the
// loader matches them without case), keys keep their case because in [databases] and [users]
// they are names; the section in force carries into and back out of an included file, as in
// PgBouncer, whose include is a plain textual splice.
// Must not: throw on bad input (problems become error strings), interpret values, or echo a line
// or a value in an error (a bad line may hold a password; errors reach the log and RELOAD's DETAIL).

import { readFile, realpath } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'
import type { SourcePos } from './types.ts'

export interface IniEntry {
  /** Lowercased section name, without brackets. */
  readonly section: string
  /** As written, unquoted. */
  readonly key: string
  readonly value: string
  readonly pos: SourcePos
}

export interface IniSection {
  readonly name: string
  readonly pos: SourcePos
}

export interface IniResult {
  readonly entries: IniEntry[]
  /** Every section header in reading order (a name may repeat). */
  readonly sections: IniSection[]
  /** Absolute paths of every file read, the main one first. */
  readonly files: string[]
  readonly errors: string[]
}

/** PgBouncer stops at 10 nested includes; we do the same so a file that loads there loads here. */
export const MAX_INCLUDE_DEPTH = 10

/** Reads a file as text; injectable so tests can serve includes from memory. */
export type TextReader = (path: string) => Promise<string>

const readText: TextReader = (path) => readFile(path, 'utf8')

/** Reads `file` from disk and parses it with its includes. */
export async function parseIniFile(file: string, reader: TextReader = readText): Promise<IniResult> {
  const abs = resolve(file)
  const out = emptyResult()
  let text: string
  try {
    text = await reader(abs)
  } catch (err) {
    out.errors.push(`${abs}: cannot read config file: ${describeFsError(err)}`)
    return out
  }
  await parseInto(out, text, abs, [await canonical(abs)], { section: null }, reader)
  return out
}

/** Parses `text` as if it were the content of `file`; includes are read relative to its directory. */
export async function parseIniText(text: string, file: string, reader: TextReader = readText): Promise<IniResult> {
  const abs = resolve(file)
  const out = emptyResult()
  await parseInto(out, text, abs, [await canonical(abs)], { section: null }, reader)
  return out
}

function emptyResult(): { entries: IniEntry[]; sections: IniSection[]; files: string[]; errors: string[] } {
  return { entries: [], sections: [], files: [], errors: [] }
}

/** The section in force, shared by a file and everything it includes. */
interface Cursor {
  section: string | null
}

async function parseInto(
  out: ReturnType<typeof emptyResult>,
  text: string,
  file: string,
  stack: string[],
  cursor: Cursor,
  reader: TextReader,
): Promise<void> {
  out.files.push(file)
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const pos: SourcePos = { file, line: i + 1 }
    const where = `${file}:${i + 1}`
    const line = lines[i].trim()
    if (line === '' || line[0] === ';' || line[0] === '#') continue

    if (line[0] === '%') {
      const m = /^%include(?:\s+(.*))?$/.exec(line)
      if (m === null) {
        out.errors.push(`${where}: unknown directive ${JSON.stringify(line.split(/\s/)[0])}; only %include is known`)
        continue
      }
      const target = (m[1] ?? '').trim()
      if (target === '') {
        out.errors.push(`${where}: %include needs a file name`)
        continue
      }
      await include(out, target, file, where, stack, cursor, reader)
      continue
    }

    if (line[0] === '[') {
      const m = /^\[([^\]]*)\]\s*(?:[;#].*)?$/.exec(line)
      if (m === null) {
        out.errors.push(`${where}: malformed section header: expected "[name]" alone on the line`)
        continue
      }
      const name = m[1].trim().toLowerCase()
      if (name === '') {
        out.errors.push(`${where}: empty section name`)
        continue
      }
      cursor.section = name
      out.sections.push({ name, pos })
      continue
    }

    const kv = splitKeyValue(line)
    if ('error' in kv) {
      out.errors.push(`${where}: ${kv.error}`)
      continue
    }
    if (cursor.section === null) {
      out.errors.push(`${where}: '${kv.key}' comes before any [section]`)
      continue
    }
    out.entries.push({ section: cursor.section, key: kv.key, value: kv.value, pos })
  }
}

async function include(
  out: ReturnType<typeof emptyResult>,
  target: string,
  fromFile: string,
  where: string,
  stack: string[],
  cursor: Cursor,
  reader: TextReader,
): Promise<void> {
  // PgBouncer resolves a relative include against its working directory; we use the including
  // file's directory so a config tree can be moved or started from anywhere.
  const path = isAbsolute(target) ? target : resolve(dirname(fromFile), target)
  if (stack.length > MAX_INCLUDE_DEPTH) {
    out.errors.push(`${where}: %include nested deeper than ${MAX_INCLUDE_DEPTH} files`)
    return
  }
  const key = await canonical(path)
  if (stack.includes(key)) {
    out.errors.push(`${where}: %include cycle: ${[...stack, key].join(' -> ')}`)
    return
  }
  let text: string
  try {
    text = await reader(path)
  } catch (err) {
    out.errors.push(`${where}: cannot read %include file ${path}: ${describeFsError(err)}`)
    return
  }
  await parseInto(out, text, path, [...stack, key], cursor, reader)
}

/** The real path where it exists (so a symlink cannot hide a cycle), else the resolved one. */
async function canonical(path: string): Promise<string> {
  try {
    return await realpath(path)
  } catch {
    return path
  }
}

function splitKeyValue(line: string): { key: string; value: string } | { error: string } {
  let key: string
  let rest: string
  const q = line[0]
  if (q === '"' || q === "'") {
    // A quoted name; the quote character doubled stands for itself (SQL identifier style).
    let i = 1
    let name = ''
    for (;;) {
      if (i >= line.length) return { error: `unterminated quoted name: no closing ${q} on the line` }
      if (line[i] === q) {
        if (line[i + 1] === q) {
          name += q
          i += 2
          continue
        }
        break
      }
      name += line[i++]
    }
    if (name === '') return { error: 'empty quoted name' }
    key = name
    rest = line.slice(i + 1).trimStart()
  } else {
    const eq = line.indexOf('=')
    if (eq < 0) return { error: 'expected "key = value": no \'=\' on the line' }
    key = line.slice(0, eq).trim()
    rest = line.slice(eq)
    if (key === '') return { error: "missing name before '='" }
    if (/\s/.test(key)) return { error: `a name with spaces must be quoted: ${JSON.stringify(key)}` }
  }
  if (rest[0] !== '=') return { error: `expected '=' after ${JSON.stringify(key)}` }
  return { key, value: rest.slice(1).trim() }
}

/** A short reason for a failed read, for messages that already name the file. */
export function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException
  if (e.code === 'ENOENT') return 'no such file'
  if (e.code === 'EACCES') return 'permission denied'
  if (e.code === 'EISDIR') return 'is a directory'
  return e.message ?? String(err)
}
