// One worker of a pooler with workers: a full Runtime that listens beside the others and talks to
// the primary over IPC. It ignores signals sent to it directly (a terminal's Ctrl-C reaches the
// whole process group; systemd's stop, the whole cgroup): the primary forwards each signal once,
// and the worker then does what a single process does (runtime/signals.ts). Its console, HTTP API
// and switchover act for the whole pooler (cluster-view.ts); what another worker's console asks of
// it runs here on its own pools (runCommand), acknowledged at once and answered when done.
// Must not: outlive the primary (node:cluster ends a worker whose channel closes).

import net from 'node:net'
import type { Config } from '../config/types.ts'
import { loadConfig } from '../config/load.ts'
import type { Logger } from '../observe/log.ts'
import { cancelTimeoutMs } from '../proxy/cancel.ts'
import { Runtime } from '../runtime.ts'
import { HANDLED_SIGNALS, STOP_SIGNALS, signalActions } from '../runtime/signals.ts'
import type { WorkerRole } from '../runtime/worker-role.ts'
import type { ConsoleView } from '../admin/console.ts'
import { ENV_COUNT, ENV_INDEX, ENV_INHERIT, ENV_LISTEN, ENV_PORT, ENV_SPARE, isMessage, type CommandReply, type ToPrimary, type ToWorker, type WorkerCommand } from './ipc.ts'
import { ClusterConsole, type Broadcast } from './cluster-view.ts'
import { makeSnapshot } from './snapshot.ts'
import { WorkerLease } from './lease.ts'
import { WorkerClientSlots } from './client-slots.ts'
import { adoptHandles, drainClients, type HandedListener } from '../runtime/takeover.ts'
import type { Inherited } from '../runtime.ts'
import { listeningHandleOf, fdOf, socketInode } from '../net/socket-fd.ts'

/** Signals a worker must not act on by itself: the primary's, and those Node would act on (SIGUSR1 opens the inspector). */
const IGNORED_SIGNALS = HANDLED_SIGNALS

function send(m: ToPrimary): void {
  process.send?.(m)
}

