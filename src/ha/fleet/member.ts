// Fleet membership through etcd: this node holds a lease and, under it, a record of itself
// (record.ts); every heartbeat (a third of fleet_lease_ttl) renews the lease, rewrites the record
// with the current load and reads every node's record, which is what SHOW FLEET, /api/fleet.json
// and the tidepool_fleet_* metrics show. A node that stops without leaving disappears when its
// lease expires; one that shuts down revokes its lease and disappears at once.
// When etcd cannot be reached the node goes on serving: it logs the loss once, reports itself as
// 'etcd unreachable' and the others as 'unknown' (last seen), and keeps trying each heartbeat; when
// etcd answers again it renews its lease, or grants a new one if the old one expired, and says so.
// Peer ids (cancel anywhere in the fleet): a node without peer_id of its own takes the lowest id
// that no live node holds and its [peers] section does not name, by creating
// <fleet_name>/peer_ids/<id> under its lease in a transaction that fails if the key exists; a node
// with peer_id set claims that id the same way (a clash is logged; the setting still wins). The id
// goes into the node's record, and every node with an id and a host:port address is a peer of
// the others (peers()). A node whose lease expired claims again, its old id first.
// Loaded by the runtime only when fleet_etcd is set (a dynamic import), so a node without a fleet
// pays nothing for it. One timer, never on the data path.
// Must not: block or fail the runtime's start or the data path on etcd; one heartbeat at a time.

import fs from 'node:fs'
import os from 'node:os'
import { Etcd3, EtcdLeaseInvalidError, isRecoverableError, type IOptions, type Lease } from 'etcd3'
import { ConsecutiveBreaker, ConstantBackoff, circuitBreaker, handleWhen, noop, retry } from 'cockatiel'
import type { Settings } from '../../config/settings.ts'
import type { Logger } from '../../observe/log.ts'
import { MAX_FLEET_PEER_ID, nodeKey, nodesPrefix, parseAddress, parseNodeRecord, peerIdsPrefix, type NodeRecord } from './record.ts'

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
  /** Its budget shares summed over pools as last read (fleet_budget); null without a budget. */
  budget_share: number | null
}

/** What /metrics reads. */
export interface FleetStatus {
  isEtcdUp: boolean
  /** Nodes seen at the last heartbeat that reached etcd, this one included. */
  nodes: number
  lastContactMs: number
  badRecords: number
  /** fleet_budget: this node's shares by pool and whether it is fenced; null without a budget. */
  budget: FleetBudgetStatus | null
}

export interface FleetBudgetStatus {
  isFenced: boolean
  pools: Array<{ scope: 'pool' | 'db' | 'user'; database: string; user: string; share: number; floor: number; demand: number; limit: number }>
}

export interface FleetMemberOptions {
  settings: Readonly<Settings>
  log: Logger
  version: string
  /** The TCP port the listener bound, for the default advertised address. */
  listenPort: number
  load(): NodeLoad
  /** Peer ids this node's [peers] section names: the fleet hands them to nobody here. */
  staticPeerIds(): ReadonlySet<number>
  /** After each heartbeat that reached etcd: the peer table may have changed. */
  onPeersChanged?(): void
  /** fleet_budget: each node's shares summed over pools, as last read; null without a budget. */
  budgetShares?(): ReadonlyMap<string, number> | null
  /** fleet_budget: this node's shares for /metrics; null without a budget. */
  budgetStatus?(): FleetBudgetStatus | null
}

/** A fleet node another can forward cancel requests to. */
export interface FleetPeer {
  peer_id: number
  host: string
  port: number
}

