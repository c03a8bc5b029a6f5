// Fleet membership through etcd: this node holds a lease and, under it, a record of itself
// (record.ts); every heartbeat (a third of fleet_lease_ttl) renews the lease, rewrites the record
// with the current load and reads every node's record, which is what SHOW FLEET, /api/fleet.json
// and the tidepool_fleet_* metrics show. A node that stops without leaving disappears when its
// lease expires; one that shuts down revokes its lease and disappears at once.
// When etcd cannot be reached the node goes on serving: it logs the loss once, reports itself as
// 'etcd unreachable' and the others as 'unknown' (last seen), and keeps trying each heartbeat; when
// etcd answers again it renews its lease, or grants a new one if the old one expired, and says so.
// Loaded by the runtime only when fleet_etcd is set (a dynamic import), so a node without a fleet
// pays nothing for it. One timer, never on the data path.
// Must not: block or fail the runtime's start or the data path on etcd; one heartbeat at a time.

import fs from 'node:fs'
import os from 'node:os'
import { Etcd3, EtcdLeaseInvalidError, type IOptions, type Lease } from 'etcd3'
import { noop } from 'cockatiel'
import type { Settings } from '../../config/settings.ts'
import type { Logger } from '../../observe/log.ts'
import { nodeKey, nodesPrefix, parseNodeRecord, type NodeRecord } from './record.ts'

/** What the node reports of itself at each heartbeat. */
export interface NodeLoad {
  clients: number
  servers: number
  tps: number
  configVersion: string
}

/** One row of SHOW FLEET. */
export interface FleetNodeRow extends NodeRecord {
  /** up: read from etcd at the last heartbeat; joining: this node before its first heartbeat ended;
   *  etcd unreachable: this node, cut off; unknown: another node as last seen before etcd became unreachable. */
  state: 'up' | 'joining' | 'etcd unreachable' | 'unknown'
  isSelf: boolean
}

/** What /metrics reads. */
export interface FleetStatus {
  isEtcdUp: boolean
  /** Nodes seen at the last heartbeat that reached etcd, this one included. */
  nodes: number
  lastContactMs: number
  badRecords: number
}

export interface FleetMemberOptions {
  settings: Readonly<Settings>
  log: Logger
  version: string
  /** The TCP port the listener bound, for the default advertised address. */
  listenPort: number
  load(): NodeLoad
}

