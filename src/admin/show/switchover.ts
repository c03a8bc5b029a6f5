// SHOW SWITCHOVER (tidepool's own): the last switchover of each database, its result and how long
// each phase took (NULL for a phase that never ran).

import type { SwitchoverReport } from '../../ha/switchover.ts'
import type { ConsoleRequest } from '../request.ts'
import { columns, isoTime, type ResultSet, type Row } from '../result-set.ts'

const PHASES = ['hold', 'drain', 'promote', 'retarget', 'resume'] as const
const SWITCHOVER_COLUMNS = columns('ssssssi' + 'i'.repeat(PHASES.length) + 'i',
  ['database', 'from', 'to', 'result', 'error', 'started', 'total_ms', ...PHASES.map((p) => `${p}_ms`), 'cancelled'])

function switchoverRow(r: SwitchoverReport): Row {
  const ms = (name: string) => r.phases.find((p) => p.name === name)?.ms ?? null
  return [r.database, r.from, r.to, r.ok ? 'ok' : 'failed', r.error, isoTime(r.startedAtMs), r.totalMs, ...PHASES.map(ms), r.cancelled]
}

export function showSwitchovers(req: ConsoleRequest): ResultSet {
  return { columns: SWITCHOVER_COLUMNS, rows: req.view.switchovers().map(switchoverRow) }
}
