// What this build of tidepool applies, checked at load. A setting that the file sets but the
// build ignores must never fail open: where ignoring it would weaken security or lose an
// operator's guarantee (TLS required, an auth method we cannot run) the file is rejected; where
// it only changes tuning or observability, a warning names it. Remove entries as features land.
// Must not: parse values (settings.ts does) or read anything but the Settings given.

import type { Settings, SettingName } from './settings.ts'
import { defaultSettings } from './settings.ts'
import type { Config } from './types.ts'

/** auth_type values this build can run for client logins. */
const SUPPORTED_AUTH = new Set(['trust', 'any', 'plain', 'md5', 'scram-sha-256', 'cert', 'hba'])

/** Settings accepted but not applied yet, and the issue that brings them. */
const NOT_APPLIED: ReadonlyArray<readonly [SettingName, string]> = [
  ['auth_user', '#4'], ['auth_query', '#4'], ['auth_dbname', '#4'], ['auth_ident_file', '#4'],
  ['suspend_timeout', '#5'],
  ['max_prepared_statements', '#6'], ['session_state_policy', '#6'],
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
    errors.push(`${where('auth_type')}: auth_type ${s.auth_type} is not supported by this version of tidepool yet (#4); supported: ${[...SUPPORTED_AUTH].join(', ')}`)
  }
  if (s.auth_type === 'cert' && s.client_tls_sslmode !== 'verify-ca' && s.client_tls_sslmode !== 'verify-full') {
    errors.push(`${where('auth_type')}: auth_type cert needs client_tls_sslmode verify-ca or verify-full (client certificates are only requested then)`)
  }
  const defaults = defaultSettings()
  for (const [name, why] of NOT_APPLIED) {
    if (isSet(name) && JSON.stringify(s[name]) !== JSON.stringify(defaults[name])) {
      warnings.push(`${where(name)}: ${name} is accepted but not applied by this version of tidepool (${why})`)
    }
  }
  return { errors, warnings }
}