/** Starts this worker's Runtime; a worker that cannot start exits with 2 (config) or 1. */
export async function runWorker(loaded: Config, log: Logger): Promise<void> {
  for (const sig of IGNORED_SIGNALS) process.on(sig, () => {})
  const count = Number(process.env[ENV_COUNT])
  let index = Number(process.env[ENV_INDEX])
  let portText = process.env[ENV_PORT]
  let config = loaded
  if (process.env[ENV_INDEX] === ENV_SPARE) {
    // Everything is loaded; wait to be told which worker to be. The file is read again then, as
    // a worker started at that moment would read it.
    const a = await activation()
    index = a.index
    if (a.port !== null) portText = String(a.port)
    const r = await loadConfig(config.file)
    if (!r.ok) {
      for (const e of r.errors) log.error('config.rejected', null, e)
      process.exit(2)
    }
    config = r.config
  }
  let rt: Runtime | null = null
  let lease: WorkerLease | null = null
  const clientSlots = new WorkerClientSlots(count, send)
  const broadcasts = new Map<number, (replies: CommandReply[]) => void>()
  let nextBroadcast = 1
  const broadcast: Broadcast = (cmd) => new Promise((resolve) => {
    const id = nextBroadcast++
    broadcasts.set(id, resolve)
    send({ t: 'broadcast', id, cmd })
  })
  const localView = (): ConsoleView => (rt as Runtime).admin.view
  const cluster = new ClusterConsole(index, broadcast, localView)
  const role: WorkerRole = {
    index,
    count,
    listen: { reusePort: process.env[ENV_LISTEN] === 'reuseport', port: portText === undefined ? null : Number(portText) },
    forwardCancel: (owner, pid, secret) => send({ t: 'cancel', owner, pid, secret }),
    shutdownAll: (mode) => send({ t: 'shutdown', mode }),
    serverLease: (find) => (lease = new WorkerLease(index, count, send, find)),
    clientSlots,
    consoleQuery: (sql, isAdmin) => cluster.query(sql, isAdmin),
    poolControl: () => cluster.poolControl(),
    httpView: (local) => cluster.httpView(local),
    resumeEverywhere: () => void broadcast({ op: 'unsuspend' }),
    sweep: (pools) => {
      lease?.sweep(pools)
      clientSlots.sweep()
    },
  }
  let actions: ReturnType<typeof signalActions> | null = null
  const exit = () => process.exit(0)
  // Listening before the runtime starts: a grant may answer a pool that asked during the start.
  process.on('message', (m: unknown, handle: unknown) => {
    if (!isMessage(m)) return
    const msg = m as ToWorker
    switch (msg.t) {
      case 'grant':
        return lease?.onGrant(msg.db, msg.user, msg.n, Date.now())
      case 'reclaim':
        return lease?.onReclaim(msg.db, msg.user, msg.n, msg.keep)
      case 'client_grant':
        return clientSlots.onGrant(msg.key, msg.n)
      case 'client_deny':
        return clientSlots.onDeny(msg.key)
      case 'client_reclaim':
        return clientSlots.onReclaim(msg.key)
      case 'broadcast_reply':
        broadcasts.get(msg.id)?.(msg.replies)
        broadcasts.delete(msg.id)
        return
    }
    const r = rt
    if (r === null) {
      // Stopped while still starting: nothing to wait for.
      if (msg.t === 'shutdown' || (msg.t === 'signal' && STOP_SIGNALS.has(msg.signal))) process.exit(0)
      return
    }
    switch (msg.t) {
      case 'signal':
        return actions?.[msg.signal]()
      case 'shutdown':
        void r.shutdown(msg.mode).then(exit)
        return
      case 'cancel': {
        const what = r.cancels.cancel(msg.pid, msg.secret, cancelTimeoutMs(r.settings))
        r.log.debug('cancel.received', null, `cancel request from another worker: ${what}`)
        return
      }
      case 'takeover_listeners':
        return sendListeners(r)
      case 'takeover_drain':
        return void handOver(r, msg.deadlineMs)
      case 'takeover_client':
        if (handle instanceof net.Socket) r.resumeClient(handle, msg.h)
        return
      case 'takeover_conn':
        if (handle instanceof net.Socket) r.acceptHanded(handle, msg.isUnix)
        return
      case 'takeover_alone':
        r.cancels.orElse = null
        return
      case 'cmd':
        send({ t: 'cmd_ack', id: msg.id })
        runCommand(r, index, msg.cmd).then(
          (value) => send({ t: 'cmd_reply', id: msg.id, ok: true, value }),
          (err: unknown) => send({ t: 'cmd_reply', id: msg.id, ok: false, error: (err as Error).message }),
        )
    }
  })
  // A pooler that took over serves the sockets it inherited: its workers never bind.
  const inheritance = process.env[ENV_INHERIT] === '1' ? await askInheritance() : null
  let inherited: Inherited | undefined
  try {
    if (inheritance !== null) inherited = adoptHandles(inheritance.handles, config.settings)
    rt = await Runtime.start(config, { log, role, inherited })
  } catch (err) {
    const e = err as Error & { code?: string }
    log.error('runtime.failed', null, `worker ${index} could not start: ${e.message}`)
    // The IPC channel would keep this process alive: end it, so the primary sees the failure.
    process.exit(e.code === 'TP_CONFIG_INVALID' ? 2 : 1)
  }
  const started = rt
  // Until the old pooler is gone, a key nobody here knows may be one of its clients'.
  if (inheritance?.isOldAlive === true) started.cancels.orElse = (pid, secret) => send({ t: 'cancel_old', pid, secret })
  // A forwarded SIGUSR1/SIGUSR2 reaches every worker: each pauses or resumes itself, so the
  // console query a signal runs is this worker's own.
  actions = signalActions({
    log: started.log,
    admin: started.admin,
    get isShuttingDown() { return started.isShuttingDown },
    reload: () => started.reload(),
    shutdown: (mode) => started.shutdown(mode),
    consoleQuery: (sql, isAdmin) => started.localConsoleQuery(sql, isAdmin),
  }, exit)
  send({ t: 'ready', port: started.port })
}

