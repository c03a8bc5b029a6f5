// Reads PgBouncer's auth_file (userlist.txt): one user per line as `"name" "secret"`, where a
// double quote inside a field is written twice; anything after the second field is ignored, as
// PgBouncer does; blank lines and lines starting with ; are skipped.
// Invariants: a later line for the same user replaces the earlier one (PgBouncer updates it);
// every error names file:line; secrets never appear in messages.
// Must not: throw, read files (load.ts does), or judge the secret's format (auth/ does).

import type { UserSecret } from './types.ts'

export interface UserlistResult {
  readonly users: Map<string, UserSecret>
  readonly errors: string[]
}

/** Parses the content of an auth_file; `file` is only used in messages. */
export function parseUserlist(text: string, file: string): UserlistResult {
  const users = new Map<string, UserSecret>()
  const errors: string[] = []
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim()
    if (line === '' || line[0] === ';') continue
    const where = `${file}:${i + 1}`
    const name = readQuoted(line, 0)
    if (name === null) {
      errors.push(`${where}: expected "user" "password", the user name in double quotes`)
      continue
    }
    let at = name.end
    while (at < line.length && /\s/.test(line[at])) at++
    const secret = readQuoted(line, at)
    if (secret === null) {
      errors.push(`${where}: expected "user" "password", the password in double quotes after user ${JSON.stringify(name.value)}`)
      continue
    }
    if (name.value === '') {
      errors.push(`${where}: empty user name`)
      continue
    }
    users.set(name.value, { name: name.value, password: secret.value })
  }
  return { users, errors }
}

/** A "..." field starting at `start`, with "" standing for one quote; null if there is none. */
function readQuoted(line: string, start: number): { value: string; end: number } | null {
  if (line[start] !== '"') return null
  let value = ''
  let i = start + 1
  while (i < line.length) {
    if (line[i] === '"') {
      if (line[i + 1] === '"') {
        value += '"'
        i += 2
        continue
      }
      return { value, end: i + 1 }
    }
    value += line[i++]
  }
  return null
}
