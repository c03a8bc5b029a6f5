// Builds a Config from pgbouncer.ini: reads the file and its %includes (ini.ts), types every
// [pgbouncer] and [tidepool] value with the settings table, parses [databases], [users] and
// [peers] (connstr.ts), reads auth_file (userlist.ts), checks what spans several settings, and freezes
// the result. Also diffs two Configs so RELOAD can tell live changes from ones awaiting restart.
// Invariants: a returned Config is deep-frozen, Maps included; any error means no Config (RELOAD
// then keeps the old one); unknown keys and sections are warnings, as PgBouncer only logs them;
// every message starts with file:line (or the file alone when no line is to blame).
// Must not: throw on bad input, log (callers print warnings and errors), or start anything.

import { readFile } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'
import { parseDatabaseEntry, parsePeerEntry, parseUserEntry } from './connstr.ts'
import { describeFsError, parseIniFile, parseIniText, type IniEntry, type IniResult } from './ini.ts'
import { isFleetWideKey } from './fleet-scope.ts'
import { defaultSettings, findSetting, SETTINGS, type AuthType, type SettingName, type Settings } from './settings.ts'
import type { Config, DatabaseEntry, LoadResult, PeerEntry, SettingValue, SourcePos, UserEntry, UserSecret } from './types.ts'
import { parseUserlist } from './userlist.ts'
import { regionProblems } from './regions.ts'

/** Reads and validates the config file at `file` (made absolute). */
export async function loadConfig(file: string): Promise<LoadResult> {
  const abs = resolve(file)
  return build(await parseIniFile(abs), abs)
}

/** As loadConfig, with the main file's text given; %include and auth_file still come from disk,
 *  relative to `file`'s directory. */
export async function loadConfigFromText(text: string, file: string): Promise<LoadResult> {
  const abs = resolve(file)
  return build(await parseIniText(text, abs), abs)
}

/**
 * A fleet's shared config (ha/fleet/shared-config.ts stores it in etcd): lines of [databases] and
 * [users] and fleet-wide settings, as [section, key, value]; `source` names it in messages.
 */
export interface SharedEntries {
  source: string
  entries: ReadonlyArray<readonly [string, string, string]>
}

/**
 * As loadConfig, with a fleet's shared config in force: the node's own file gives its node-local
 * settings, `shared` gives [databases], [users] and every fleet-wide setting (one it does not set
 * takes its default, whatever the node's file says). null: the file alone, as loadConfig.
 */
export async function loadConfigWithShared(file: string, shared: SharedEntries | null): Promise<LoadResult> {
  const abs = resolve(file)
  const own = await parseIniFile(abs)
  return build(shared === null ? own : withShared(own, shared), abs)
}

function isSharedEntry(e: { section: string; key: string }): boolean {
  return e.section === 'databases' || e.section === 'users' || ((e.section === 'pgbouncer' || e.section === 'tidepool') && isFleetWideKey(e.key))
}

/** What of a parsed file a fleet shares, in file order (includes spliced in). */
export function sharedEntriesOf(ini: IniResult): Array<[string, string, string]> {
  return ini.entries.filter(isSharedEntry).map((e) => [e.section, e.key, e.value])
}

function withShared(own: IniResult, shared: SharedEntries): IniResult {
  const entries: IniEntry[] = own.entries.filter((e) => !isSharedEntry(e))
  const sections = [...own.sections]
  shared.entries.forEach(([section, key, value], i) => {
    const pos = { file: shared.source, line: i + 1 }
    if (!sections.some((s) => s.name === section && s.pos.file === shared.source)) sections.push({ name: section, pos })
    entries.push({ section, key, value, pos })
  })
  return { entries, sections, files: own.files, errors: own.errors }
}

// Sections we read.
const KNOWN_SECTIONS = new Set(['pgbouncer', 'tidepool', 'databases', 'users', 'peers'])
// auth_file is where these methods find every secret; the others can do without it.
const NEEDS_AUTH_FILE: ReadonlySet<AuthType> = new Set(['plain', 'md5', 'scram-sha-256'])
// These check no secret but, as in PgBouncer, admit only users that auth_file or auth_query knows.
const NEEDS_KNOWN_USERS: ReadonlySet<AuthType> = new Set([...NEEDS_AUTH_FILE, 'trust', 'cert'])

function at(pos: SourcePos): string {
  return `${pos.file}:${pos.line}`
}

