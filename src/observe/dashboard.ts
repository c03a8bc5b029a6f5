// The dashboard's two halves on the server: the files of src/dashboard/ (plus uPlot from
// node_modules), read once and served from memory, and the shape of /api/dashboard.json, the one
// document the page polls. The snapshot carries counters, not rates: the page turns two snapshots
// into tps, queries/s and wait percentiles, so tidepool keeps no history and runs no timer for it.
// Must not: keep per-request state, or send what the page does not show (clients are counted,
// never listed, so 1,000 clients cost the page nothing).

import fs from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { PoolCounts } from '../pool/control.ts'
import type { SwitchoverReport } from '../ha/switchover.ts'

export interface DashboardPool extends PoolCounts {
  database: string
  user: string
  pool_mode: string
  paused: boolean
  /** Counters since the pool was made; the page computes rates from their differences. */
  xacts: number
  queries: number
  server_assignments: number
  wait_us: number
  /** Client waits per latency bucket (not cumulative; the last slot is above the last bound). */
  wait_hist: number[]
}

export interface DashboardDatabase {
  name: string
  hosts: number
  paused: boolean
  disabled: boolean
  /** Several monitored hosts: a SWITCHOVER can run. */
  can_switch_over: boolean
}

export interface DashboardSnapshot {
  at_ms: number
  version: string
  started_s: number
  /** POST actions are on (http_token is set); the page greys its buttons otherwise. */
  actions: boolean
  state: { paused: boolean; suspended: boolean; shutting_down: boolean; ready: string }
  clients: number
  max_client_conn: number
  wait_buckets_s: readonly number[]
  pools: DashboardPool[]
  databases: DashboardDatabase[]
  /** SHOW HOSTS rows as /api/hosts.json has them. */
  hosts: unknown[]
  /** The last switchover of each database, every phase with its note. */
  switchovers: SwitchoverReport[]
}

export interface Asset {
  type: string
  body: Buffer
}

const require = createRequire(import.meta.url)

/** Path under /dashboard/ → file; index.html is served at `/`. */
function assetFiles(): Map<string, { type: string; file: string }> {
  const own = (name: string) => fileURLToPath(new URL(`../dashboard/${name}`, import.meta.url))
  const uplot = join(dirname(require.resolve('uplot/package.json')), 'dist')
  const js = 'text/javascript; charset=utf-8'
  const css = 'text/css; charset=utf-8'
  return new Map([
    ['/', { type: 'text/html; charset=utf-8', file: own('index.html') }],
    ['/dashboard/dashboard.js', { type: js, file: own('dashboard.js') }],
    ['/dashboard/look.css', { type: css, file: own('look.css') }],
    ['/dashboard/uplot.js', { type: js, file: join(uplot, 'uPlot.iife.min.js') }],
    ['/dashboard/uplot.css', { type: css, file: join(uplot, 'uPlot.min.css') }],
  ])
}

/** Every asset read now: a missing file fails tidepool's start, not an operator's page load. */
export function loadDashboardAssets(): Map<string, Asset> {
  const m = new Map<string, Asset>()
  for (const [path, { type, file }] of assetFiles()) m.set(path, { type, body: fs.readFileSync(file) })
  return m
}
