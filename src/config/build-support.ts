// What this build of tidepool applies, checked at load. A setting that the file sets but the
// build ignores must never fail open: where ignoring it would weaken security or lose an
// operator's guarantee (TLS required, an auth method we cannot run) the file is rejected; where
// it only changes tuning or observability, a warning names it. Remove entries as features land.
// Must not: parse values (settings.ts does) or read anything but the Settings given.

import type { Settings, SettingName } from './settings.ts'
import { defaultSettings } from './settings.ts'
import type { Config } from './types.ts'

/** The admin console's virtual database, which PgBouncer reserves. */
const CONSOLE_DATABASE = 'pgbouncer'

/** auth_type values this build can run for client logins. */
const SUPPORTED_AUTH = new Set(['trust', 'any', 'plain', 'md5', 'scram-sha-256', 'cert', 'hba'])

/** Settings accepted but not applied yet, and the issue that brings them. */
const NOT_APPLIED: ReadonlyArray<readonly [SettingName, string]> = [
  ['syslog', 'Node.js has no syslog client; use logfile or stderr'], ['so_reuseport', 'Node.js 20 cannot set it'],
  ['tcp_keepcnt', 'Node.js cannot set it'], ['tcp_keepintvl', 'Node.js cannot set it'], ['tcp_user_timeout', 'Node.js cannot set it'],
  ['tcp_defer_accept', 'Node.js cannot set it'], ['tcp_socket_buffer', 'Node.js cannot set it'],
]

/** Checks a loaded config against what this build runs; errors mean it must not be put to use. */
export function checkBuildSupport(config: Config): { errors: string[]; warnings: string[] } {
  const s: Settings = config.settings
  const isSet = (name: SettingName) => config.positions.has(name)
  const where = (name: SettingName) => {
    const p = config.positions.get(name)
    return p === undefined ? config.file : `${p.file}:${p.line}`
  }
  const errors: string[] = []
  const warnings: string[] = []
  if (!SUPPORTED_AUTH.has(s.auth_type) && s.auth_type !== 'pam') {
    errors.push(`${where('auth_type')}: auth_type ${s.auth_type} is not supported by tidepool; supported: ${[...SUPPORTED_AUTH].join(', ')}`)
  }
  if (s.auth_type === 'cert' && s.client_tls_sslmode !== 'verify-ca' && s.client_tls_sslmode !== 'verify-full') {
    errors.push(`${where('auth_type')}: auth_type cert needs client_tls_sslmode verify-ca or verify-full (client certificates are only requested then)`)
  }
  const authDb = authDbnameProblems(config)
  errors.push(...authDb.errors)
  warnings.push(...authDb.warnings)
  errors.push(...roleCheckErrors(config))
  const defaults = defaultSettings()
  for (const [name, why] of NOT_APPLIED) {
    if (isSet(name) && JSON.stringify(s[name]) !== JSON.stringify(defaults[name])) {
      warnings.push(`${where(name)}: ${name} is accepted but not applied by this version of tidepool (${why})`)
    }
  }
  return { errors, warnings }
}

/**
 * A role (primary, standby) can only be read by a check that logs in: an entry that asks for one
 * needs a user to check as, or its clients would wait for a primary that is never found.
 */
function roleCheckErrors(config: Config): string[] {
  const out: string[] = []
  for (const db of config.databases.values()) {
    const attrs = db.target_session_attrs ?? 'any'
    if (attrs === 'any' || (db.backend ?? 'postgresql') !== 'postgresql') continue
    if (db.user === null && db.auth_user === null && config.settings.auth_user === '') {
      out.push(`${db.pos.file}:${db.pos.line}: [databases] ${db.name}: target_session_attrs ${attrs} needs user= (or auth_user) so health checks can log in and read the host's role`)
    }
  }
  return out
}

/**
 * auth_dbname = pgbouncer names the admin console, which has no server to run auth_query on:
 * PgBouncer refuses the setting, so the file is refused (for a [databases] entry's auth_dbname= too,
 * where PgBouncer would fail every login through it instead). An auth_dbname naming no
 * [databases] entry (and no '*' to fall back on) fails every lookup with "bouncer config error",
 * as PgBouncer does at login; saying so at load saves the hunt.
 */
function authDbnameProblems(config: Config): { errors: string[]; warnings: string[] } {
  const errors: string[] = []
  const warnings: string[] = []
  const check = (name: string, where: string) => {
    if (name.toLowerCase() === CONSOLE_DATABASE) errors.push(`${where}: auth_dbname cannot be the admin console database "${CONSOLE_DATABASE}"`)
    else if (!config.databases.has(name) && !config.databases.has('*')) warnings.push(`${where}: auth_dbname "${name}" is not in [databases]; auth_query logins through it will fail`)
  }
  const global = config.settings.auth_dbname
  if (global !== '') {
    const p = config.positions.get('auth_dbname')
    check(global, p === undefined ? config.file : `${p.file}:${p.line}`)
  }
  for (const db of config.databases.values()) {
    if (db.auth_dbname !== null) check(db.auth_dbname, `${db.pos.file}:${db.pos.line}`)
  }
  return { errors, warnings }
}
