// Prometheus text exposition (format 0.0.4) rendered at scrape time from the pools and the stats
// counters. Names reuse pgbouncer_exporter's under the tidepool_ prefix, so dashboards port by
// renaming; labels stay bounded (database, user): never a client address or connection id.
// Must not: keep state of its own; everything is read when scraped.

import type { PoolCounts, PoolRow } from '../pool/control.ts'
import { LATENCY_BUCKETS_S, type Histogram, type PoolStats } from '../pool/stats.ts'
import type { Host } from '../ha/hosts.ts'
import type { SwitchoverReport } from '../ha/switchover.ts'
import type { FleetStatus } from '../ha/fleet/member.ts'

/** What process_* shows: one process, or the sum over the workers. */
export interface ProcessFigures {
  cpuUs: number
  rss: number
  heapUsed: number
}

export interface MetricsSource {
  /** Every pool as of `nowMs`. */
  pools(nowMs: number): PoolRow[]
  process(): ProcessFigures
  stats(): Array<{ database: string; totals: PoolStats }>
  isPaused(): boolean
  isShuttingDown(): boolean
  clientCount(): number
  maxClientConn(): number
  startTimeS: number
  /** Monitored backend hosts (several hosts, roles or health URLs configured). */
  hosts(): Host[]
  /** The last switchover of each database, and how many ended each way. */
  switchovers(): { last: SwitchoverReport[]; counts: Map<string, { ok: number; failed: number }> }
  /** Fleet membership (fleet_etcd); null without a fleet, and then no tidepool_fleet_* metric is shown. */
  fleet(): FleetStatus | null
}

function esc(v: string): string {
  return v.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')
}

