// The console's SET key = value as a config change: the value is parsed by the settings table and
// a new frozen Config is built with it (aliases, and auth_file's userlist, follow), checked as a
// loaded file is. Restart-only settings are refused; PgBouncer ignores them silently. The value
// lasts until the next RELOAD, which re-reads the file.
// Must not: put the Config in force (Runtime does, as RELOAD would) or log.

import fs from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import type { Config, SettingValue, SourcePos, UserSecret } from './types.ts'
import { findSetting, SETTINGS, type Settings } from './settings.ts'
import { checkBuildSupport } from './build-support.ts'
import { parseUserlist } from './userlist.ts'

/** Where a value SET from the console came from, for checkBuildSupport's messages. */
const SET_POS: SourcePos = Object.freeze({ file: 'SET', line: 0 })

export type SettingChange =
  | { ok: true; next: Config; warnings: string[]; /** What to log, secrets masked. */ what: string }
  | { ok: false; reason: string }

export function withSetting(prev: Config, key: string, text: string): SettingChange {
  const row = findSetting(key)
  if (row === undefined) return { ok: false, reason: `unknown parameter: ${key}` }
  if (row.apply !== 'live') return { ok: false, reason: `${row.name} cannot be changed at runtime; set it in the config file and restart` }
  const parsed = row.type.parse(text)
  if (!parsed.ok) return { ok: false, reason: `${row.name}: ${parsed.error}` }
  const settings: Record<string, SettingValue> = { ...prev.settings }
  const positions = new Map<string, SourcePos>(prev.positions)
  const value = Array.isArray(parsed.value) ? Object.freeze([...parsed.value]) : parsed.value
  // Aliases share one value, as in load.ts.
  const linked = [row.name, ...(row.aliasOf === null ? [] : [row.aliasOf]), ...SETTINGS.filter((x) => x.aliasOf === row.name).map((x) => x.name)]
  for (const name of linked) {
    settings[name] = value
    positions.set(name, SET_POS)
  }
  let userlist = prev.userlist
  if (row.name === 'auth_file') {
    const r = readUserlist(prev.file, value as string)
    if (typeof r === 'string') return { ok: false, reason: r }
    userlist = r
  }
  const next: Config = Object.freeze({ ...prev, settings: Object.freeze(settings) as unknown as Settings, positions, userlist })
  if (next.settings.auth_type === 'pam') return { ok: false, reason: 'auth_type pam is not supported' }
  const support = checkBuildSupport(next)
  if (support.errors.length > 0) return { ok: false, reason: support.errors.join('\n') }
  // Only the warnings this SET brought, without the position prefix that means nothing here.
  const before = new Set(checkBuildSupport(prev).warnings)
  const prefix = `${SET_POS.file}:${SET_POS.line}: `
  const warnings = support.warnings.filter((w) => !before.has(w)).map((w) => (w.startsWith(prefix) ? w.slice(prefix.length) : w))
  return { ok: true, next, warnings, what: `${row.name}=${row.isSecret ? '********' : text}` }
}

/** auth_file set from the console: read as load.ts reads it (relative to the config's directory). */
function readUserlist(configFile: string, authFile: string): ReadonlyMap<string, UserSecret> | string {
  if (authFile === '') return new Map()
  const path = isAbsolute(authFile) ? authFile : resolve(dirname(configFile), authFile)
  let text: string
  try {
    text = fs.readFileSync(path, 'utf8')
  } catch (err) {
    return `auth_file: cannot read ${path}: ${(err as Error).message}`
  }
  const r = parseUserlist(text, path)
  if (r.errors.length > 0) return r.errors.join('\n')
  return new Map([...r.users].map(([k, v]) => [k, Object.freeze(v)] as const))
}
