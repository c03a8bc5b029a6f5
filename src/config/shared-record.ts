// The record of a fleet's shared config as stored in etcd (ha/fleet/shared-config.ts keeps the
// keys and the watch), and how a value read back is checked: only [databases], [users] and
// fleet-wide settings (fleet-scope.ts) may be in it; anything else refuses the whole value.
// Must not: talk to etcd or keep state; data plus pure checks, tested with strings.

import { findSetting } from './settings.ts'
import { isFleetWide } from './fleet-scope.ts'
import { parseJsonObject } from '../util/json-object.ts'

export interface SharedConfigRecord {
  /** 1 for the first push, then one more each push. */
  version: number
  /** The pushing machine's clock (ms since the epoch). */
  pushed_ms: number
  /** user@host that pushed. */
  pushed_by: string
  /** The file pushed, as named on that machine. */
  source: string
  /** [section, key, value] in file order: [databases], [users], fleet-wide [pgbouncer] and [tidepool] keys. */
  entries: Array<[string, string, string]>
}

const SECTIONS: ReadonlySet<string> = new Set(['databases', 'users', 'pgbouncer', 'tidepool'])

/** A value read at configKey: the record, or why it is refused. */
export function parseSharedConfig(value: string): { ok: true; record: SharedConfigRecord } | { ok: false; reason: string } {
  const j = parseJsonObject(value)
  if (!j.ok) return j
  const o = j.o
  if (typeof o.version !== 'number' || !Number.isSafeInteger(o.version) || o.version < 1) return { ok: false, reason: 'field version is not a whole number above 0' }
  if (typeof o.pushed_ms !== 'number' || !Number.isFinite(o.pushed_ms)) return { ok: false, reason: 'field pushed_ms is not a number' }
  for (const f of ['pushed_by', 'source'] as const) if (typeof o[f] !== 'string') return { ok: false, reason: `field ${f} is not a string` }
  if (!Array.isArray(o.entries)) return { ok: false, reason: 'field entries is not a list' }
  const entries: Array<[string, string, string]> = []
  for (const [i, e] of (o.entries as unknown[]).entries()) {
    if (!Array.isArray(e) || e.length !== 3 || !e.every((x) => typeof x === 'string')) return { ok: false, reason: `entry ${i + 1} is not [section, key, value]` }
    const [section, key, val] = e as [string, string, string]
    if (!SECTIONS.has(section)) return { ok: false, reason: `entry ${i + 1}: section [${section}] cannot be shared` }
    if (section === 'pgbouncer' || section === 'tidepool') {
      const row = findSetting(key)
      if (row === undefined) return { ok: false, reason: `entry ${i + 1}: unknown setting ${key}` }
      if (!isFleetWide(row)) return { ok: false, reason: `entry ${i + 1}: ${row.name} is node-local; a shared config cannot set it` }
    }
    entries.push([section, key, val])
  }
  return { ok: true, record: { version: o.version, pushed_ms: o.pushed_ms, pushed_by: o.pushed_by as string, source: o.source as string, entries } }
}

/** The record as ini text, for `tidepool fleet show`. */
export function sharedConfigText(r: SharedConfigRecord): string {
  const out: string[] = []
  let section = ''
  for (const [s, k, v] of r.entries) {
    if (s !== section) {
      if (out.length > 0) out.push('')
      out.push(`[${s}]`)
      section = s
    }
    out.push(`${/^[A-Za-z0-9_.*-]+$/.test(k) ? k : JSON.stringify(k)} = ${v}`)
  }
  return out.join('\n') + '\n'
}

