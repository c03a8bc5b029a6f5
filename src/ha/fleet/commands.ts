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
//
// FLEET SWITCHOVER db [TO host] is one command record in stages, rewritten by the initiator:
//   hold      every node holds its clients at transaction boundaries for the db's cluster and drains
//             (ha/switchover.ts SwitchoverRun, as its own SWITCHOVER does), then acks under
//             acks/<id>.held/<node>
//   promoted  once every live node held: the initiator, elected by creating
//             <fleet_name>/switchover/<db> only if absent (one fleet switchover of a db at a time),
//             had Patroni promote; primary names the new primary (host:port), which each node
//             retargets to once its own checks agree, then releases and acks under acks/<id>/<node>
//   abort     a node could not hold or did not ack in time, or the promotion failed: every node releases
// The deadline always releases: each node waits for the next stage only until deadline_ms, so a
// dead initiator (or etcd gone) holds nobody longer than that; a vanished record releases at once.
// Must not: run a command twice on one node, or leave keys behind (the lease takes them).

import type { Etcd3, IKeyValue } from 'etcd3'
import type { Logger } from '../../observe/log.ts'
import { parseJsonObject } from '../../util/json-object.ts'
import { parseNodeRecord } from './record.ts'
import type { SwitchoverRun, Switchovers } from '../switchover.ts'

export const FLEET_OPS = ['pause', 'resume', 'reconnect', 'kill', 'reload', 'enable', 'disable'] as const
export type FleetOp = (typeof FLEET_OPS)[number]

export type FleetSwitchoverStage = 'hold' | 'promoted' | 'abort'
const STAGES: readonly string[] = ['hold', 'promoted', 'abort'] satisfies FleetSwitchoverStage[]

/** FLEET SWITCHOVER's part of its command record. */
export interface FleetSwitchoverState {
  /** As given: host, host:port or Patroni member name; null lets Patroni choose. */
  to: string | null
  stage: FleetSwitchoverStage
  /** With stage promoted: the new primary's host:port; null: any primary but the old one. */
  primary: string | null
  /** With stage abort: why. */
  why: string | null
}

export interface FleetCommandRecord {
  id: string
  op: FleetOp | 'switchover'
  database: string | null
  /** The initiating node. */
  from: string
  issued_ms: number
  deadline_ms: number
  /** The lease (decimal id) acks are written under. */
  lease: string
  /** With op switchover only. */
  switchover?: FleetSwitchoverState
}

export interface FleetAck {
  node: string
  /** null: done; else the console's error text. */
  error: string | null
  /** How long the command ran on that node. */
  run_ms: number
  /** FLEET SWITCHOVER: how long this node held its clients, and its phases (name=ms ...). */
  held_ms?: number
  phases?: string
}

/** One node's answer, as FLEET answers it. */
export interface FleetCommandRow {
  node: string
  /** 'ok', or the node's error. */
  outcome: string
  /** From the command's issue until the initiator saw this node's ack. */
  ms: number
  held_ms?: number
  phases?: string
}

export interface FleetCommandResult {
  rows: FleetCommandRow[]
  /** Live nodes that had not acknowledged by the deadline. */
  missing: string[]
  timeoutMs: number
}

/** FLEET SWITCHOVER's answer: the rows of every node's final ack. */
export interface FleetSwitchoverResult extends FleetCommandResult {
  /** Why it was aborted (every node released without a new primary); null when it was not. */
  error: string | null
  /** The new primary (host:port) as the initiator saw it promoted; null if none. */
  primary: string | null
  /** How long Patroni's promotion took, as the initiator saw it; null if it never ran. */
  promoteMs: number | null
}

export function commandsPrefix(fleetName: string): string {
  return `${fleetName}/commands/`
}

export function acksPrefix(fleetName: string, id: string): string {
  return `${fleetName}/acks/${id}/`
}

/** Created only if absent by the initiator of a fleet switchover of `database`: the election of the one node that promotes. */
export function switchoverKey(fleetName: string, database: string): string {
  return `${fleetName}/switchover/${database}`
}

/** The ack id of a fleet switchover's hold stage. */
function heldId(id: string): string {
  return `${id}.held`
}

