// SHOW SOCKETS, ACTIVE_SOCKETS, FDS and MEM: PgBouncer's debugging views of connections and memory,
// filled with what Node can tell (SocketFacts: fd, bytes waiting in and out, peer address).

import { entryFor } from '../../config/effective.ts'
import type { Config } from '../../config/types.ts'
import { ADMIN_DB, ADMIN_USER, requireAdmin, type ConsoleRequest } from '../request.ts'
import { columns, compare, type ResultSet, type Row } from '../result-set.ts'
import type { ClientInfo, ServerInfo, SocketFacts } from '../view.ts'
import { clientRow } from './clients.ts'
import { showDatabases } from './databases.ts'
import { serverTotal } from './lists.ts'
import { SERVER_STATE_RANK, SOCKET_COLUMNS, serverRow } from './servers.ts'
import { showUsers } from './users.ts'

// SHOW SOCKETS and ACTIVE_SOCKETS: SHOW SERVERS's columns, then PgBouncer's buffer columns.
const SOCKET_DEBUG_COLUMNS = columns('ssssssisiTTiiississiiiiiiiii', [
  ...SOCKET_COLUMNS.map((c) => c.name),
  'recv_pos', 'pkt_pos', 'pkt_remain', 'send_pos', 'send_remain', 'pkt_avail', 'send_avail',
])
const FDS_COLUMNS = columns('issssiqisssssbb', [
  'fd', 'task', 'user', 'database', 'addr', 'port', 'cancel', 'link', 'client_encoding', 'std_strings',
  'datestyle', 'timezone', 'password', 'scram_client_key', 'scram_server_key',
])
const MEM_COLUMNS = columns('siiii', ['name', 'size', 'used', 'free', 'memtotal'])

/** A connection in its pool's place: clients active then waiting, then servers in SERVER_STATE_RANK order. */
type Placed = { database: string; user: string; rank: number } & ({ client: ClientInfo; server: null } | { client: null; server: ServerInfo })

const CLIENT_RANK: Record<string, number> = { active: 0, waiting: 1 }
const FIRST_SERVER_RANK = 2

/** The user of the pool a client joined: the entry's user= (force_user) or its own, as ClientConn.joinPool. */
function poolUserOf(cfg: Config, c: ClientInfo): string {
  return entryFor(cfg, c.database)?.user ?? c.user
}

/**
 * Every client with a pool and every server, pool by pool (database, then user) as PgBouncer walks
 * them; with `withConsole`, the console's clients at the place of its pool (pgbouncer/pgbouncer).
 */
function byPool(req: ConsoleRequest, withConsole: boolean): Placed[] {
  const cfg = req.view.config()
  const placed: Placed[] = []
  for (const c of req.view.clients()) {
    if (c.state !== 'active' && c.state !== 'waiting') continue
    if (c.database === ADMIN_DB) {
      if (withConsole) placed.push({ database: ADMIN_DB, user: ADMIN_USER, rank: 0, client: c, server: null })
    } else {
      placed.push({ database: c.database, user: poolUserOf(cfg, c), rank: CLIENT_RANK[c.state], client: c, server: null })
    }
  }
  for (const s of req.view.servers()) {
    placed.push({ database: s.database, user: s.poolUser, rank: FIRST_SERVER_RANK + SERVER_STATE_RANK[s.state], client: null, server: s })
  }
  return placed.sort((a, b) => compare(a.database, b.database) || compare(a.user, b.user) || a.rank - b.rank)
}

/** PgBouncer's buffer columns, filled with what Node knows: bytes waiting in and out. */
function bufferColumns(f: SocketFacts | undefined): number[] {
  const pendingIn = f?.pendingIn ?? 0
  const pendingOut = f?.pendingOut ?? 0
  // recv_pos, pkt_pos, pkt_remain, send_pos, send_remain, pkt_avail, send_avail
  return [pendingIn, 0, 0, 0, 0, pendingIn, pendingOut]
}

/**
 * PgBouncer's order: per pool (the console's among them), active and waiting clients, then active,
 * idle, used, tested and logging-in servers; last, clients still logging in. ACTIVE_SOCKETS keeps
 * the sockets with bytes waiting in either direction and the client/server pairs linked now.
 */
