// The workloads `tidepool bench` knows by name; `custom` is read from a file.

import { usageError } from '../errors.ts'
import type { Workload } from '../workload.ts'
import { loadCustomWorkload } from './custom.ts'
import { eventLogs } from './event-logs.ts'
import { flights } from './flights.ts'
import { trainEvents } from './train-events.ts'

export const BUILTIN_WORKLOADS: readonly Workload[] = [flights, eventLogs, trainEvents]

export const WORKLOAD_NAMES = [...BUILTIN_WORKLOADS.map((w) => w.name), 'custom']

export function getWorkload(name: string, file: string | null): Workload {
  if (name === 'custom') {
    if (file === null) throw usageError('the custom workload needs --file <workload file>')
    return loadCustomWorkload(file)
  }
  if (file !== null) throw usageError(`--file is for the custom workload, not ${name}`)
  const w = BUILTIN_WORKLOADS.find((x) => x.name === name)
  if (w === undefined) throw usageError(`unknown workload ${name}: expected one of ${WORKLOAD_NAMES.join(', ')}`)
  return w
}
