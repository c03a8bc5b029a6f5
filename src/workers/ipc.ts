// The messages between the primary and its workers, over node:cluster's IPC channel ('advanced'
// serialization: structured clone, so Maps and typed arrays cross as they are). Plain data only.
// Requests that want an answer carry an id; Rpc matches answers to them and gives up after a
// deadline, so a worker that stops answering costs its caller the deadline, never a hang.
// Must not: carry a message per query or per transaction: nothing here is on the hot path.

import type { ShutdownMode } from '../admin/console.ts'
import type { PoolCommand } from '../pool/control.ts'
import type { HandledSignal } from '../runtime/signals.ts'
import type { SlotLimits } from './ledger.ts'
import type { ClientHandoff } from '../proxy/client-handoff.ts'
import type { ListenerKind } from '../runtime/takeover.ts'

/**
 * What the console (and the HTTP API, and a switchover) asks of every worker: each runs it on its
 * own pools and answers. `suspend` names the worker whose console asked (it alone resumes all when
 * its console clients are gone).
 */
export type WorkerCommand =
  | { op: 'snapshot' }
  | { op: 'pool'; cmd: PoolCommand }
  | { op: 'pause' | 'resume' | 'reconnect' | 'wait_close' | 'kill'; db: string | null }
  | { op: 'disable' | 'enable'; db: string }
  | { op: 'kill_client'; id: number }
  | { op: 'suspend'; owner: number }
  | { op: 'unsuspend' }
  | { op: 'set'; key: string; value: string }
  | { op: 'reload' }

/** One worker's answer to a WorkerCommand, or why there is none. */
export type CommandReply = { index: number; pid: number } & ({ ok: true; value: unknown } | { ok: false; error: string })

/** The primary tells one worker. */
export type ToWorker =
  /** The spare becomes worker `index`; `port`: the TCP port every worker uses, once known. */
  | { t: 'activate'; index: number; port: number | null }
  | { t: 'signal'; signal: HandledSignal }
  | { t: 'shutdown'; mode: ShutdownMode }
  /** A CancelRequest with a key this worker issued, received by another. */
  | { t: 'cancel'; pid: number; secret: number }
  /** Run this command; acknowledge it at once (cmd_ack), answer when done (cmd_reply). */
  | { t: 'cmd'; id: number; cmd: WorkerCommand }
  /** Every worker's answer to this worker's broadcast `id`. */
  | { t: 'broadcast_reply'; id: number; replies: CommandReply[] }
  /** The slot ledger (ledger.ts): n more server slots for the pool (db, user). */
  | { t: 'grant'; db: string; user: string; n: number }
  /** Give back up to n slots of the pool: unused ones and idle servers now, busy ones down to `keep`. */
  | { t: 'reclaim'; db: string; user: string; n: number; keep: number }
  /** Client slots (client-ledger.ts): n more, no more for now, or give back those not in use. */
  | { t: 'client_grant'; key: string; n: number }
  | { t: 'client_deny'; key: string }
  | { t: 'client_reclaim'; key: string }
  // Online restart (workers/takeover.ts). Old workers: send your listening sockets (takeover_listener
  // each, then takeover_listeners_done); stop accepting and hand your clients over by the deadline.
  | { t: 'takeover_listeners' }
  | { t: 'takeover_drain'; deadlineMs: number }
  // New workers: a listening socket to serve (with its handle), all sent (`isOldAlive`: keys this
  // worker does not know may be the old pooler's), a client of the old pooler (with its socket),
  // a connection it accepted unread, and: the old pooler is gone.
  | { t: 'inherit'; kind: ListenerKind }
  | { t: 'inherit_done'; isOldAlive: boolean }
  | { t: 'takeover_client'; h: ClientHandoff }
  | { t: 'takeover_conn'; isUnix: boolean }
  | { t: 'takeover_alone' }

/** A worker tells the primary. */
export type ToPrimary =
  /** The spare has loaded and waits for activate. */
  | { t: 'spare_ready' }
  /** Listening; `port` is the TCP port it bound (the one every worker uses). */
  | { t: 'ready'; port: number }
  | { t: 'cancel'; owner: number; pid: number; secret: number }
  /** Run `cmd` in every worker (this one too) and answer with every reply (broadcast_reply). */
  | { t: 'broadcast'; id: number; cmd: WorkerCommand }
  | { t: 'cmd_ack'; id: number }
  | { t: 'cmd_reply'; id: number; ok: boolean; value?: unknown; error?: string }
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
  // Online restart, old worker: a listening socket (with its handle; `inode` names the kernel's
  // socket, which several workers may share), all sent, or why not; a client between transactions
  // (with its socket); done (every handle on its way, servers closed).
  | { t: 'takeover_listener'; kind: ListenerKind; inode: string | null }
  | { t: 'takeover_listeners_done'; error: string | null }
  | { t: 'takeover_client'; h: ClientHandoff }
  | { t: 'takeover_drained'; handed: number; closed: number }
  /** New worker: the listening sockets to serve (answered with inherit, inherit_done). */
  | { t: 'inherit_ask' }
  /** New worker: a cancel key nobody here knows, for the old pooler. */
  | { t: 'cancel_old'; pid: number; secret: number }

/** The environment a worker is started with: which worker it is, and how it listens. */
export const ENV_INDEX = 'TIDEPOOL_WORKER_INDEX'
export const ENV_COUNT = 'TIDEPOOL_WORKER_COUNT'
export const ENV_LISTEN = 'TIDEPOOL_WORKER_LISTEN'
export const ENV_PORT = 'TIDEPOOL_WORKER_PORT'
/** ENV_INDEX of the warm spare: its index comes with activate. */
export const ENV_SPARE = 'spare'
/** Set (to 1) for the workers of a pooler that took over: they serve the listening sockets it inherited, never bind. */
export const ENV_INHERIT = 'TIDEPOOL_WORKER_INHERIT'

export function isMessage(m: unknown): m is { t: string } {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string'
}