/** The listening sockets this pooler inherited, from the primary, and whether the old pooler still runs. */
function askInheritance(): Promise<{ handles: HandedListener[]; isOldAlive: boolean }> {
  return new Promise((resolve) => {
    const handles: HandedListener[] = []
    const onMessage = (m: unknown, handle: unknown) => {
      if (!isMessage(m)) return
      const msg = m as ToWorker
      if (msg.t === 'inherit' && typeof handle === 'object' && handle !== null) handles.push({ handle, kind: msg.kind })
      if (msg.t !== 'inherit_done') return
      process.off('message', onMessage)
      resolve({ handles, isOldAlive: msg.isOldAlive })
    }
    process.on('message', onMessage)
    send({ t: 'inherit_ask' })
  })
}

/** Online restart, old worker: this worker's listening sockets, as bare handles, for the new pooler. */
function sendListeners(rt: Runtime): void {
  for (const { server, kind } of rt.listeningServers()) {
    const handle = listeningHandleOf(server)
    if (handle === null) {
      // node:cluster's round robin ('rr') accepts in the primary: a worker has no socket to give.
      send({ t: 'takeover_listeners_done', error: `worker ${rt.role?.index} has no ${kind} socket of its own to hand over (TIDEPOOL_WORKER_LISTEN=rr?)` })
      return
    }
    process.send?.({ t: 'takeover_listener', kind, inode: socketInode(fdOf(server)) } satisfies ToPrimary, handle as net.Server)
  }
  send({ t: 'takeover_listeners_done', error: null })
}

/**
 * Online restart, old worker: stop accepting (the new workers do), retire every server (each
 * closes when released, so its slot goes back and the new pooler may open one), hand each client
 * over as it becomes free, and report once every socket is on its way; then close what is left.
 */
async function handOver(rt: Runtime, deadlineMs: number): Promise<void> {
  rt.stopAccepting()
  rt.pools.retireForTakeover(Date.now())
  let inFlight = 0
  const { handed, closed } = await drainClients(rt, deadlineMs, (socket, h) => {
    inFlight++
    process.send?.({ t: 'takeover_client', h } satisfies ToPrimary, socket, {}, () => { inFlight-- })
  })
  if (closed > 0) rt.log.warn('takeover.deadline', null, `takeover: ${closed} clients still busy at the deadline were closed`)
  while (inFlight > 0) await new Promise((r) => setTimeout(r, 5))
  await rt.shutdown('immediate')
  send({ t: 'takeover_drained', handed, closed })
}

/** The spare's wait: resolves with the activate message (a stop before it ends the process). */
function activation(): Promise<{ index: number; port: number | null }> {
  return new Promise((resolve) => {
    const onMessage = (m: unknown) => {
      if (!isMessage(m)) return
      const msg = m as ToWorker
      if (msg.t === 'shutdown' || (msg.t === 'signal' && STOP_SIGNALS.has(msg.signal))) process.exit(0)
      if (msg.t !== 'activate') return
      process.off('message', onMessage)
      resolve({ index: msg.index, port: msg.port })
    }
    process.on('message', onMessage)
    send({ t: 'spare_ready' })
  })
}

/** A console command another worker's console broadcast, run on this worker's own pools. */
async function runCommand(rt: Runtime, index: number, cmd: WorkerCommand): Promise<unknown> {
  const v = rt.admin.view
  switch (cmd.op) {
    case 'snapshot': return makeSnapshot(index, v, rt.admin.dashboard(rt.startTimeS))
    case 'pool': return rt.localControl.run(cmd.cmd)
    case 'pause': return v.pause(cmd.db)
    case 'resume': return v.resume(cmd.db)
    case 'reconnect': return v.reconnect(cmd.db)
    case 'wait_close': return v.waitClose(cmd.db)
    case 'disable':
    case 'enable': return v.setDisabled(cmd.db, cmd.op === 'disable')
    case 'kill': return v.kill(cmd.db)
    case 'kill_client': return v.killClient(cmd.id)
    case 'suspend': return rt.admin.suspend(cmd.owner !== index)
    case 'unsuspend':
      if (rt.admin.isSuspended) rt.admin.unsuspend()
      return null
    case 'set': return v.set(cmd.key, cmd.value)
    case 'reload': return v.reload()
  }
}