/** A value read under the commands prefix: the record, or why it is refused. */
export function parseCommand(prefix: string, key: string, value: string): { ok: true; record: FleetCommandRecord } | { ok: false; reason: string } {
  const id = key.startsWith(prefix) ? key.slice(prefix.length) : ''
  if (id === '' || id.includes('/')) return { ok: false, reason: 'not a command key' }
  const j = parseJsonObject(value)
  if (!j.ok) return j
  const o = j.o
  if (o.id !== id) return { ok: false, reason: 'field id does not match the key' }
  if (typeof o.op !== 'string' || !(o.op === 'switchover' || (FLEET_OPS as readonly string[]).includes(o.op))) return { ok: false, reason: 'field op is not a fleet command' }
  if (o.database !== null && typeof o.database !== 'string') return { ok: false, reason: 'field database is not a string or null' }
  for (const f of ['from', 'lease'] as const) if (typeof o[f] !== 'string') return { ok: false, reason: `field ${f} is not a string` }
  for (const f of ['issued_ms', 'deadline_ms'] as const) if (typeof o[f] !== 'number' || !Number.isFinite(o[f])) return { ok: false, reason: `field ${f} is not a number` }
  const record: FleetCommandRecord = { id, op: o.op as FleetOp, database: o.database as string | null, from: o.from as string, issued_ms: o.issued_ms as number, deadline_ms: o.deadline_ms as number, lease: o.lease as string }
  if (o.op === 'switchover') {
    const w = o.switchover as Record<string, unknown> | null | undefined
    if (typeof record.database !== 'string') return { ok: false, reason: 'a switchover names no database' }
    if (typeof w !== 'object' || w === null || typeof w.stage !== 'string' || !STAGES.includes(w.stage)) return { ok: false, reason: 'field switchover has no stage' }
    for (const f of ['to', 'primary', 'why'] as const) if (w[f] !== null && typeof w[f] !== 'string') return { ok: false, reason: `field switchover.${f} is not a string or null` }
    record.switchover = { to: w.to as string | null, stage: w.stage as FleetSwitchoverStage, primary: w.primary as string | null, why: w.why as string | null }
  }
  return { ok: true, record }
}

function parseAck(value: string): FleetAck | null {
  const j = parseJsonObject(value)
  if (!j.ok) return null
  const o = j.o
  if (typeof o.node !== 'string' || (o.error !== null && typeof o.error !== 'string') || typeof o.run_ms !== 'number') return null
  const ack: FleetAck = { node: o.node, error: o.error as string | null, run_ms: o.run_ms }
  if (typeof o.held_ms === 'number') ack.held_ms = o.held_ms
  if (typeof o.phases === 'string') ack.phases = o.phases
  return ack
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
  /** This node's switchovers (FLEET SWITCHOVER takes part through them); none: the node refuses them. */
  switchovers?: Switchovers
}

type Watcher = { cancel(): Promise<void>; removeAllListeners(): unknown }

export class FleetCommands {
  private readonly prefix: string
  private watchers: Watcher[] = []
  /** Commands run (or refused) here, by id, with their deadline, so none runs twice. */
  private readonly seen = new Map<string, number>()
  /** Commands this node started and waits on: the acks seen so far, by id. */
  private readonly pending = new Map<string, { acks: Map<string, { atMs: number; ack: FleetAck }>; wake: () => void; isGone: boolean }>()
  private readonly logged = new Set<string>()
  /** Fleet switchovers running here, by id: told of each new version of their record (null: it vanished). */
  private readonly parts = new Map<string, (rec: FleetCommandRecord | null) => void>()
  private isStopped = false

  constructor(private readonly o: FleetCommandsOptions) {
    this.prefix = commandsPrefix(o.fleetName)
  }

  start(): void {
    const commands = this.o.client.watch().prefix(this.prefix).watcher()
    commands.on('put', (kv: IKeyValue) => this.consider(kv.key.toString(), kv.value.toString()))
    commands.on('delete', (kv: IKeyValue) => this.onDelete(kv.key.toString().slice(this.prefix.length)))
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
    if (this.seen.has(c.id)) {
      this.parts.get(c.id)?.(c)
      return
    }
    this.seen.set(c.id, c.deadline_ms)
    if (Date.now() > c.deadline_ms) {
      this.o.log.warn('fleet.command_refused', null, `not running FLEET ${c.op.toUpperCase()} from ${c.from}: seen after its deadline`)
      return
    }
    void (c.op === 'switchover' ? this.switchoverHere(c) : this.runHere(c))
  }

