// What the runner and its worker processes say to each other over the fork IPC channel.
// Histograms travel in HdrHistogram's compressed base64 form; arrays are indexed by the workload's
// operations, with the cycle last.

import type { Params } from './workload.ts'

export interface WorkerSpec {
  index: number
  url: string
  workload: string
  file: string | null
  params: Params
  connections: number
  /** cycles this worker runs, shared among its connections; null: until told to stop */
  iterations: number | null
  seed: number
  prepare: boolean
  thinkTimeMs: number
  intervalMs: number
}

export type ToWorker =
  | { type: 'start'; spec: WorkerSpec }
  | { type: 'go' }
  | { type: 'stop' }

export interface IntervalReport {
  type: 'interval'
  /** 1, 2, ...: the interval's number since go */
  k: number
  /** its length: intervalMs, shorter for the last one */
  ms: number
  hists: Array<string | null>
  errors: number[]
  codes: Record<string, number>
}

export type FromWorker =
  | { type: 'ready'; connect: string }
  | IntervalReport
  | { type: 'done'; lastK: number }
  | { type: 'fatal'; message: string }