export function showSockets(req: ConsoleRequest, isActiveOnly: boolean): ResultSet {
  const facts = req.view.sockets()
  const hasData = (id: string) => { const f = facts.get(id); return f !== undefined && f.pendingIn + f.pendingOut > 0 }
  const rows: Row[] = []
  const addClient = (c: ClientInfo, state: string) => {
    if (isActiveOnly && c.linkedServerId === null && !hasData(c.id)) return
    // SOCKETS leaves prepared_statements at 0 for clients, as it always has.
    rows.push([...clientRow(c, state, req.nowMs, 0), ...bufferColumns(facts.get(c.id))])
  }
  for (const x of byPool(req, true)) {
    if (x.client !== null) {
      addClient(x.client, x.client.state === 'waiting' ? 'cl_waiting' : 'cl_active')
    } else {
      const s = x.server
      if (isActiveOnly && s.linkedClientId === null && !hasData(s.id)) continue
      rows.push([...serverRow(s, `sv_${s.state}`), ...bufferColumns(facts.get(s.id))])
    }
  }
  for (const c of req.view.clients()) if (c.state === 'login') addClient(c, 'cl_login')
  return { columns: SOCKET_DEBUG_COLUMNS, rows }
}

/**
 * PgBouncer hands these rows, with the sockets attached, to a new process taking over (online
 * restart). tidepool's takeover passes sockets over its own IPC channel (runtime/takeover.ts); this lists the same sockets so tools see PgBouncer's shape,
 * with no secret in it: password and the SCRAM keys are always NULL, cancel keys always 0.
 * Console clients are not listed: they belong to no pool.
 */
export function showFds(req: ConsoleRequest): ResultSet {
  requireAdmin(req)
  const facts = req.view.sockets()
  const rows: Row[] = []
  for (const l of req.view.listenerSockets()) {
    rows.push([l.fd, 'pooler', null, null, l.addr, l.port, 0, 0, null, null, null, null, null, null, null])
  }
  const fdOf = (id: string | null) => (id === null ? 0 : Math.max(0, facts.get(id)?.fd ?? 0))
  const paramsRow = (f: SocketFacts) => ['client_encoding', 'standard_conforming_strings', 'DateStyle', 'TimeZone'].map((n) => f.params.get(n) ?? null)
  // PgBouncer leaves out TLS sockets, and sockets linked to one: their state cannot be handed over.
  const isPlain = (id: string, linkId: string | null) => facts.get(id)?.isTls === false && (linkId === null || facts.get(linkId)?.isTls !== true)
  const addClient = (c: ClientInfo) => {
    const f = facts.get(c.id)
    if (f === undefined || !isPlain(c.id, c.linkedServerId)) return
    rows.push([f.fd, 'client', c.user || null, c.database || null, c.addr, c.port, 0, fdOf(c.linkedServerId), ...paramsRow(f), null, null, null])
  }
  for (const c of req.view.clients()) if (c.state === 'login') addClient(c)
  for (const x of byPool(req, false)) {
    if (x.client !== null) {
      addClient(x.client)
      continue
    }
    const s = x.server
    const f = facts.get(s.id)
    if (f === undefined || !isPlain(s.id, s.linkedClientId)) continue
    rows.push([f.fd, 'server', s.user, s.database, f.remoteAddr || s.host, s.port, 0, fdOf(s.linkedClientId), ...paramsRow(f), null, null, null])
  }
  return { columns: FDS_COLUMNS, rows }
}

const INT4_MAX = 2147483647

/**
 * PgBouncer lists its slab caches: object size, used and free objects, bytes held. tidepool has no
 * slabs: the *_cache rows count its live objects of each kind (size 0: a JavaScript object has no
 * fixed size, and nothing is kept on free lists); the node_* rows are process.memoryUsage() in KiB
 * units (size 1024); the socket_* rows are bytes waiting in socket buffers (size 1).
 */
export function showMem(req: ConsoleRequest): ResultSet {
  const pools = req.view.pools(req.nowMs)
  let clients = 0
  for (const _ of req.view.clients()) clients++
  let pendingIn = 0
  let pendingOut = 0
  for (const f of req.view.sockets().values()) {
    pendingIn += f.pendingIn
    pendingOut += f.pendingOut
  }
  const m = req.view.memoryUsage()
  const objects = (name: string, used: number) => [name, 0, used, 0, 0]
  const bytes = (name: string, n: number) => [name, 1, Math.min(n, INT4_MAX), 0, Math.min(n, INT4_MAX)]
  const kib = (name: string, used: number, total: number) =>
    [name, 1024, Math.min(Math.ceil(used / 1024), INT4_MAX), Math.max(0, Math.floor((total - used) / 1024)), Math.min(total, INT4_MAX)]
  return {
    columns: MEM_COLUMNS,
    rows: [
      objects('user_cache', showUsers(req).rows.length),
      objects('db_cache', showDatabases(req).rows.length),
      objects('pool_cache', pools.length + 1),
      objects('server_cache', serverTotal(pools)),
      objects('client_cache', clients),
      bytes('socket_recv_buffers', pendingIn),
      bytes('socket_send_buffers', pendingOut),
      kib('node_heap', m.heapUsed, m.heapTotal),
      kib('node_external', m.external, m.external),
      kib('node_array_buffers', m.arrayBuffers, m.arrayBuffers),
      kib('node_rss', m.rss, m.rss),
    ],
  }
}
