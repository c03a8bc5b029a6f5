// The HTTP side: /health (the process answers), /ready (accepting work: 503 while paused or
// shutting down, so a TCP load balancer, keepalived or a Kubernetes probe routes around this node),
// /metrics (Prometheus text), /api/<view>.json (what the SHOW commands show), and POST
// /api/{pause,resume,reload,reconnect}?db=<name> and /api/switchover?db=<name>[&to=<host>][&timeout=<s>]
// behind `Authorization: Bearer <http_token>`.
// Off unless http_listen_port is set; loopback by default.
// Must not: read request bodies (actions take their argument in the query string), or act
// without the token; with http_token empty, actions are off.

import http from 'node:http'
import { timingSafeEqual, createHash } from 'node:crypto'
import { renderMetrics, type MetricsSource } from './metrics.ts'

export interface HttpView extends MetricsSource {
  readiness(): { ready: boolean; reason: string }
  /** Rows of a SHOW view by name (pools, stats, clients, ...), or null if there is no such view. */
  json(what: string): unknown[] | null
  /** Runs an admin action as the console would; `error` carries the console's message, `rows` its result. */
  act(action: string, db: string | null, args: URLSearchParams): Promise<{ error: string | null; rows?: unknown[] }>
  token(): string
}

const ACTIONS = new Set(['pause', 'resume', 'reload', 'reconnect', 'switchover'])
const MAX_BODY = 1024

/** Constant-time comparison of the presented token with the configured one. */
function tokenMatches(header: string | undefined, token: string): boolean {
  const given = header?.startsWith('Bearer ') ? header.slice(7) : ''
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(token).digest()
  return timingSafeEqual(a, b) && given.length > 0
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body) + '\n')
}

async function handleAction(view: HttpView, req: http.IncomingMessage, res: http.ServerResponse, action: string, db: string | null, args: URLSearchParams): Promise<void> {
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY) return sendJson(res, 413, { error: 'request body too large; actions take no body' })
  const token = view.token()
  if (token === '') return sendJson(res, 403, { error: 'actions are off: set [tidepool] http_token' })
  if (!tokenMatches(req.headers.authorization, token)) return sendJson(res, 401, { error: 'missing or wrong bearer token' })
  const r = await view.act(action, db, args)
  if (r.error !== null) return sendJson(res, 409, { error: r.error })
  sendJson(res, 200, r.rows === undefined ? { ok: true } : { ok: true, rows: r.rows })
}

export function startHttp(view: HttpView, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    // Bodies are never read; a client that sends one gets its answer and the connection closes.
    res.setHeader('Connection', 'close')
    const url = new URL(req.url ?? '/', 'http://localhost')
    const path = url.pathname
    const action = /^\/api\/([a-z]+)$/.exec(path)?.[1]
    if (req.method === 'POST' && action !== undefined && ACTIONS.has(action)) {
      handleAction(view, req, res, action, url.searchParams.get('db'), url.searchParams).catch((err: unknown) => sendJson(res, 500, { error: String(err) }))
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('method not allowed\n')
      return
    }
    const jsonView = /^\/api\/([a-z_]+)\.json$/.exec(path)?.[1]
    if (jsonView !== undefined) {
      const rows = view.json(jsonView)
      if (rows === null) sendJson(res, 404, { error: `no such view: ${jsonView}` })
      else sendJson(res, 200, rows)
      return
    }
    if (path === '/health') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n')
    } else if (path === '/ready') {
      const r = view.readiness()
      res.writeHead(r.ready ? 200 : 503, { 'Content-Type': 'text/plain' }).end(`${r.reason}\n`)
    } else if (path === '/metrics') {
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }).end(renderMetrics(view, Date.now()))
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n')
    }
  })
  server.headersTimeout = 10_000
  server.requestTimeout = 10_000
  server.maxHeadersCount = 50
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port }, () => {
      server.off('error', reject)
      resolve(server)
    })
  })
}
