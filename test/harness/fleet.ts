// Fleet nodes for the tests of shared config and fleet commands: tidepool nodes joined to one etcd
// or a 3-member etcd cluster (test/harness/etcd.ts) under a fleet name of the test's own, their consoles, and the CLI.

import { spawn } from 'node:child_process'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import pg from 'pg'
import type { PgInstance } from './postgres.ts'
import { spawnTidepool, startTidepool, type ChildTidepool, type TestTidepool } from './tidepool.ts'
import { freePort } from './ports.ts'

/** A single etcd or a cluster: `endpoint` is fleet_etcd's value (every member, comma-separated). */
export interface EtcdEndpoints {
  endpoint: string
}

export function fleetKeys(etcd: EtcdEndpoints, fleet: string, name: string, ttlS: number): Record<string, string | number> {
  return { fleet_etcd: etcd.endpoint, fleet_name: fleet, node_name: name, fleet_lease_ttl: ttlS }
}

/** A node in this process, its console open to pgi.user. */
export function startNode(t: TestContext, pgi: PgInstance, etcd: EtcdEndpoints, fleet: string, name: string, ttlS: number, extra: Record<string, string | number> = {}): Promise<TestTidepool> {
  return startTidepool(t, pgi, { settings: { admin_users: pgi.user }, tidepool: { ...fleetKeys(etcd, fleet, name, ttlS), ...extra } })
}

/** A node in a child process (it can be SIGKILLed); `settings`: [pgbouncer] keys besides admin_users. */
export async function spawnNode(t: TestContext, pgi: PgInstance, etcd: EtcdEndpoints, fleet: string, name: string, ttlS: number, extra: Record<string, string | number> = {}, settings: Record<string, string | number> = {}): Promise<ChildTidepool> {
  return spawnTidepool(t, pgi, { port: await freePort(), settings: { admin_users: pgi.user, ...settings }, tidepool: { ...fleetKeys(etcd, fleet, name, ttlS), ...extra } })
}

/** One console query on the node listening on `port`; rejects with the console's error. */
export async function adminQuery(pgi: PgInstance, port: number, sql: string): Promise<Array<Record<string, string | null>>> {
  const c = new pg.Client({ host: '127.0.0.1', port, database: 'pgbouncer', user: pgi.user, password: pgi.password })
  c.on('error', () => {})
  await c.connect()
  try {
    return (await c.query(sql)).rows as Array<Record<string, string | null>>
  } finally {
    await c.end().catch(() => {})
  }
}

/** `tidepool <args>` as a user runs it; resolves with its exit code and output (bounded by timeoutMs). */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const root = join(import.meta.dirname, '..', '..')
  const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'src', 'main.ts'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  let stdout = ''
  let stderr = ''
  proc.stdout.on('data', (d) => { stdout += String(d) })
  proc.stderr.on('data', (d) => { stderr += String(d) })
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
  return new Promise((resolve) => proc.on('exit', (code) => {
    clearTimeout(timer)
    resolve({ code, stdout, stderr })
  }))
}
