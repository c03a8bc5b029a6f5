// Fleet-wide commands (FLEET PAUSE|RESUME|RECONNECT|KILL|RELOAD|ENABLE|DISABLE [db]) through etcd:
//   <fleet_name>/commands/<id>        one JSON FleetCommandRecord, under a lease of the initiator
//   <fleet_name>/acks/<id>/<node>     each node's JSON FleetAck, under the same lease
// The initiating node reads which nodes are live (their records under <fleet_name>/nodes/), grants
// a lease that outlives the deadline, writes the command, and waits until every one of those nodes
// has acknowledged or the deadline passes; then it revokes the lease, which deletes the command and
// its acks. Every node (the initiator too) watches the commands, runs each as its own console
// command would (so workers, checks and texts are the console's) and writes its ack.
// A command a node sees after its deadline (it was cut off) is not run: late, it could only surprise.
// The heartbeat re-reads the commands, so a node whose watch was reconnecting still runs one in time.
// Must not: run a command twice on one node, or leave keys behind (the lease takes them).

import type { Etcd3, IKeyValue } from 'etcd3'
import type { Logger } from '../../observe/log.ts'
import { parseJsonObject } from '../../util/json-object.ts'
import { parseNodeRecord } from './record.ts'

export const FLEET_OPS = ['pause', 'resume', 'reconnect', 'kill', 'reload', 'enable', 'disable'] as const
export type FleetOp = (typeof FLEET_OPS)[number]

export interface FleetCommandRecord {
  id: string
  op: FleetOp
  database: string | null
  /** The initiating node. */
  from: string
  issued_ms: number
  deadline_ms: number
  /** The lease (decimal id) acks are written under. */
  lease: string
}

export interface FleetAck {
  node: string
  /** null: done; else the console's error text. */
  error: string | null
  /** How long the command ran on that node. */
  run_ms: number
}

/** One node's answer, as FLEET answers it. */
export interface FleetCommandRow {
  node: string
  /** 'ok', or the node's error. */
  outcome: string
  /** From the command's issue until the initiator saw this node's ack. */
  ms: number
}

export interface FleetCommandResult {
  rows: FleetCommandRow[]
  /** Live nodes that had not acknowledged by the deadline. */
  missing: string[]
  timeoutMs: number
}

export function commandsPrefix(fleetName: string): string {
  return `${fleetName}/commands/`
}

export function acksPrefix(fleetName: string, id: string): string {
  return `${fleetName}/acks/${id}/`
}

/** A value read under the commands prefix: the record, or why it is refused. */
export function parseCommand(prefix: string, key: string, value: string): { ok: true; record: FleetCommandRecord } | { ok: false; reason: string } {
  const id = key.startsWith(prefix) ? key.slice(prefix.length) : ''
  if (id === '' || id.includes('/')) return { ok: false, reason: 'not a command key' }
  const j = parseJsonObject(value)
  if (!j.ok) return j
  const o = j.o
  if (o.id !== id) return { ok: false, reason: 'field id does not match the key' }
  if (typeof o.op !== 'string' || !(FLEET_OPS as readonly string[]).includes(o.op)) return { ok: false, reason: 'field op is not a fleet command' }
  if (o.database !== null && typeof o.database !== 'string') return { ok: false, reason: 'field database is not a string or null' }
  for (const f of ['from', 'lease'] as const) if (typeof o[f] !== 'string') return { ok: false, reason: `field ${f} is not a string` }
  for (const f of ['issued_ms', 'deadline_ms'] as const) if (typeof o[f] !== 'number' || !Number.isFinite(o[f])) return { ok: false, reason: `field ${f} is not a number` }
  return { ok: true, record: { id, op: o.op as FleetOp, database: o.database as string | null, from: o.from as string, issued_ms: o.issued_ms as number, deadline_ms: o.deadline_ms as number, lease: o.lease as string } }
}

function parseAck(value: string): FleetAck | null {
  const j = parseJsonObject(value)
  if (!j.ok) return null
  const o = j.o
  if (typeof o.node !== 'string' || (o.error !== null && typeof o.error !== 'string') || typeof o.run_ms !== 'number') return null
  return { node: o.node, error: o.error as string | null, run_ms: o.run_ms }
}

export interface FleetCommandsOptions {
  client: Etcd3
  fleetName: string
  /** This node's name in the fleet. */
  node: string
  /** Where node records live (record.ts's nodesPrefix). */
  nodesPrefix: string
  log: Logger
  /** Runs the command here as the console would; the console's error text, or null. */
  execute(op: FleetOp, database: string | null): Promise<string | null>
}

type Watcher = { cancel(): Promise<void>; removeAllListeners(): unknown }

export class FleetCommands {
  private readonly prefix: string
  private watchers: Watcher[] = []
  /** Commands run (or refused) here, by id, with their deadline, so none runs twice. */
  private readonly seen = new Map<string, number>()
  /** Commands this node started and waits on: the acks seen so far, by id. */
  private readonly pending = new Map<string, { acks: Map<string, { atMs: number; ack: FleetAck }>; wake: () => void }>()
  private readonly logged = new Set<string>()
  private isStopped = false

  constructor(private readonly o: FleetCommandsOptions) {
    this.prefix = commandsPrefix(o.fleetName)
  }

  start(): void {
    const commands = this.o.client.watch().prefix(this.prefix).watcher()
    commands.on('put', (kv: IKeyValue) => this.consider(kv.key.toString(), kv.value.toString()))
    commands.on('error', () => {})
    const acks = this.o.client.watch().prefix(`${this.o.fleetName}/acks/`).watcher()
    acks.on('put', (kv: IKeyValue) => this.onAck(kv.key.toString(), kv.value.toString()))
    acks.on('error', () => {})
    this.watchers = [commands, acks]
  }