async function build(ini: IniResult, file: string): Promise<LoadResult> {
  const errors = [...ini.errors]
  const warnings: string[] = []
  const mainFile = ini.files[0] ?? file
  if (ini.files.length === 0) return { ok: false, errors, warnings }

  for (const s of ini.sections) {
    if (KNOWN_SECTIONS.has(s.name)) continue
    warnings.push(`${at(s.pos)}: unknown section [${s.name}]; its entries are ignored`)
  }
  if (!ini.sections.some((s) => s.name === 'pgbouncer')) {
    errors.push(`${mainFile}: no [pgbouncer] section`)
  }

  const values = defaultSettings() as unknown as Record<string, SettingValue>
  const positions = new Map<string, SourcePos>()
  const databases = new Map<string, DatabaseEntry>()
  const users = new Map<string, UserEntry>()
  const peers = new Map<number, PeerEntry>()

  for (const e of ini.entries) {
    if (e.section === 'pgbouncer' || e.section === 'tidepool') {
      applySetting(e, values, positions, errors, warnings)
    } else if (e.section === 'databases' || e.section === 'users') {
      const r = e.section === 'databases' ? parseDatabaseEntry(e.key, e.value, e.pos) : parseUserEntry(e.key, e.value, e.pos)
      errors.push(...r.errors)
      warnings.push(...r.warnings)
      if (r.entry === null) continue
      const into = (e.section === 'databases' ? databases : users) as Map<string, DatabaseEntry | UserEntry>
      const earlier = into.get(e.key)
      if (earlier !== undefined) {
        warnings.push(`${at(e.pos)}: [${e.section}] ${e.key} is defined again (first at ${at(earlier.pos)}); the later line wins`)
      }
      into.set(e.key, r.entry)
    } else if (e.section === 'peers') {
      const r = parsePeerEntry(e.key, e.value, e.pos)
      errors.push(...r.errors)
      warnings.push(...r.warnings)
      if (r.entry === null) continue
      const earlier = peers.get(r.entry.peer_id)
      if (earlier !== undefined) {
        warnings.push(`${at(e.pos)}: [peers] ${e.key} is defined again (first at ${at(earlier.pos)}); the later line wins`)
      }
      peers.set(r.entry.peer_id, r.entry)
    }
  }
  const settings = values as unknown as Settings

  const where = (name: SettingName) => {
    const p = positions.get(name)
    return p === undefined ? mainFile : at(p)
  }
  if (settings.auth_type === 'pam') errors.push(`${where('auth_type')}: auth_type pam is not supported`)
  if (settings.client_tls_sslmode !== 'disable' && (settings.client_tls_key_file === '' || settings.client_tls_cert_file === '')) {
    errors.push(`${where('client_tls_sslmode')}: client_tls_sslmode ${settings.client_tls_sslmode} needs client_tls_key_file and client_tls_cert_file`)
  }
  if (settings.conffile === '') values.conffile = mainFile
  const regions = regionProblems(databases.values(), settings.node_region)
  errors.push(...regions.errors)
  warnings.push(...regions.warnings)

  const userlist = new Map<string, UserSecret>()
  const needsAuthFile = NEEDS_AUTH_FILE.has(settings.auth_type)
  if (settings.auth_file !== '') {
    // A broken auth_file sinks the load only when logins depend on it.
    const problems = needsAuthFile ? errors : warnings
    // PgBouncer reads it relative to its working directory; the config's directory keeps a
    // config tree working wherever tidepool is started.
    const path = isAbsolute(settings.auth_file) ? settings.auth_file : resolve(dirname(mainFile), settings.auth_file)
    try {
      const text = await readFile(path, 'utf8')
      const r = parseUserlist(text, path)
      problems.push(...r.errors)
      for (const [k, v] of r.users) userlist.set(k, Object.freeze(v))
    } catch (err) {
      problems.push(`${where('auth_file')}: auth_file: cannot read ${path}: ${describeFsError(err)}`)
    }
  } else if (NEEDS_KNOWN_USERS.has(settings.auth_type) && settings.auth_user === '' && ![...databases.values()].some((d) => d.auth_user !== null)) {
    warnings.push(`${mainFile}: auth_type ${settings.auth_type} with neither auth_file nor auth_user set: no user can log in`)
  }

  if (errors.length > 0) return { ok: false, errors, warnings }
  const config: Config = Object.freeze({
    file: mainFile,
    settings: freezeSettings(values),
    databases: new FrozenMap([...databases].map(([k, v]) => [k, freezeDatabase(v)] as const)),
    users: new FrozenMap([...users].map(([k, v]) => [k, Object.freeze({ ...v, extra: Object.freeze({ ...v.extra }) })] as const)),
    peers: new FrozenMap([...peers].map(([k, v]) => [k, Object.freeze({ ...v, pos: Object.freeze({ ...v.pos }) })] as const)),
    userlist: new FrozenMap(userlist),
    positions: new FrozenMap([...positions].map(([k, v]) => [k, Object.freeze(v)] as const)),
  })
  return { ok: true, config, warnings }
}

