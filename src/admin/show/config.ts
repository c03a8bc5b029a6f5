// SHOW CONFIG: every setting with its value, default and whether SET/RELOAD may change it, as
// config/show.ts renders them from the settings table.

import { configRows } from '../../config/show.ts'
import type { ConsoleRequest } from '../request.ts'
import { columns, type ResultSet } from '../result-set.ts'

const CONFIG_COLUMNS = columns('ssss', ['key', 'value', 'default', 'changeable'])

export function showConfig(req: ConsoleRequest): ResultSet {
  return { columns: CONFIG_COLUMNS, rows: configRows(req.view.config()).map((r) => [r.key, r.value, r.default, r.changeable]) }
}
