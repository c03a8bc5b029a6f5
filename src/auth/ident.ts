// auth_ident_file: user name maps in pg_ident.conf syntax
// (https://www.postgresql.org/docs/current/auth-username-maps.html), used by hba `cert` lines
// with map=: the client certificate's CN is the "system user name", and the map says which
// database users it may log in as. Lines are `map-name system-username database-username`.
// A system-username starting with `/` (unquoted) is a regular expression, not anchored unless
// it says so; `\1` in the database-username stands for its first parenthesised group. The
// database-username may be `all`. Quoting, comments and line continuation are pg_hba.conf's.
// Beyond PgBouncer (literal names only) and like PostgreSQL: regular expressions and `\1`.
// Not supported, each an error naming file:line: include directives, `+group` and regular
// expressions in the database-username field. JavaScript regular expressions stand in for
// PostgreSQL's; the common forms (anchors, classes, groups, escapes) read the same in both.
// Invariants: a file with any error yields no maps at all, so a typo never lets anyone in.
// Must not: read files, throw, or log.

import { tokenize } from './conf-tokens.ts'

type SystemUser =
  | { readonly kind: 'name'; readonly name: string }
  | { readonly kind: 'regex'; readonly re: RegExp; readonly groups: number }

type DatabaseUser =
  | { readonly kind: 'all' }
  /** `template` holds `\1` for the first group when the system user is a regex with groups. */
  | { readonly kind: 'name'; readonly template: string; readonly substitutes: boolean }

export interface IdentEntry {
  readonly map: string
  readonly system: SystemUser
  readonly database: DatabaseUser
  readonly file: string
  readonly line: number
}

export interface IdentFile {
  readonly entries: readonly IdentEntry[]
  readonly maps: ReadonlySet<string>
}

export function parseIdent(text: string, file: string): { ok: true; ident: IdentFile } | { ok: false; errors: string[] } {
  const errors: string[] = []
  const entries: IdentEntry[] = []
  for (const l of tokenize(text, file)) {
    if (typeof l === 'string') { errors.push(l); continue }
    const where = `${file}:${l.line}`
    const first = l.fields[0][0]
    if (!first.quoted && (first.text === 'include' || first.text === 'include_if_exists' || first.text === 'include_dir')) {
      errors.push(`${where}: "${first.text}" is not supported in auth_ident_file`)
      continue
    }
    if (l.fields.length !== 3) {
      errors.push(`${where}: expected three fields (map-name system-username database-username), got ${l.fields.length}`)
      continue
    }
    if (l.fields.some((f) => f.length !== 1)) {
      errors.push(`${where}: each field must be a single name, not a comma-separated list`)
      continue
    }
    const [mapTok, sysTok, dbTok] = l.fields.map((f) => f[0])
    let system: SystemUser
    if (!sysTok.quoted && sysTok.text.startsWith('/')) {
      const src = sysTok.text.slice(1)
      let re: RegExp
      try {
        re = new RegExp(src)
      } catch (err) {
        errors.push(`${where}: invalid regular expression "${src}": ${(err as Error).message}`)
        continue
      }
      // One match of the empty string tells how many capturing groups the pattern has.
      const groups = (new RegExp(`${src}|`).exec('') as RegExpExecArray).length - 1
      system = { kind: 'regex', re, groups }
    } else {
      system = { kind: 'name', name: sysTok.text }
    }
    let database: DatabaseUser
    if (!dbTok.quoted && dbTok.text === 'all') {
      database = { kind: 'all' }
    } else if (!dbTok.quoted && dbTok.text.startsWith('+')) {
      errors.push(`${where}: group membership "${dbTok.text}" is not supported: tidepool has no roles; list the users instead`)
      continue
    } else if (!dbTok.quoted && dbTok.text.startsWith('/')) {
      errors.push(`${where}: a regular expression in the database-username field is not supported; use \\1 with a regular expression system-username`)
      continue
    } else {
      const substitutes = system.kind === 'regex' && dbTok.text.includes('\\1')
      if (substitutes && system.kind === 'regex' && system.groups === 0) {
        errors.push(`${where}: "${dbTok.text}" uses \\1 but the regular expression "${sysTok.text.slice(1)}" has no parenthesised group`)
        continue
      }
      database = { kind: 'name', template: dbTok.text, substitutes }
    }
    entries.push(Object.freeze({ map: mapTok.text, system, database, file, line: l.line }))
  }
  if (errors.length > 0) return { ok: false, errors }
  return { ok: true, ident: Object.freeze({ entries: Object.freeze(entries), maps: new Set(entries.map((e) => e.map)) }) }
}

/** Whether map `map` lets the external name `systemUser` (a certificate CN) log in as `user`. */
export function identAllows(ident: IdentFile, map: string, systemUser: string, user: string): boolean {
  for (const e of ident.entries) {
    if (e.map !== map) continue
    let group = ''
    if (e.system.kind === 'name') {
      if (e.system.name !== systemUser) continue
    } else {
      const m = e.system.re.exec(systemUser)
      if (m === null) continue
      group = m[1] ?? ''
    }
    if (e.database.kind === 'all') return true
    const name = e.database.substitutes ? e.database.template.replace('\\1', group) : e.database.template
    if (name === user) return true
  }
  return false
}