function applySetting(
  e: IniEntry,
  values: Record<string, SettingValue>,
  positions: Map<string, SourcePos>,
  errors: string[],
  warnings: string[],
): void {
  const row = findSetting(e.key)
  if (row === undefined) {
    warnings.push(`${at(e.pos)}: unknown setting '${e.key}'`)
    return
  }
  if (row.section !== e.section) {
    warnings.push(`${at(e.pos)}: unknown setting '${e.key}' in [${e.section}] (it belongs in [${row.section}])`)
    return
  }
  const r = row.type.parse(e.value)
  if (!r.ok) {
    errors.push(`${at(e.pos)}: ${row.name}: ${r.error}`)
    return
  }
  const earlier = positions.get(row.name)
  if (earlier !== undefined) {
    warnings.push(`${at(e.pos)}: ${row.name} is set again (first at ${at(earlier)}); the later value wins`)
  }
  // Aliases share one value, as they share one variable in PgBouncer.
  const linked = [row.name, ...(row.aliasOf === null ? [] : [row.aliasOf]), ...SETTINGS.filter((x) => x.aliasOf === row.name).map((x) => x.name)]
  for (const name of linked) {
    values[name] = r.value
    positions.set(name, e.pos)
  }
}

function freezeSettings(values: Record<string, SettingValue>): Readonly<Settings> {
  for (const v of Object.values(values)) if (Array.isArray(v)) Object.freeze(v)
  return Object.freeze(values) as unknown as Settings
}

function freezeDatabase(d: DatabaseEntry): DatabaseEntry {
  return Object.freeze({
    ...d,
    hosts: Object.freeze([...d.hosts]),
    ports: Object.freeze([...d.ports]),
    host_regions: Object.freeze([...d.host_regions]),
    extra: Object.freeze({ ...d.extra }),
    pos: Object.freeze({ ...d.pos }),
  })
}

/**
 * A Map that refuses changes once built. Object.freeze alone leaves a Map's entries writable
 * (set/delete work on internal slots), and a Config must not change under the code reading it.
 */
class FrozenMap<K, V> extends Map<K, V> {
  constructor(entries: Iterable<readonly [K, V]>) {
    super()
    for (const [k, v] of entries) super.set(k, v)
    Object.freeze(this)
  }

  override set(_key: K, _value: V): this {
    throw new TypeError('config is frozen: this map cannot be changed')
  }

  override delete(_key: K): boolean {
    throw new TypeError('config is frozen: this map cannot be changed')
  }

  override clear(): void {
    throw new TypeError('config is frozen: this map cannot be changed')
  }
}

export interface ConfigDiff {
  /** Changed names RELOAD applies: settings by name, `databases.<name>`, `users.<name>`, `peers.<id>`, `userlist.<user>`. */
  live: string[]
  /** Changed settings that take effect only after a restart. */
  restart: string[]
}

/** What changed from `a` to `b`. Entries of [databases], [users], [peers] and auth_file count as live. */
export function diffConfig(a: Config, b: Config): ConfigDiff {
  const live: string[] = []
  const restart: string[] = []
  for (const row of SETTINGS) {
    if (!sameValue(a.settings[row.name], b.settings[row.name])) (row.apply === 'live' ? live : restart).push(row.name)
  }
  diffMaps('databases', a.databases, b.databases, live)
  diffMaps('users', a.users, b.users, live)
  diffMaps('peers', a.peers, b.peers, live)
  diffMaps('userlist', a.userlist, b.userlist, live)
  return { live, restart }
}

function sameValue(x: SettingValue, y: SettingValue): boolean {
  if (Array.isArray(x) && Array.isArray(y)) return x.length === y.length && x.every((v, i) => v === y[i])
  return x === y
}

function diffMaps<K, V extends object>(label: string, a: ReadonlyMap<K, V>, b: ReadonlyMap<K, V>, out: string[]): void {
  const names = new Set([...a.keys(), ...b.keys()])
  for (const name of names) {
    const x = a.get(name)
    const y = b.get(name)
    if (x === undefined || y === undefined || comparable(x) !== comparable(y)) out.push(`${label}.${String(name)}`)
  }
}

/** Everything but where it was written: moving a line is not a change. */
function comparable(v: object): string {
  return JSON.stringify(v, (key, value) => (key === 'pos' ? undefined : value))
}
