// What a fleet node writes about itself in etcd, and how a record read back is checked. Keys:
//   <fleet_name>/nodes/<node_name>   one JSON NodeRecord, attached to the node's lease
//   <fleet_name>/peer_ids/<id>       the node name holding peer id <id>, attached to its lease;
//                                    created only if absent (an etcd transaction), so an id has one holder
// Anything else found under <fleet_name>/nodes/ (a key with a slash in its name, a value that is
// not a record, a record whose name is not its key's) is refused with a reason, never shown.
// Must not: talk to etcd or keep state; this module is data plus pure checks, tested with strings.

import { parseJsonObject } from '../../util/json-object.ts'

/** One node as the fleet sees it; written at every heartbeat. */
export interface NodeRecord {
  name: string
  region: string
  /** host:port where clients and peers reach the node. */
  address: string
  version: string
  /** Digest of the applied [databases], [users] and pool settings (see configVersion in member.ts). */
  config_version: string
  clients: number
  servers: number
  /** Transactions per second over the last stats_period. */
  tps: number
  /** The node's clock when it wrote the record (ms since the epoch). */
  heartbeat_ms: number
  /** The node's clock when it joined (this lease). */
  started_ms: number
  /** The peer id cancel keys of this node carry (peer_ids/<id>); 0 while it has none. */
  peer_id: number
}

export function nodesPrefix(fleetName: string): string {
  return `${fleetName}/nodes/`
}

export function nodeKey(fleetName: string, nodeName: string): string {
  return nodesPrefix(fleetName) + nodeName
}

export function peerIdsPrefix(fleetName: string): string {
  return `${fleetName}/peer_ids/`
}

/** Peer ids the fleet hands out: PgBouncer's peer_id range. */
export const MAX_FLEET_PEER_ID = 16383

/** A node's advertised address as a peer: host and port (`[v6]:port` too); null if it is not host:port. */
export function parseAddress(address: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address)
  if (m === null) return null
  const port = Number(m[3])
  if (port < 1 || port > 65535) return null
  return { host: m[1] ?? m[2], port }
}

const STRING_FIELDS = ['name', 'region', 'address', 'version', 'config_version'] as const
const NUMBER_FIELDS = ['clients', 'servers', 'tps', 'heartbeat_ms', 'started_ms'] as const

/** A value read under `prefix`: the record, or why it is refused. */
export function parseNodeRecord(prefix: string, key: string, value: string): { ok: true; record: NodeRecord } | { ok: false; reason: string } {
  const name = key.startsWith(prefix) ? key.slice(prefix.length) : ''
  if (name === '' || name.includes('/')) return { ok: false, reason: 'not a node key' }
  const j = parseJsonObject(value)
  if (!j.ok) return j
  const o = j.o
  for (const f of STRING_FIELDS) if (typeof o[f] !== 'string') return { ok: false, reason: `field ${f} is not a string` }
  for (const f of NUMBER_FIELDS) if (typeof o[f] !== 'number' || !Number.isFinite(o[f])) return { ok: false, reason: `field ${f} is not a number` }
  if (o.name !== name) return { ok: false, reason: `record names node ${JSON.stringify(o.name)}, key names ${JSON.stringify(name)}` }
  // Records of nodes from before peer ids came have none: 0, no peer.
  const peerId = o.peer_id ?? 0
  if (typeof peerId !== 'number' || !Number.isInteger(peerId) || peerId < 0 || peerId > 65535) return { ok: false, reason: 'field peer_id is not a peer id' }
  const r: NodeRecord = {
    name, region: o.region as string, address: o.address as string, version: o.version as string, config_version: o.config_version as string,
    clients: o.clients as number, servers: o.servers as number, tps: o.tps as number, heartbeat_ms: o.heartbeat_ms as number, started_ms: o.started_ms as number,
    peer_id: peerId,
  }
  return { ok: true, record: r }
}