class Out {
  text = ''
  family(name: string, type: 'gauge' | 'counter' | 'histogram', help: string): void {
    this.text += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`
  }
  sample(name: string, labels: Record<string, string>, value: number): void {
    const l = Object.entries(labels).map(([k, v]) => `${k}="${esc(v)}"`).join(',')
    this.text += `${name}${l === '' ? '' : `{${l}}`} ${Number.isFinite(value) ? value : 0}\n`
  }
}

const POOL_GAUGES: Array<[string, string, (k: PoolCounts, p: PoolRow) => number]> = [
  ['tidepool_pools_client_active_connections', 'Client connections linked to a server or idle between transactions', (k) => k.cl_active],
  ['tidepool_pools_client_pinned_connections', 'Client connections pinned to their server by session state (LISTEN, advisory locks, temporary tables, ...)', (k) => k.cl_pinned],
  ['tidepool_pools_client_waiting_connections', 'Client connections waiting for a server', (k) => k.cl_waiting],
  ['tidepool_pools_server_active_connections', 'Server connections linked to a client', (k) => k.sv_active],
  ['tidepool_pools_server_idle_connections', 'Server connections idle and ready for use', (k) => k.sv_idle],
  ['tidepool_pools_server_used_connections', 'Server connections idle longer than server_check_delay', (k) => k.sv_used],
  ['tidepool_pools_server_testing_connections', 'Server connections running server_reset_query or server_check_query', (k) => k.sv_tested],
  ['tidepool_pools_server_login_connections', 'Server connections logging in', (k) => k.sv_login],
  ['tidepool_pools_server_being_canceled_connections', 'Server connections held back from reuse until the cancel requests sent for their query are done', (k) => k.sv_being_canceled],
  ['tidepool_pools_client_maxwait_seconds', 'How long the oldest waiting client has waited', (k) => k.maxwait_ms / 1000],
  ['tidepool_pool_size', 'Configured pool_size of the pool', (_k, p) => p.pool_size],
  ['tidepool_pool_paused', '1 while the pool is paused', (_k, p) => (p.paused ? 1 : 0)],
]

const STAT_COUNTERS: Array<[string, string, (s: PoolStats) => number]> = [
  ['tidepool_stats_server_assignments_total', 'Times a server was assigned to a client', (s) => s.serverAssignments],
  ['tidepool_stats_sql_transactions_pooled_total', 'Transactions pooled', (s) => s.xacts],
  ['tidepool_stats_queries_pooled_total', 'Queries pooled', (s) => s.queries],
  ['tidepool_stats_received_bytes_total', 'Bytes received from clients', (s) => s.received],
  ['tidepool_stats_sent_bytes_total', 'Bytes sent to clients', (s) => s.sent],
  ['tidepool_stats_server_in_transaction_seconds_total', 'Time servers spent in transactions', (s) => s.xactTimeUs / 1e6],
  ['tidepool_stats_queries_duration_seconds_total', 'Time servers spent running queries', (s) => s.queryTimeUs / 1e6],
  ['tidepool_stats_client_wait_seconds_total', 'Time clients spent waiting for a server', (s) => s.waitTimeUs / 1e6],
  ['tidepool_stats_client_logins_total', 'Clients that logged in and joined a pool', (s) => s.clientLogins],
]

export function renderMetrics(src: MetricsSource, nowMs: number): string {
  const o = new Out()
  o.family('tidepool_up', 'gauge', '1 while the pooler runs')
  o.sample('tidepool_up', {}, 1)
  o.family('tidepool_paused', 'gauge', '1 while the whole pooler is paused')
  o.sample('tidepool_paused', {}, src.isPaused() ? 1 : 0)
  o.family('tidepool_shutting_down', 'gauge', '1 while a shutdown runs')
  o.sample('tidepool_shutting_down', {}, src.isShuttingDown() ? 1 : 0)
  o.family('tidepool_client_connections', 'gauge', 'Open client connections')
  o.sample('tidepool_client_connections', {}, src.clientCount())
  o.family('tidepool_config_max_client_connections', 'gauge', 'max_client_conn')
  o.sample('tidepool_config_max_client_connections', {}, src.maxClientConn())
  const pools = src.pools(nowMs)
  for (const [name, help, get] of POOL_GAUGES) {
    o.family(name, 'gauge', help)
    for (const p of pools) o.sample(name, { database: p.database, user: p.user }, get(p.counts, p))
  }
  const stats = src.stats()
  for (const [name, help, get] of STAT_COUNTERS) {
    o.family(name, 'counter', help)
    for (const s of stats) o.sample(name, { database: s.database }, get(s.totals))
  }
  const hists: Array<[string, string, (s: PoolStats) => Histogram]> = [
    ['tidepool_client_wait_duration_seconds', 'How long clients waited for a server', (s) => s.waitHist],
    ['tidepool_query_duration_seconds', 'Query durations on servers (one per ReadyForQuery)', (s) => s.queryHist],
    ['tidepool_transaction_duration_seconds', 'Transaction durations, first query to ReadyForQuery idle', (s) => s.xactHist],
  ]
  for (const [name, help, get] of hists) {
    o.family(name, 'histogram', help)
    for (const st of stats) {
      const h = get(st.totals)
      let cumulative = 0
      LATENCY_BUCKETS_S.forEach((le, i) => {
        cumulative += h.counts[i]
        o.sample(`${name}_bucket`, { database: st.database, le: String(le) }, cumulative)
      })
      cumulative += h.counts[LATENCY_BUCKETS_S.length]
      o.sample(`${name}_bucket`, { database: st.database, le: '+Inf' }, cumulative)
      o.sample(`${name}_sum`, { database: st.database }, h.sumUs / 1e6)
      o.sample(`${name}_count`, { database: st.database }, cumulative)
    }
  }
  o.family('tidepool_errors_total', 'counter', 'ErrorResponses by SQLSTATE: from servers (source=server) and sent by tidepool (source=pooler)')
  for (const st of stats) {
    for (const [source, m] of [['server', st.totals.serverErrors], ['pooler', st.totals.poolerErrors]] as const) {
      if (m !== null) for (const [sqlstate, n] of m) o.sample('tidepool_errors_total', { database: st.database, source, sqlstate }, n)
    }
  }
  renderHosts(o, src.hosts(), nowMs)
  renderSwitchovers(o, src.switchovers())
  renderFleet(o, src.fleet())
  const proc = src.process()
  o.family('process_cpu_seconds_total', 'counter', 'User and system CPU time of the pooler process (with workers: of all of them)')
  o.sample('process_cpu_seconds_total', {}, proc.cpuUs / 1e6)
  o.family('process_resident_memory_bytes', 'gauge', 'Resident memory of the pooler process (with workers: of all of them)')
  o.sample('process_resident_memory_bytes', {}, proc.rss)
  o.family('process_start_time_seconds', 'gauge', 'Start time of the process since the Unix epoch')
  o.sample('process_start_time_seconds', {}, src.startTimeS)
  o.family('nodejs_heap_used_bytes', 'gauge', 'V8 heap in use')
  o.sample('nodejs_heap_used_bytes', {}, proc.heapUsed)
  return o.text
}

/**
 * Labels: the host's address only (bounded by the config), never a connection id; and its region
 * when host_regions gives one (left out otherwise, so series without regions stay as they were).
 */
function renderHosts(o: Out, hosts: Host[], nowMs: number): void {
  const at = (h: Host): Record<string, string> => (h.region === '' ? { host: h.key } : { host: h.key, region: h.region })
  o.family('tidepool_host_up', 'gauge', '1 while the host passes its checks and is not banned')
  for (const h of hosts) o.sample('tidepool_host_up', at(h), h.isUsable(nowMs) ? 1 : 0)
  o.family('tidepool_host_role', 'gauge', 'The host role every configured source agrees on (1 for the current one)')
  for (const h of hosts) {
    for (const role of ['primary', 'replica', 'unknown'] as const) o.sample('tidepool_host_role', { ...at(h), role }, h.role === role ? 1 : 0)
  }
  o.family('tidepool_host_role_conflict', 'gauge', '1 while the backend and Patroni disagree about the host role')
  for (const h of hosts) o.sample('tidepool_host_role_conflict', at(h), h.isConflicted ? 1 : 0)
  o.family('tidepool_host_check_duration_seconds', 'gauge', 'How long the last health check took')
  for (const h of hosts) o.sample('tidepool_host_check_duration_seconds', at(h), h.checkLatencyMs / 1000)
  o.family('tidepool_host_server_connections', 'gauge', 'Open server connections to the host, over all pools')
  for (const h of hosts) o.sample('tidepool_host_server_connections', at(h), h.servers)
  o.family('tidepool_host_last_change_timestamp_seconds', 'gauge', 'When the host last changed health or role, since the Unix epoch')
  for (const h of hosts) o.sample('tidepool_host_last_change_timestamp_seconds', at(h), h.lastChangeMs / 1000)
}

function renderSwitchovers(o: Out, s: { last: SwitchoverReport[]; counts: Map<string, { ok: number; failed: number }> }): void {
  o.family('tidepool_switchovers_total', 'counter', 'Planned switchovers by result')
  for (const [database, c] of s.counts) {
    o.sample('tidepool_switchovers_total', { database, result: 'ok' }, c.ok)
    o.sample('tidepool_switchovers_total', { database, result: 'failed' }, c.failed)
  }
  o.family('tidepool_switchover_phase_duration_seconds', 'gauge', 'How long each phase of the last switchover took')
  for (const r of s.last) {
    for (const p of r.phases) o.sample('tidepool_switchover_phase_duration_seconds', { database: r.database, phase: p.name }, p.ms / 1000)
  }
  o.family('tidepool_switchover_duration_seconds', 'gauge', 'How long the last switchover held traffic, start to release')
  for (const r of s.last) o.sample('tidepool_switchover_duration_seconds', { database: r.database }, r.totalMs / 1000)
}

function renderFleet(o: Out, f: FleetStatus | null): void {
  if (f === null) return
  o.family('tidepool_fleet_etcd_up', 'gauge', '1 while the last heartbeat to etcd succeeded; 0 while this node is cut off from etcd (it serves on)')
  o.sample('tidepool_fleet_etcd_up', {}, f.isEtcdUp ? 1 : 0)
  o.family('tidepool_fleet_nodes', 'gauge', 'Nodes of the fleet, this one included, as seen at the last heartbeat that reached etcd')
  o.sample('tidepool_fleet_nodes', {}, f.nodes)
  o.family('tidepool_fleet_last_contact_timestamp_seconds', 'gauge', 'When a heartbeat last reached etcd (0: never)')
  o.sample('tidepool_fleet_last_contact_timestamp_seconds', {}, f.lastContactMs / 1000)
  o.family('tidepool_fleet_ignored_keys', 'gauge', 'Keys under the fleet\'s nodes/ prefix that are not valid node records, ignored at the last read')
  o.sample('tidepool_fleet_ignored_keys', {}, f.badRecords)
  const b = f.budget
  if (b === null) return
  o.family('tidepool_fleet_budget_fenced', 'gauge', '1 while this node has given up its budget shares because it could not renew its fleet lease (fleet_budget)')
  o.sample('tidepool_fleet_budget_fenced', {}, b.isFenced ? 1 : 0)
  // scope pool: database and user; db: database; user: user.
  const labels = (p: (typeof b.pools)[number]): Record<string, string> => (p.scope === 'pool' ? { scope: p.scope, database: p.database, user: p.user } : p.scope === 'db' ? { scope: p.scope, database: p.database } : { scope: p.scope, user: p.user })
  o.family('tidepool_fleet_budget_share', 'gauge', 'Server connections of the pool, database or user this node may hold: its share of the fleet-wide pool_size, max_db_connections or max_user_connections as written in etcd, its floor included (only the floor while fenced)')
  for (const p of b.pools) o.sample('tidepool_fleet_budget_share', labels(p), p.share)
  o.family('tidepool_fleet_budget_floor', 'gauge', 'Servers of the scope this node keeps through a fence (fleet_budget_floor, as far as the budget had room)')
  for (const p of b.pools) o.sample('tidepool_fleet_budget_floor', labels(p), p.floor)
  o.family('tidepool_fleet_budget_demand', 'gauge', 'Clients of the scope using or waiting for a server (the most over the last second or two), which the fleet shares the budget by')
  for (const p of b.pools) o.sample('tidepool_fleet_budget_demand', labels(p), p.demand)
  o.family('tidepool_fleet_budget_limit', 'gauge', 'The fleet-wide budget of the scope (pool_size, max_db_connections or max_user_connections), as this node counts it')
  for (const p of b.pools) o.sample('tidepool_fleet_budget_limit', labels(p), p.limit)
}