/** Endpoints as etcd3 wants them: with a scheme; https when TLS files are given. */
export function etcdHosts(s: Readonly<Settings>): string[] {
  const isTls = s.fleet_etcd_ca_file !== '' || s.fleet_etcd_cert_file !== ''
  return s.fleet_etcd.map((e) => (/^https?:\/\//.test(e) ? e : `${isTls ? 'https' : 'http'}://${e}`))
}

export class FleetMember {
  readonly name: string
  readonly prefix: string
  private readonly key: string
  private readonly client: Etcd3
  private readonly ttlS: number
  private readonly beatMs: number
  private readonly address: string
  private lease: Lease | null = null
  private startedMs = 0
  private timer: NodeJS.Timeout | null = null
  private beating: Promise<void> | null = null
  private isStopped = false
  /** null until the first heartbeat ends. */
  private isUp: boolean | null = null
  private lastContactMs = 0
  private others: NodeRecord[] = []
  private self: NodeRecord | null = null
  /** Keys refused at the last read, with the reason logged the first time each was seen. */
  private badKeys = new Map<string, string>()

  constructor(private readonly o: FleetMemberOptions) {
    const s = o.settings
    this.name = s.node_name !== '' ? s.node_name : os.hostname()
    this.prefix = nodesPrefix(s.fleet_name)
    this.key = nodeKey(s.fleet_name, this.name)
    this.ttlS = s.fleet_lease_ttl
    this.beatMs = Math.max(200, Math.floor((this.ttlS * 1000) / 3))
    this.address = s.node_advertise !== '' ? s.node_advertise : `${os.hostname()}:${o.listenPort}`
    const callMs = Math.max(500, Math.min(this.beatMs, 5_000))
    const opts: IOptions = {
      hosts: etcdHosts(s),
      dialTimeout: callMs,
      // The heartbeat is the retry: a call that fails waits for the next beat rather than piling up.
      faultHandling: { host: () => noop, global: noop },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callMs }),
    }
    if (s.fleet_etcd_user !== '') opts.auth = { username: s.fleet_etcd_user, password: s.fleet_etcd_password }
    if (s.fleet_etcd_ca_file !== '' || s.fleet_etcd_cert_file !== '') {
      opts.credentials = {
        // Without a CA file grpc trusts the system's CAs (its createSsl takes null there; etcd3's type says Buffer).
        rootCertificate: s.fleet_etcd_ca_file !== '' ? fs.readFileSync(s.fleet_etcd_ca_file) : (null as unknown as Buffer),
        ...(s.fleet_etcd_cert_file !== '' ? { certChain: fs.readFileSync(s.fleet_etcd_cert_file) } : {}),
        ...(s.fleet_etcd_key_file !== '' ? { privateKey: fs.readFileSync(s.fleet_etcd_key_file) } : {}),
      }
    }
    this.client = new Etcd3(opts)
  }

  /** Starts the heartbeats; the first runs now, and the start does not wait for etcd. */
  start(): void {
    this.o.log.info('fleet.joining', null, `joining fleet ${this.o.settings.fleet_name} as ${this.name} through etcd ${this.o.settings.fleet_etcd.join(',')} (lease ttl ${this.ttlS}s)`)
    this.schedule(0)
  }

  private schedule(ms: number): void {
    if (this.isStopped) return
    this.timer = setTimeout(() => {
      this.timer = null
      this.beating = this.beat().finally(() => {
        this.beating = null
        this.schedule(this.beatMs)
      })
    }, ms)
    this.timer.unref()
  }

  private record(nowMs: number): NodeRecord {
    const l = this.o.load()
    return {
      name: this.name, region: this.o.settings.node_region, address: this.address, version: this.o.version,
      config_version: l.configVersion, clients: l.clients, servers: l.servers, tps: Math.round(l.tps * 10) / 10,
      heartbeat_ms: nowMs, started_ms: this.startedMs,
    }
  }

  /** One heartbeat: lease (renewed, or granted anew), own record, everyone's records. Never throws. */
  private async beat(): Promise<void> {
    try {
      let isNewLease = false
      if (this.lease !== null && this.lease.revoked()) this.lease = null
      if (this.lease === null) {
        const lease = this.client.lease(this.ttlS, { autoKeepAlive: false })
        this.lease = lease
        await lease.grant()
        this.startedMs = Date.now()
        isNewLease = true
      } else {
        await this.lease.keepaliveOnce({ deadline: Date.now() + Math.max(500, this.beatMs) })
      }
      const rec = this.record(Date.now())
      await this.lease.put(this.key).value(JSON.stringify(rec)).exec()
      const all = await this.client.getAll().prefix(this.prefix).strings()
      this.readRecords(all)
      this.self = rec
      this.lastContactMs = Date.now()
      if (this.isUp !== true) {
        this.o.log.info(this.isUp === null ? 'fleet.joined' : 'fleet.etcd_restored', null,
          `${this.isUp === null ? 'joined' : 'etcd reachable again; rejoined'} fleet ${this.o.settings.fleet_name} as ${this.name}${isNewLease ? ' under a new lease' : ''}; ${this.others.length + 1} node(s)`)
      } else if (isNewLease) {
        this.o.log.warn('fleet.lease_renewed', null, `fleet lease of ${this.name} had expired; registered again under a new lease`)
      }
      this.isUp = true
    } catch (err) {
      // A lease etcd no longer knows (expired while we were cut off) is dropped; the next beat grants one.
      if (err instanceof EtcdLeaseInvalidError || this.lease?.revoked() === true) {
        this.lease?.release()
        this.lease = null
      }
      if (this.isUp !== false) {
        this.o.log.warn('fleet.etcd_lost', null, `etcd unreachable (${(err as Error).message}); serving on, fleet view is stale until it answers`)
      }
      this.isUp = false
    }
  }

  private readRecords(all: Record<string, string>): void {
    const others: NodeRecord[] = []
    const bad = new Map<string, string>()
    for (const [key, value] of Object.entries(all)) {
      if (key === this.key) continue
      const r = parseNodeRecord(this.prefix, key, value)
      if (r.ok) {
        others.push(r.record)
        continue
      }
      bad.set(key, r.reason)
      if (this.badKeys.get(key) !== r.reason) this.o.log.warn('fleet.record_refused', null, `ignoring etcd key ${key}: ${r.reason}`)
    }
    this.badKeys = bad
    this.others = others.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  /** SHOW FLEET: this node first, then the others by name. */
  rows(): FleetNodeRow[] {
    const isUp = this.isUp === true
    const state = isUp ? 'up' : this.isUp === null ? 'joining' : 'etcd unreachable'
    const self: FleetNodeRow = { ...(isUp && this.self !== null ? this.self : this.record(this.self?.heartbeat_ms ?? 0)), state, isSelf: true }
    return [self, ...this.others.map((r): FleetNodeRow => ({ ...r, state: isUp ? 'up' : 'unknown', isSelf: false }))]
  }

  status(): FleetStatus {
    return { isEtcdUp: this.isUp === true, nodes: this.others.length + 1, lastContactMs: this.lastContactMs, badRecords: this.badKeys.size }
  }

  /** Leaves the fleet: stops the heartbeats and revokes the lease (bounded wait), then closes the client. */
  async stop(): Promise<void> {
    this.isStopped = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    if (this.beating !== null) await this.beating
    const lease = this.lease
    this.lease = null
    if (lease !== null && this.isUp === true) {
      await lease.revoke({ deadline: Date.now() + 1_000 }).catch(() => {})
      this.o.log.info('fleet.left', null, `left fleet ${this.o.settings.fleet_name}`)
    }
    lease?.release()
    this.client.close()
  }
}
