// PoolControl in one process: each command is a call on this process's PoolSet, acknowledged when
// done. A command that fails answers { ok: false, error } rather than throwing, as a remote one
// would. The clock is read here, so PoolSet and Pool take time as arguments.
// Must not: keep state of its own (PoolSet has it), or hand out Pool objects.

import type { Logger } from '../observe/log.ts'
import { pollUntil } from '../util/poll.ts'
import type { Ack, PoolCommand, PoolControl, PoolRow } from './control.ts'
import type { PoolSet } from './pool-set.ts'

/** Pause and WAIT_CLOSE look this often; fine enough for an operator, cheap for the pools. */
const WAIT_POLL_MS = 20
/** A drain polls finely: every ms here is a ms every held client waits. */
const DRAIN_POLL_MS = 5

export class LocalPoolControl implements PoolControl {
  constructor(private readonly pools: PoolSet, private readonly log: Logger) {}

  async run(cmd: PoolCommand): Promise<Ack> {
    const now = Date.now()
    switch (cmd.op) {
      case 'pause': return this.pause(cmd.database, cmd.timeoutMs, now)
      case 'resume': return done(this.pools.resume(cmd.database, now))
      case 'hold': return done(this.pools.hold(cmd.hosts, now))
      case 'release': return done(this.pools.hold(null, now))
      case 'drain': return this.drain(cmd.hosts, cmd.timeoutMs, cmd.reason)
      case 'kill': return done(this.pools.kill(cmd.database, now))
      case 'reconnect': return done(this.pools.reconnect(cmd.database, now))
      case 'wait_close':
        await pollUntil(() => this.pools.isClosingDone(cmd.database), WAIT_POLL_MS)
        return done(this.pools.of(cmd.database).length)
      case 'enable':
      case 'disable':
        this.pools.setDisabled(cmd.database, cmd.op === 'disable')
        return done(this.pools.of(cmd.database).length)
    }
  }

  async counts(database: string | null): Promise<PoolRow[]> {
    const now = Date.now()
    return this.pools.of(database)
      .sort((a, b) => (a.database < b.database ? -1 : a.database > b.database ? 1 : a.user < b.user ? -1 : a.user > b.user ? 1 : 0))
      .map((p) => p.row(now))
  }

  /**
   * The pause takes effect before the first await (the console's isPaused says so at once); the
   * ack waits for busy servers. After timeoutMs the pause stays in effect (RESUME lifts it).
   */
  private async pause(database: string | null, timeoutMs: number, now: number): Promise<Ack> {
    const affected = this.pools.pause(database, now)
    if (await pollUntil(() => affected.every((p) => p.lists.busyServerCount === 0), WAIT_POLL_MS, timeoutMs)) return done(affected.length)
    const what = affected.filter((p) => p.lists.busyServerCount > 0).map((p) => `${p.database}/${p.user} (${p.lists.busyServerCount} active)`).join(', ')
    this.log.warn('pause.timed_out', null, `PAUSE gave up waiting after ${timeoutMs} ms for ${what}`)
    return { ok: false, error: `PAUSE timed out after ${timeoutMs} ms (pause_timeout_ms) waiting for ${what}; still paused, RESUME to lift it` }
  }

  /** Transactions in flight on the held hosts finish until the deadline; those still running then are closed. */
  private async drain(hosts: readonly string[], timeoutMs: number, reason: string): Promise<Ack> {
    const pools = this.pools.onHosts(hosts)
    if (timeoutMs > 0) await pollUntil(() => pools.every((p) => p.lists.busyServerCount === 0), DRAIN_POLL_MS, timeoutMs)
    let cancelled = 0
    for (const p of pools) {
      for (const s of [...p.lists.activeServers]) {
        if (s.isReady) continue
        s.close(reason)
        cancelled++
      }
    }
    return { ok: true, pools: pools.length, cancelled }
  }
}

function done(pools: number): Ack {
  return { ok: true, pools, cancelled: 0 }
}