  private async runHere(c: FleetCommandRecord): Promise<void> {
    const started = Date.now()
    const what = `FLEET ${c.op.toUpperCase()}${c.database === null ? '' : ` ${c.database}`}`
    const error = c.op === 'switchover' ? 'not a console command' : await this.o.execute(c.op, c.database).catch((err: unknown) => (err as Error).message)
    const ack: FleetAck = { node: this.o.node, error, run_ms: Date.now() - started }
    this.o.log.info('fleet.command_done', null, `${what} from ${c.from}: ${error ?? 'done'} in ${ack.run_ms} ms`)
    await this.acknowledge(c, c.id, ack, what)
  }

  private async acknowledge(c: FleetCommandRecord, ackId: string, ack: FleetAck, what: string): Promise<void> {
    try {
      await this.o.client.put(acksPrefix(this.o.fleetName, ackId) + this.o.node).value(JSON.stringify(ack)).lease(c.lease).exec()
    } catch (err) {
      // The initiator gave up (its lease is gone) or etcd is away: nobody waits for this ack any more.
      this.o.log.warn('fleet.command_unacknowledged', null, `${what} from ${c.from}: could not acknowledge (${(err as Error).message})`)
    }
  }

  /**
   * This node's part in a fleet switchover: hold and drain, ack, wait for the next stage until the
   * deadline, retarget to the promoted primary, release (always), ack with the phases.
   */
  private async switchoverHere(c: FleetCommandRecord): Promise<void> {
    const started = Date.now()
    const db = c.database ?? ''
    const what = `FLEET SWITCHOVER ${db}`
    const ackOf = (error: string | null, r?: { totalMs: number; phases: Array<{ name: string; ms: number }> }): FleetAck => ({
      node: this.o.node, error, run_ms: Date.now() - started,
      ...(r === undefined ? {} : { held_ms: r.totalMs, phases: r.phases.map((p) => `${p.name}=${p.ms}`).join(' ') }),
    })
    let run: SwitchoverRun
    try {
      if (this.o.switchovers === undefined) throw new Error('this node does not switch over')
      run = this.o.switchovers.begin(db, c.switchover?.to ?? null, c.deadline_ms - started, started)
    } catch (err) {
      const error = (err as Error).message
      this.o.log.warn('fleet.switchover_refused', null, `${what} from ${c.from}: ${error}`)
      await this.acknowledge(c, heldId(c.id), ackOf(error), what)
      await this.acknowledge(c, c.id, ackOf(error), what)
      return
    }
    const report = await this.o.switchovers.track(run, (run) => this.switchoverSteps(c, run, ackOf, what))
    this.o.log.info('fleet.command_done', null, `${what} from ${c.from}: ${report.ok ? 'done' : report.error} in ${Date.now() - started} ms`)
    await this.acknowledge(c, c.id, ackOf(report.ok ? null : report.error, report), what)
  }