/** Endpoints as etcd3 wants them: with a scheme; https when TLS files are given. */
export function etcdHosts(s: Readonly<Settings>): string[] {
  const isTls = s.fleet_etcd_ca_file !== '' || s.fleet_etcd_cert_file !== ''
  return s.fleet_etcd.map((e) => (/^https?:\/\//.test(e) ? e : `${isTls ? 'https' : 'http'}://${e}`))
}

/**
 * A client of the fleet's etcd as the settings describe it (endpoints, TLS files, user); every
 * unary call has a `callMs` deadline, and is tried again only on the other members of a cluster
 * (callers retry on their beat).
 */
export function connectEtcd(s: Readonly<Settings>, callMs: number): Etcd3 {
  const hosts = etcdHosts(s)
  // The heartbeat is the retry: a call that fails waits for the next beat rather than piling up.
  // Watches (shared config, commands) reconnect on their own every second; heartbeats cover the gap.
  // With several members, the client picks one at random per call and does not move on by itself:
  // a call that fails on one for a reason of the connection (refused, deadline, unavailable: etcd3's
  // recoverable errors) is tried at once on the others, and that member is skipped for a second
  // (then one call probes it), so a dead member costs no failed beat (fleet-etcd-trouble.test.ts).
  const isCluster = hosts.length > 1
  const opts: IOptions = {
    hosts,
    dialTimeout: callMs,
    faultHandling: {
      host: () => (isCluster ? circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(1) }) : noop),
      global: isCluster ? retry(handleWhen(isRecoverableError), { maxAttempts: hosts.length - 1 }) : noop,
      watchBackoff: new ConstantBackoff(1_000).next(),
    },
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
  return new Etcd3(opts)
}

export class FleetMember {
  readonly name: string
  readonly prefix: string
  private readonly key: string
  /** Shared with the fleet's other parts (shared config, commands): one connection to etcd. */
  readonly client: Etcd3
  private readonly ttlS: number
  private readonly beatMs: number
  private readonly address: string
  private lease: Lease | null = null
  private leaseIdNow = ''
  /**
   * When the last grant or keep-alive that etcd answered was sent (ms, this node's clock; 0: none):
   * etcd cannot expire the lease before this plus the TTL, which is what the budget's fencing counts from.
   */
  private leaseFreshMs = 0
  private renewing: Promise<boolean> | null = null
  private startedMs = 0
  private timer: NodeJS.Timeout | null = null
  private beating: Promise<void> | null = null
  /** beatSoon() during a beat: beat again as soon as it ends. */
  private isBeatWanted = false
  /** Run after each heartbeat that reached etcd (the shared config's catch-up read). */
  private readonly afterBeat: Array<() => Promise<void>> = []
  private isStopped = false
  /** null until the first heartbeat ends. */
  private isUp: boolean | null = null
  private lastContactMs = 0
  private others: NodeRecord[] = []
  private self: NodeRecord | null = null
  /** Keys refused at the last read, with the reason logged the first time each was seen. */
  private badKeys = new Map<string, string>()
  /** The peer id this node last held (0: none yet); after a lost lease, the one it claims first. */
  private claimedPeerId = 0
  /** claimedPeerId is held under the current lease. */
  private isPeerIdHeld = false
  /** A clash on the configured peer_id was logged (once). */
  private isClashLogged = false

  constructor(private readonly o: FleetMemberOptions) {
    const s = o.settings
    this.name = s.node_name !== '' ? s.node_name : os.hostname()
    this.prefix = nodesPrefix(s.fleet_name)
    this.key = nodeKey(s.fleet_name, this.name)
    this.ttlS = s.fleet_lease_ttl
    this.beatMs = Math.max(200, Math.floor((this.ttlS * 1000) / 3))
    this.address = s.node_advertise !== '' ? s.node_advertise : `${os.hostname()}:${o.listenPort}`
    this.client = connectEtcd(s, Math.max(500, Math.min(this.beatMs, 5_000)))
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
        this.schedule(this.isBeatWanted ? 0 : this.beatMs)
        this.isBeatWanted = false
      })
    }, ms)
    this.timer.unref()
  }

  /** A heartbeat now (after the next one ends, if one is running): the fleet sees a change at once. */
  beatSoon(): void {
    if (this.isStopped) return
    if (this.beating !== null) {
      this.isBeatWanted = true
      return
    }
    if (this.timer !== null) clearTimeout(this.timer)
    this.schedule(0)
  }

  /** `fn` runs after every heartbeat that reached etcd; its failures are its own (the beat ignores them). */
  onBeat(fn: () => Promise<void>): void {
    this.afterBeat.push(fn)
  }

  /** The lease this node's keys live under ('' before the first grant). */
  get leaseId(): string {
    return this.lease === null ? '' : this.leaseIdNow
  }

  /** When the last keep-alive etcd answered was sent (0: none since the lease was granted). */
  get leaseFreshSinceMs(): number {
    return this.lease === null ? 0 : this.leaseFreshMs
  }

  /**
   * One keep-alive now, outside the heartbeat (the budget renews early, so that a slow heartbeat
   * does not fence it); true if etcd answered. One at a time; a failure is the heartbeat's to handle.
   */
  renew(): Promise<boolean> {
    const lease = this.lease
    if (lease === null || this.isStopped) return Promise.resolve(false)
    if (this.renewing !== null) return this.renewing
    const sentMs = Date.now()
    this.renewing = lease.keepaliveOnce({ deadline: sentMs + Math.max(500, this.beatMs) })
      .then(() => {
        if (this.lease === lease) this.leaseFreshMs = Math.max(this.leaseFreshMs, sentMs)
        return true
      }, () => false)
      .finally(() => { this.renewing = null })
    return this.renewing
  }

  get isEtcdUp(): boolean {
    return this.isUp === true
  }

  private record(nowMs: number): NodeRecord {
    const l = this.o.load()
    return {
      name: this.name, region: this.o.settings.node_region, address: this.address, version: this.o.version,
      config_version: l.configVersion, clients: l.clients, servers: l.servers, tps: Math.round(l.tps * 10) / 10,
      heartbeat_ms: nowMs, started_ms: this.startedMs, peer_id: this.peerId,
    }
  }

  /** The id cancel keys of this node carry: peer_id when set, else the one claimed in etcd; 0: none yet. */
  get peerId(): number {
    const own = this.o.settings.peer_id
    // After a lost lease the old id stays in use until the next claim settles which one this node has.
    return own > 0 ? own : this.claimedPeerId
  }

  /** The other nodes with a peer id and a host:port address, as last read from etcd. */
  peers(): FleetPeer[] {
    const out: FleetPeer[] = []
    for (const r of this.others) {
      const a = r.peer_id > 0 ? parseAddress(r.address) : null
      if (a !== null) out.push({ peer_id: r.peer_id, host: a.host, port: a.port })
    }
    return out
  }

  /**
   * Holds a peer id under the current lease: the configured peer_id, or the one held before, or
   * the lowest free one. An id is free when no key peer_ids/<id> exists (a node's keys go with its
   * lease) and this node's [peers] does not name it. Never throws past the heartbeat's catch.
   */
  private async claimPeerId(leaseId: string): Promise<void> {
    const prefix = peerIdsPrefix(this.o.settings.fleet_name)
    const res = await this.client.getAll().prefix(prefix).exec()
    const taken = new Map<number, string>()
    for (const kv of res.kvs) {
      const id = Number(kv.key.toString().slice(prefix.length))
      if (kv.value.toString() === this.name && kv.lease === leaseId) {
        this.claimedPeerId = id
        this.isPeerIdHeld = true
        return
      }
      taken.set(id, kv.value.toString())
    }
    const own = this.o.settings.peer_id
    const reserved = this.o.staticPeerIds()
    const candidates: number[] = []
    if (own > 0) candidates.push(own)
    else {
      if (this.claimedPeerId > 0 && !taken.has(this.claimedPeerId) && !reserved.has(this.claimedPeerId)) candidates.push(this.claimedPeerId)
      for (let id = 1; id <= MAX_FLEET_PEER_ID && candidates.length < 4; id++) if (!taken.has(id) && !reserved.has(id) && !candidates.includes(id)) candidates.push(id)
    }
    // Two nodes may pick the same free id at once; the transaction lets one win, the other tries the next.
    for (const id of candidates) {
      const key = prefix + String(id)
      const r = await this.client.if(key, 'Create', '==', 0).then(this.client.put(key).value(this.name).lease(leaseId)).commit()
      if (r.succeeded) {
        this.claimedPeerId = id
        this.isPeerIdHeld = true
        this.o.log.info('fleet.peer_id', null, `holding peer id ${id} in fleet ${this.o.settings.fleet_name}`)
        return
      }
    }
    if (own > 0 && !this.isClashLogged) {
      this.isClashLogged = true
      // The holder may be this node's previous process, whose lease has not expired yet: then the claim succeeds later.
      this.o.log.error('fleet.peer_id_taken', null, `peer_id ${own} is held by ${taken.get(own) ?? 'another node'} in fleet ${this.o.settings.fleet_name}: cancel requests for one of the two go astray; give each node its own peer_id, or none and let the fleet assign one`)
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
        this.leaseIdNow = ''
        this.leaseFreshMs = 0
        this.isPeerIdHeld = false
        const sentMs = Date.now()
        this.leaseIdNow = await lease.grant()
        this.leaseFreshMs = sentMs
        this.startedMs = Date.now()
        isNewLease = true
      } else {
        // The client does not retry a keep-alive stream: again, on a member picked anew, while one fails for a reason of the connection.
        for (let tries = this.o.settings.fleet_etcd.length; ; tries--) {
          const sentMs = Date.now()
          const err = await this.lease.keepaliveOnce({ deadline: Date.now() + Math.max(500, this.beatMs) }).then(() => null, (e: Error) => e)
          if (err === null) {
            this.leaseFreshMs = Math.max(this.leaseFreshMs, sentMs)
            break
          }
          if (tries <= 1 || !isRecoverableError(err)) throw err
        }
      }
      if (!this.isPeerIdHeld) await this.claimPeerId(this.leaseIdNow)
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
      this.o.onPeersChanged?.()
      for (const fn of this.afterBeat) await fn().catch(() => {})
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
    // The config version is this node's own as of now: a version applied since the last beat shows at once.
    const shares = this.o.budgetShares?.() ?? null
    const share = (name: string) => (shares === null ? null : shares.get(name) ?? 0)
    const self: FleetNodeRow = { ...(isUp && this.self !== null ? this.self : this.record(this.self?.heartbeat_ms ?? 0)), config_version: this.o.load().configVersion, state, isSelf: true, budget_share: share(this.name) }
    return [self, ...this.others.map((r): FleetNodeRow => ({ ...r, state: isUp ? 'up' : 'unknown', isSelf: false, budget_share: share(r.name) }))]
  }

  status(): FleetStatus {
    return { isEtcdUp: this.isUp === true, nodes: this.others.length + 1, lastContactMs: this.lastContactMs, badRecords: this.badKeys.size, budget: this.o.budgetStatus?.() ?? null }
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
