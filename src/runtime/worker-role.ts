// What Runtime needs to know and do when it is one worker of several (src/workers/ supplies it):
// its index, how it listens beside the others, where cancels for other workers' keys go, and who
// stops the whole pooler. Absent in a single process, where Runtime behaves as it always has.
// Must not: import src/workers/ (it imports Runtime); this is the contract between them.

import type { ShutdownMode } from '../admin/console.ts'
import type { HttpView } from '../observe/http.ts'
import type { PoolControl } from '../pool/control.ts'
import type { SharedListen } from '../net/listener.ts'
import type { Pool, ServerLease } from '../pool/pool.ts'
import type { ClientSlots } from '../proxy/context.ts'

export interface WorkerRole {
  /** 0 .. count-1; a replacement worker takes the index of the one it replaces. */
  readonly index: number
  readonly count: number
  readonly listen: SharedListen
  /** A CancelRequest carrying a key that worker `owner` issued. */
  forwardCancel(owner: number, pid: number, secret: number): void
  /** Console SHUTDOWN: the primary stops every worker (this one included) and then itself. */
  shutdownAll(mode: ShutdownMode): void
  /** Where this worker's pools lease server slots; `find` looks a pool up without making it. */
  serverLease(find: (database: string, user: string) => Pool | undefined): ServerLease
  /** Client limits counted over all workers. */
  readonly clientSlots: ClientSlots
  /** The admin console for the whole pooler: reads every worker's numbers, commands reach every worker. */
  consoleQuery(sql: string, isAdmin: boolean): Promise<Buffer>
  /** The switchover's PoolControl: `local` is this worker's; the result acts on every worker. */
  poolControl(local: PoolControl): PoolControl
  /** The HTTP server's view: `local` is this worker's; the result reads every worker's numbers. */
  httpView(local: HttpView): HttpView
  /** A SUSPEND this worker's console began ends everywhere (its console clients are gone). */
  resumeEverywhere(): void
  /** At each janitor sweep, after the pools' own. */
  sweep(pools: readonly Pool[]): void
}