  private async switchoverSteps(c: FleetCommandRecord, run: SwitchoverRun, ackOf: (e: string | null) => FleetAck, what: string) {
    let latest: FleetCommandRecord | null = c
    let wake = () => {}
    this.parts.set(c.id, (rec) => {
      latest = rec
      wake()
    })
    try {
      await run.check(false)
      // Transactions in flight finish until half the time is spent, as a node's own switchover lets them.
      const holdError = await run.hold(c.issued_ms + (c.deadline_ms - c.issued_ms) / 2).then(() => null, (err: unknown) => (err as Error).message)
      await this.acknowledge(c, heldId(c.id), ackOf(holdError), what)
      if (holdError !== null) return await run.fail(holdError)
      const key = this.prefix + c.id
      while (latest !== null && latest.switchover?.stage === 'hold' && Date.now() < c.deadline_ms) {
        // The watch wakes this at once; the read every 200 ms covers a watch that is reconnecting.
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(200, Math.max(1, c.deadline_ms - Date.now())))
          wake = () => {
            clearTimeout(t)
            resolve()
          }
        })
        if (latest?.switchover?.stage === 'hold' && Date.now() < c.deadline_ms) {
          const v = await this.o.client.get(key).string().catch(() => undefined)
          if (v === null) latest = null
          else if (v !== undefined) {
            const p = parseCommand(this.prefix, key, v)
            if (p.ok) latest = p.record
          }
        }
      }
      const w: FleetSwitchoverState | undefined = (latest as FleetCommandRecord | null)?.switchover
      const why = w === undefined ? `the command vanished (${c.from} gave up, or its lease expired): released`
        : w.stage === 'abort' ? `aborted by ${c.from}: ${w.why ?? 'no reason given'}`
          : w.stage === 'hold' ? `no promotion from ${c.from} by the deadline (${c.deadline_ms - c.issued_ms} ms): released` : null
      run.waited('promote', why === null ? `by ${c.from}` : 'none')
      if (why !== null) return await run.fail(why)
      await run.retarget(w!.primary)
    } catch (err) {
      run.report.error = (err as Error).message
    } finally {
      this.parts.delete(c.id)
    }
    return run.finish()
  }

  /** A command's record left etcd (its lease was revoked or expired): nobody waits on it any more. */
  private onDelete(id: string): void {
    this.parts.get(id)?.(null)
    for (const ackId of [id, heldId(id)]) {
      const p = this.pending.get(ackId)
      if (p !== undefined) {
        p.isGone = true
        p.wake()
      }
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

  /** The nodes whose records are under nodes/ now, this one included, by name. */
  private async liveNodes(): Promise<string[]> {
    // Asked of etcd now, not of the last heartbeat: one that failed during an etcd election must not refuse a command after it.
    const records = await this.o.client.getAll().prefix(this.o.nodesPrefix).strings().catch((err: Error) => {
      throw new Error(`etcd unreachable (${err.message}): a fleet command cannot reach the fleet; run the command on each node`)
    })
    const live = Object.entries(records).flatMap(([k, v]) => {
      const r = parseNodeRecord(this.o.nodesPrefix, k, v)
      return r.ok ? [r.record.name] : []
    })
    if (!live.includes(this.o.node)) live.push(this.o.node)
    return live.sort()
  }

  /** Waits until every node of `live` acked `ackId` or `untilMs` passes; one row per ack, by node. */
  private async collect(ackId: string, live: readonly string[], issued: number, untilMs: number): Promise<{ rows: FleetCommandRow[]; missing: string[] }> {
    const p = this.pending.get(ackId)!
    const isDone = () => p.isGone || live.every((n) => p.acks.has(n))
    while (!isDone() && Date.now() < untilMs) {
      // The acks watch wakes this at once; the read every 250 ms covers a watch that is reconnecting.
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(250, Math.max(1, untilMs - Date.now())))
        p.wake = () => {
          clearTimeout(t)
          resolve()
        }
      })
      if (!isDone() && Date.now() < untilMs) {
        const got = await this.o.client.getAll().prefix(acksPrefix(this.o.fleetName, ackId)).strings().catch(() => ({}))
        for (const [k, v] of Object.entries(got)) this.onAck(k, v)
      }
    }
    const rows: FleetCommandRow[] = [...p.acks].map(([node, a]) => ({
      node, outcome: a.ack.error ?? 'ok', ms: a.atMs - issued,
      ...(a.ack.held_ms === undefined ? {} : { held_ms: a.ack.held_ms }), ...(a.ack.phases === undefined ? {} : { phases: a.ack.phases }),
    })).sort((a, b) => (a.node < b.node ? -1 : 1))
    return { rows, missing: live.filter((n) => !p.acks.has(n)) }
  }

  private expect(ackId: string): void {
    this.pending.set(ackId, { acks: new Map(), wake: () => {}, isGone: false })
  }

  /**
   * Starts a command on every live node and waits for their acks until `timeoutMs`. Throws when
   * it cannot even be started (etcd unreachable).
   */
  async issue(op: FleetOp, database: string | null, timeoutMs: number): Promise<FleetCommandResult> {
    const client = this.o.client
    const live = await this.liveNodes()
    const lease = client.lease(Math.ceil(timeoutMs / 1000) + 5, { autoKeepAlive: false })
    const leaseId = await lease.grant()
    const issued = Date.now()
    const id = this.newId(issued)
    const rec: FleetCommandRecord = { id, op, database, from: this.o.node, issued_ms: issued, deadline_ms: issued + timeoutMs, lease: leaseId }
    this.expect(id)
    try {
      await client.put(commandsPrefix(this.o.fleetName) + id).value(JSON.stringify(rec)).lease(leaseId).exec()
      return { ...(await this.collect(id, live, issued, rec.deadline_ms)), timeoutMs }
    } finally {
      this.pending.delete(id)
      await lease.revoke().catch(() => {})
      lease.release()
    }
  }

  private newId(issued: number): string {
    return `${issued.toString(36)}-${this.o.node}-${Math.random().toString(36).slice(2, 8)}`
  }

  /**
   * FLEET SWITCHOVER: every live node holds, this node (elected through the switchover key)
   * promotes through Patroni, every node retargets and releases. Throws when it cannot start (etcd
   * unreachable, a bad database or target, another fleet switchover of the database running).
   */
  async issueSwitchover(database: string, to: string | null, timeoutMs: number): Promise<FleetSwitchoverResult> {
    const sws = this.o.switchovers
    if (sws === undefined) throw new Error('this node does not switch over')
    const client = this.o.client
    const live = await this.liveNodes()
    // The target and Patroni's member names are looked up here, before anyone holds.
    const plan = sws.plan(database, to, timeoutMs)
    const why = await plan.check(true)
    if (why !== null) throw new Error(why)
    const lease = client.lease(Math.ceil(timeoutMs / 1000) + 5, { autoKeepAlive: false })
    const leaseId = await lease.grant()
    const issued = Date.now()
    const id = this.newId(issued)
    const state: FleetSwitchoverState = { to, stage: 'hold', primary: null, why: null }
    const rec: FleetCommandRecord = { id, op: 'switchover', database, from: this.o.node, issued_ms: issued, deadline_ms: issued + timeoutMs, lease: leaseId, switchover: state }
    const key = commandsPrefix(this.o.fleetName) + id
    const write = (w: FleetSwitchoverState) => client.put(key).value(JSON.stringify({ ...rec, switchover: w })).lease(leaseId).exec()
    const election = switchoverKey(this.o.fleetName, database)
    this.expect(heldId(id))
    this.expect(id)
    try {
      const won = await client.if(election, 'Create', '==', 0)
        .then(client.put(election).value(`${this.o.node} ${id}`).lease(leaseId), client.put(key).value(JSON.stringify(rec)).lease(leaseId)).commit()
      if (!won.succeeded) {
        const holder = await client.get(election).string().catch(() => null)
        throw new Error(`a fleet switchover of ${database} is running (${holder === null ? 'its initiator is gone' : `started by ${holder.split(' ')[0]}`})`)
      }
      // Every node must hold before anyone promotes; they drain until half the time, so a little after that is the limit.
      const held = await this.collect(heldId(id), live, issued, issued + timeoutMs * 0.6)
      if (this.pending.get(id)!.isGone) throw new Error(`FLEET SWITCHOVER ${database}: the command left etcd while the nodes held (its lease was revoked or expired); every node released`)
      const refused = held.rows.filter((r) => r.outcome !== 'ok')
      let abort: string | null = held.missing.length > 0 ? `no hold from ${held.missing.join(', ')} within ${Math.round(timeoutMs * 0.6)} ms`
        : refused.length > 0 ? `could not hold: ${refused.map((r) => `${r.node} (${r.outcome})`).join(', ')}` : null
      let primary: string | null = null
      let promoteMs: number | null = null
      if (abort === null) {
        plan.waited('hold', `${live.length} node(s) held`)
        const promoteStart = Date.now()
        try {
          primary = await plan.promote()
          promoteMs = Date.now() - promoteStart
          await write({ ...state, stage: 'promoted', primary })
        } catch (err) {
          abort = (err as Error).message
        }
      }
      if (abort !== null) {
        this.o.log.error('fleet.switchover_aborted', null, `FLEET SWITCHOVER ${database}: ${abort}; every node releases`)
        await write({ ...state, stage: 'abort', why: abort }).catch(() => {})
      }
      // Each node releases by the deadline at the latest, at once on an abort; its ack follows within moments.
      const done = await this.collect(id, live, issued, abort === null ? rec.deadline_ms + 2_000 : Math.min(rec.deadline_ms, Date.now()) + 2_000)
      return { ...done, timeoutMs, error: abort, primary, promoteMs }
    } finally {
      this.pending.delete(id)
      this.pending.delete(heldId(id))
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