  /** Each heartbeat: commands the watch may have missed, and forgetting those long past. */
  async poll(): Promise<void> {
    const all = await this.o.client.getAll().prefix(this.prefix).strings()
    for (const [k, v] of Object.entries(all)) this.consider(k, v)
    const now = Date.now()
    for (const [id, deadline] of this.seen) if (deadline < now - 60_000) this.seen.delete(id)
  }

  private consider(key: string, value: string): void {
    if (this.isStopped) return
    const p = parseCommand(this.prefix, key, value)
    if (!p.ok) {
      if (!this.logged.has(key)) {
        this.logged.add(key)
        this.o.log.warn('fleet.command_refused', null, `ignoring etcd key ${key}: ${p.reason}`)
      }
      return
    }
    const c = p.record
    if (this.seen.has(c.id)) return
    this.seen.set(c.id, c.deadline_ms)
    if (Date.now() > c.deadline_ms) {
      this.o.log.warn('fleet.command_refused', null, `not running FLEET ${c.op.toUpperCase()} from ${c.from}: seen after its deadline`)
      return
    }
    void this.runHere(c)
  }

  private async runHere(c: FleetCommandRecord): Promise<void> {
    const started = Date.now()
    const what = `FLEET ${c.op.toUpperCase()}${c.database === null ? '' : ` ${c.database}`}`
    const error = await this.o.execute(c.op, c.database).catch((err: unknown) => (err as Error).message)
    const ack: FleetAck = { node: this.o.node, error, run_ms: Date.now() - started }
    this.o.log.info('fleet.command_done', null, `${what} from ${c.from}: ${error ?? 'done'} in ${ack.run_ms} ms`)
    try {
      await this.o.client.put(acksPrefix(this.o.fleetName, c.id) + this.o.node).value(JSON.stringify(ack)).lease(c.lease).exec()
    } catch (err) {
      // The initiator gave up (its lease is gone) or etcd is away: nobody waits for this ack any more.
      this.o.log.warn('fleet.command_unacknowledged', null, `${what} from ${c.from}: could not acknowledge (${(err as Error).message})`)
    }
  }

  private onAck(key: string, value: string): void {
    const m = /^(.*)\/acks\/([^/]+)\/([^/]+)$/.exec(key)
    if (m === null) return
    const p = this.pending.get(m[2])
    const ack = parseAck(value)
    if (p === undefined || ack === null || ack.node !== m[3]) return
    if (!p.acks.has(ack.node)) {
      p.acks.set(ack.node, { atMs: Date.now(), ack })
      p.wake()
    }
  }

  /**
   * Starts a command on every live node and waits for their acks until `timeoutMs`. Throws when
   * it cannot even be started (etcd unreachable).
   */
  async issue(op: FleetOp, database: string | null, timeoutMs: number): Promise<FleetCommandResult> {
    const client = this.o.client
    // Asked of etcd now, not of the last heartbeat: one that failed during an etcd election must not refuse a command after it.
    const records = await client.getAll().prefix(this.o.nodesPrefix).strings().catch((err: Error) => {
      throw new Error(`etcd unreachable (${err.message}): a fleet command cannot reach the fleet; run the command on each node`)
    })
    const live = Object.entries(records).flatMap(([k, v]) => {
      const r = parseNodeRecord(this.o.nodesPrefix, k, v)
      return r.ok ? [r.record.name] : []
    })
    if (!live.includes(this.o.node)) live.push(this.o.node)
    live.sort()
    const lease = client.lease(Math.ceil(timeoutMs / 1000) + 5, { autoKeepAlive: false })
    const leaseId = await lease.grant()
    const issued = Date.now()
    const id = `${issued.toString(36)}-${this.o.node}-${Math.random().toString(36).slice(2, 8)}`
    const rec: FleetCommandRecord = { id, op, database, from: this.o.node, issued_ms: issued, deadline_ms: issued + timeoutMs, lease: leaseId }
    let wake = () => {}
    const p = { acks: new Map<string, { atMs: number; ack: FleetAck }>(), wake: () => wake() }
    this.pending.set(id, p)
    try {
      await client.put(commandsPrefix(this.o.fleetName) + id).value(JSON.stringify(rec)).lease(leaseId).exec()
      const isDone = () => live.every((n) => p.acks.has(n))
      while (!isDone() && Date.now() < rec.deadline_ms) {
        // The acks watch wakes this at once; the read every 250 ms covers a watch that is reconnecting.
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(250, Math.max(1, rec.deadline_ms - Date.now())))
          wake = () => {
            clearTimeout(t)
            resolve()
          }
        })
        if (!isDone() && Date.now() < rec.deadline_ms) {
          const got = await client.getAll().prefix(acksPrefix(this.o.fleetName, id)).strings().catch(() => ({}))
          for (const [k, v] of Object.entries(got)) this.onAck(k, v)
        }
      }
      const rows: FleetCommandRow[] = [...p.acks].map(([node, a]) => ({ node, outcome: a.ack.error ?? 'ok', ms: a.atMs - issued }))
        .sort((a, b) => (a.node < b.node ? -1 : 1))
      return { rows, missing: live.filter((n) => !p.acks.has(n)), timeoutMs }
    } finally {
      this.pending.delete(id)
      await lease.revoke().catch(() => {})
      lease.release()
    }
  }

  async stop(): Promise<void> {
    this.isStopped = true
    const ws = this.watchers
    this.watchers = []
    await Promise.race([Promise.all(ws.map((w) => w.cancel().catch(() => {}))), new Promise((r) => setTimeout(r, 500).unref())])
    for (const w of ws) w.removeAllListeners()
  }
}
