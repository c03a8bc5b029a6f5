// The messages between the primary and its workers, over node:cluster's IPC channel ('advanced'
// serialization: structured clone, so Maps and typed arrays cross as they are). Plain data only.
// Requests that want an answer carry an id; Rpc matches answers to them and gives up after a
// deadline, so a worker that stops answering costs its caller the deadline, never a hang.
// Must not: carry a message per query or per transaction: nothing here is on the hot path.

import type { ShutdownMode } from '../admin/console.ts'
import type { HandledSignal } from '../runtime/signals.ts'
import type { SlotLimits } from './ledger.ts'

/** The primary tells one worker. */
export type ToWorker =
  | { t: 'signal'; signal: HandledSignal }
  | { t: 'shutdown'; mode: ShutdownMode }
  /** A CancelRequest with a key this worker issued, received by another. */
  | { t: 'cancel'; pid: number; secret: number }
  /** The slot ledger (ledger.ts): n more server slots for the pool (db, user). */
  | { t: 'grant'; db: string; user: string; n: number }
  /** Give back up to n slots of the pool: unused ones and idle servers now, busy ones down to `keep`. */
  | { t: 'reclaim'; db: string; user: string; n: number; keep: number }
  /** Client slots (client-ledger.ts): n more, no more for now, or give back those not in use. */
  | { t: 'client_grant'; key: string; n: number }
  | { t: 'client_deny'; key: string }
  | { t: 'client_reclaim'; key: string }

/** A worker tells the primary. */
export type ToPrimary =
  /** Listening; `port` is the TCP port it bound (the one every worker uses). */
  | { t: 'ready'; port: number }
  | { t: 'cancel'; owner: number; pid: number; secret: number }
  /** Console SHUTDOWN: stop every worker in this mode, then the primary. */
  | { t: 'shutdown'; mode: ShutdownMode }
  /** The pool could use `target` server slots in all (its clients wait at its lease); at or below what it holds: no more. */
  | { t: 'want'; db: string; user: string; target: number; reserve: boolean; limits: SlotLimits }
  /** n slots of the pool go back (n = 0: the answer to a reclaim that found nothing to give). */
  | { t: 'release'; db: string; user: string; n: number }
  /** A server connection logged in / closed: if this worker dies, the primary cancels what may still run there. */
  | { t: 'server_up'; id: string; host: string; port: number; pid: number; secret: number }
  | { t: 'server_down'; id: string }
  /** Client slots under `limit` for `key`; `used`: how many of this worker's are in use. */
  | { t: 'client_ask'; key: string; limit: number; used: number; n: number }
  | { t: 'client_release'; key: string; n: number; used: number }

/** The environment a worker is started with: which worker it is, and how it listens. */
export const ENV_INDEX = 'TIDEPOOL_WORKER_INDEX'
export const ENV_COUNT = 'TIDEPOOL_WORKER_COUNT'
export const ENV_LISTEN = 'TIDEPOOL_WORKER_LISTEN'
export const ENV_PORT = 'TIDEPOOL_WORKER_PORT'

export function isMessage(m: unknown): m is { t: string } {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string'
}
