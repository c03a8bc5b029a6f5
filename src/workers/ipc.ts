// The messages between the primary and its workers, over node:cluster's IPC channel ('advanced'
// serialization: structured clone, so Maps and typed arrays cross as they are). Plain data only.
// Requests that want an answer carry an id; Rpc matches answers to them and gives up after a
// deadline, so a worker that stops answering costs its caller the deadline, never a hang.
// Must not: carry a message per query or per transaction: nothing here is on the hot path.

import type { ShutdownMode } from '../admin/console.ts'
import type { HandledSignal } from '../runtime/signals.ts'

/** The primary tells one worker. */
export type ToWorker =
  | { t: 'signal'; signal: HandledSignal }
  | { t: 'shutdown'; mode: ShutdownMode }
  /** A CancelRequest with a key this worker issued, received by another. */
  | { t: 'cancel'; pid: number; secret: number }

/** A worker tells the primary. */
export type ToPrimary =
  /** Listening; `port` is the TCP port it bound (the one every worker uses). */
  | { t: 'ready'; port: number }
  | { t: 'cancel'; owner: number; pid: number; secret: number }
  /** Console SHUTDOWN: stop every worker in this mode, then the primary. */
  | { t: 'shutdown'; mode: ShutdownMode }

/** The environment a worker is started with: which worker it is, and how it listens. */
export const ENV_INDEX = 'TIDEPOOL_WORKER_INDEX'
export const ENV_COUNT = 'TIDEPOOL_WORKER_COUNT'
export const ENV_LISTEN = 'TIDEPOOL_WORKER_LISTEN'
export const ENV_PORT = 'TIDEPOOL_WORKER_PORT'

export function isMessage(m: unknown): m is { t: string } {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string'
}
