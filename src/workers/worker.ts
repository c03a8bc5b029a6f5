// One worker of a pooler with workers: a full Runtime that listens beside the others and talks to
// the primary over IPC. It ignores signals sent to it directly (a terminal's Ctrl-C reaches the
// whole process group; systemd's stop, the whole cgroup): the primary forwards each signal once,
// and the worker then does what a single process does (runtime/signals.ts).
// Must not: outlive the primary (node:cluster ends a worker whose channel closes).

import type { Config } from '../config/types.ts'
import type { Logger } from '../observe/log.ts'
import { cancelTimeoutMs } from '../proxy/cancel.ts'
import { Runtime } from '../runtime.ts'
import { HANDLED_SIGNALS, signalActions } from '../runtime/signals.ts'
import type { WorkerRole } from '../runtime/worker-role.ts'
import { ENV_COUNT, ENV_INDEX, ENV_LISTEN, ENV_PORT, isMessage, type ToPrimary, type ToWorker } from './ipc.ts'
import { WorkerLease } from './lease.ts'
import { WorkerClientSlots } from './client-slots.ts'

/** Signals a worker must not act on by itself: the primary's, and those Node would act on (SIGUSR1 opens the inspector). */
const IGNORED_SIGNALS = HANDLED_SIGNALS

function send(m: ToPrimary): void {
  process.send?.(m)
}

/** Starts this worker's Runtime; resolves with an exit code only when it could not start. */
export async function runWorker(config: Config, log: Logger): Promise<number | null> {
  const index = Number(process.env[ENV_INDEX])
  const count = Number(process.env[ENV_COUNT])
  const portText = process.env[ENV_PORT]
  for (const sig of IGNORED_SIGNALS) process.on(sig, () => {})
  let lease: WorkerLease | null = null
  const clientSlots = new WorkerClientSlots(count, send)
  const role: WorkerRole = {
    index,
    count,
    listen: { reusePort: process.env[ENV_LISTEN] === 'reuseport', port: portText === undefined ? null : Number(portText) },
    forwardCancel: (owner, pid, secret) => send({ t: 'cancel', owner, pid, secret }),
    shutdownAll: (mode) => send({ t: 'shutdown', mode }),
    serverLease: (find) => (lease = new WorkerLease(index, count, send, find)),
    clientSlots,
    sweep: (pools) => {
      lease?.sweep(pools)
      clientSlots.sweep()
    },
  }
  let rt: Runtime
  try {
    rt = await Runtime.start(config, { log, role })
  } catch (err) {
    const e = err as Error & { code?: string }
    log.error('runtime.failed', null, `worker ${index} could not start: ${e.message}`)
    return e.code === 'TP_CONFIG_INVALID' ? 2 : 1
  }
  const exit = () => process.exit(0)
  const actions = signalActions(rt, exit)
  process.on('message', (m: unknown) => {
    if (!isMessage(m)) return
    const msg = m as ToWorker
    switch (msg.t) {
      case 'signal':
        actions[msg.signal]()
        return
      case 'shutdown':
        void rt.shutdown(msg.mode).then(exit)
        return
      case 'cancel': {
        const what = rt.cancels.cancel(msg.pid, msg.secret, cancelTimeoutMs(rt.settings))
        rt.log.debug('cancel.received', null, `cancel request from another worker: ${what}`)
        return
      }
      case 'grant':
        lease?.onGrant(msg.db, msg.user, msg.n, Date.now())
        return
      case 'reclaim':
        lease?.onReclaim(msg.db, msg.user, msg.n, msg.keep)
        return
      case 'client_grant':
        clientSlots.onGrant(msg.key, msg.n)
        return
      case 'client_deny':
        clientSlots.onDeny(msg.key)
        return
      case 'client_reclaim':
        clientSlots.onReclaim(msg.key)
        return
    }
  })
  send({ t: 'ready', port: rt.port })
  return null
}
