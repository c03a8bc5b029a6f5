// The checks behind the monitor: the backend's own answer (a login and
// `SELECT pg_is_in_recovery()` on a connection of its own), Patroni's REST API (GET /primary is
// 200 only on the leader), and a plain HTTP health endpoint (CockroachDB's /health?ready=1, which
// turns 503 while a node drains). Sources run side by side, each bounded by the same timeout.
// Must not: throw; every failure becomes part of the CheckOutcome.

import http from 'node:http'
import https from 'node:https'
import { queryOnce, type QueryOnceOptions } from '../auth/query-once.ts'
import { dial } from '../net/dial.ts'
import type { CheckOutcome, Role } from './hosts.ts'
import type { HostSpec } from './monitor.ts'

export async function checkHost(spec: HostSpec, timeoutMs: number, o: Omit<QueryOnceOptions, 'timeoutMs'>): Promise<CheckOutcome> {
  const started = performance.now()
  // CockroachDB has no recovery mode to ask about: a query that answers is the SQL check.
  const sql = spec.kind === 'cockroachdb' ? 'SELECT false' : 'SELECT pg_is_in_recovery()'
  const [backend, patroni, health, reachable] = await Promise.all([
    spec.login === null ? null : queryOnce(spec.login, sql, [], { ...o, timeoutMs, startupParams: { application_name: 'tidepool health check' } }),
    spec.patroniUrl === null ? null : patroniRole(spec.patroniUrl, timeoutMs),
    spec.healthUrl === null ? null : httpStatus(spec.healthUrl, timeoutMs),
    // With nothing else to ask, at least the port must accept a connection.
    spec.login === null && spec.healthUrl === null ? tcpConnect(spec.host, spec.port, timeoutMs) : null,
  ])
  const latencyMs = performance.now() - started
  const errors: string[] = []
  let inRecovery: boolean | null = null
  if (backend !== null) {
    if (!backend.ok) errors.push(`backend: ${backend.cause}`)
    else if (backend.rows.length === 1 && (backend.rows[0][0] === 't' || backend.rows[0][0] === 'f')) inRecovery = backend.rows[0][0] === 't'
    else errors.push('backend: unexpected answer to pg_is_in_recovery()')
  }
  if (health !== null && health !== 200) errors.push(`health endpoint: ${typeof health === 'number' ? `HTTP ${health}` : health}`)
  if (reachable !== null && reachable !== true) errors.push(`connect: ${reachable}`)
  // Patroni being unreachable does not make the host unhealthy; it makes its role unknown.
  const patroniAnswer: Role | null = patroni === null ? null : patroni
  return { ok: errors.length === 0, inRecovery, patroni: patroniAnswer, latencyMs, error: errors.length > 0 ? errors.join('; ') : null }
}

/** True once a connection opens (then closed at once), or why it did not. */
function tcpConnect(host: string, port: number, timeoutMs: number): Promise<true | string> {
  return new Promise((resolve) => {
    const sock = dial(host, port)
    sock.setTimeout(timeoutMs, () => {
      sock.destroy()
      resolve(`no answer within ${timeoutMs} ms`)
    })
    sock.once('connect', () => {
      sock.destroy()
      resolve(true)
    })
    sock.once('error', (err) => resolve(err.message))
  })
}

/** Patroni: 200 on /primary only for the leader; another HTTP answer means "not the leader". */
export async function patroniRole(baseUrl: string, timeoutMs: number): Promise<Role> {
  const status = await httpStatus(new URL('primary', withSlash(baseUrl)).href, timeoutMs)
  if (status === 200) return 'primary'
  return typeof status === 'number' ? 'replica' : 'unknown'
}

/** One HTTP request: the status and body text, or why there was none. Bounded by timeoutMs. */
export function httpRequest(method: 'GET' | 'POST', url: string, body: unknown, timeoutMs: number): Promise<{ status: number; text: string } | { error: string }> {
  return new Promise((resolve) => {
    let u: URL
    try {
      u = new URL(url)
    } catch {
      resolve({ error: `bad URL ${url}` })
      return
    }
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body))
    const headers: Record<string, string | number> = { 'user-agent': 'tidepool', accept: 'application/json' }
    if (data !== null) Object.assign(headers, { 'content-type': 'application/json', 'content-length': data.length })
    const request = u.protocol === 'https:' ? https.request : http.request
    const req = request(u, { method, timeout: timeoutMs, headers }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') }))
      res.on('error', (err) => resolve({ error: err.message }))
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    req.on('error', (err) => resolve({ error: err.message }))
    req.end(data ?? undefined)
  })
}

/** A GET's status code, or why there was none. */
export async function httpStatus(url: string, timeoutMs: number): Promise<number | string> {
  const r = await httpRequest('GET', url, undefined, timeoutMs)
  return 'error' in r ? r.error : r.status
}

/** A GET's JSON body, or null when there is none (error, timeout, not JSON). */
export async function httpGetJson(url: string, timeoutMs: number): Promise<unknown> {
  const r = await httpRequest('GET', url, undefined, timeoutMs)
  if ('error' in r) return null
  try {
    return JSON.parse(r.text)
  } catch {
    return null
  }
}

export function withSlash(base: string): string {
  return base.endsWith('/') ? base : `${base}/`
}
