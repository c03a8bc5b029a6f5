// The rows of the admin console's SHOW CONFIG, built from the settings table: PgBouncer's columns
// (key, value, default, changeable) and its spelling of values (seconds as printf %g, booleans
// as 0/1, the file mode in decimal), so tools that parse PgBouncer's output read ours.
// Invariants: one row per setting; [pgbouncer] keys first in alphabetical order as PgBouncer
// lists them, then our [tidepool] keys; secrets (http_token) never appear.
// Must not: format for a particular transport (admin/ turns rows into DataRows or JSON).

import { renderSetting, SETTINGS, type AnySettingRow } from './settings.ts'
import type { Config } from './types.ts'

export interface ConfigRow {
  key: string
  value: string
  default: string
  /** PgBouncer's word for "RELOAD applies it". */
  changeable: 'yes' | 'no'
}

const ORDERED: readonly AnySettingRow[] = [...SETTINGS].sort((a, b) =>
  a.section === b.section ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.section === 'pgbouncer' ? -1 : 1)

export function configRows(cfg: Config): ConfigRow[] {
  return ORDERED.map((row) => ({
    key: row.name,
    value: renderSetting(row, cfg.settings[row.name]),
    default: row.isSecret ? '' : row.default,
    changeable: row.apply === 'live' ? 'yes' : 'no',
  }))
}
