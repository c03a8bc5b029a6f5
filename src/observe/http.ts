// The HTTP side: /health (the process answers), /ready (accepting work: 503 while paused or
// shutting down, so a TCP load balancer, keepalived or a Kubernetes probe routes around this node),
// /metrics (Prometheus text), /api/<view>.json (what the SHOW commands show), and POST
// /api/{pause,resume,reload,reconnect}?db=<name>, /api/switchover?db=<name>[&to=<host>][&timeout=<s>] and
// /api/fleet?cmd=<pause|resume|reconnect|kill|reload|enable|disable>[&db=<name>] or ?cmd=switchover&db=<name>[&to=<host>][&timeout=<s>] (every node of the fleet)
// behind `Authorization: Bearer <http_token>`, and the dashboard: GET / and /dashboard/* (static
// files of src/dashboard/, read once) and /api/dashboard.json, the snapshot the page polls.
// With http_token set, /api/*.json needs the token too; /health, /ready and /metrics stay open for
// load balancers and scrapers, and the page's files hold no data.
// Off unless http_listen_port is set; loopback by default.
// Must not: read request bodies (actions take their argument in the query string), act without
// the token (with http_token empty, actions are off), change anything on GET, or act for another
// site: the token travels only in a header (a cross-site form cannot send one), and a POST whose
// Origin or Sec-Fetch-Site names another site is refused besides.

import http from 'node:http'
import net, { isIP } from 'node:net'
import { timingSafeEqual, createHash } from 'node:crypto'
import { renderMetrics, type MetricsSource } from './metrics.ts'
import { loadDashboardAssets, type DashboardSnapshot } from './dashboard.ts'

export interface HttpView extends MetricsSource {
  /** With workers: gathers every worker's numbers for the reads that follow (/metrics, /api). */
  refresh?(): Promise<void>
  readiness(): { ready: boolean; reason: string }
  /** Rows of a SHOW view by name (pools, stats, clients, ...), or null if there is no such view. */
  json(what: string): unknown[] | null
  /** Runs an admin action as the console would; `error` carries the console's message, `rows` its result. */
  act(action: string, db: string | null, args: URLSearchParams): Promise<{ error: string | null; rows?: unknown[] }>
  token(): string
  /** http_allowed_hosts: host names the page and /api answer to while no token is set. */
  allowedHosts(): readonly string[]
  /** What the dashboard shows, in one document (GET /api/dashboard.json). */
  dashboard(): DashboardSnapshot
}

const ACTIONS = new Set(['pause', 'resume', 'reload', 'reconnect', 'switchover', 'fleet'])
const MAX_BODY = 1024

/** Constant-time comparison of the presented token with the configured one. */
function tokenMatches(header: string | undefined, token: string): boolean {
  const given = header?.startsWith('Bearer ') ? header.slice(7) : ''
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(token).digest()
  return timingSafeEqual(a, b) && given.length > 0
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }).end(JSON.stringify(body) + '\n')
}

// Every answer: not framed by another site, not sniffed into another type, no referrer sent on.
const BASE_HEADERS: Record<string, string> = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}
// The page: its own scripts and styles only (no inline script, nothing from another origin), and
// fetch to this origin only. uPlot styles its elements from script, which CSP does not restrict.
const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

/**
 * A POST from a page of another site: a browser names that site in Origin (or says cross-site in
 * Sec-Fetch-Site). Clients that are not browsers (curl, the CLI) send neither and pass.
 */
function isCrossSite(req: http.IncomingMessage): boolean {
  const site = req.headers['sec-fetch-site']
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return true
  const origin = req.headers.origin
  if (origin === undefined) return false
  const host = req.headers.host ?? ''
  return origin !== `http://${host}` && origin !== `https://${host}`
}

/**
 * DNS rebinding: a page of another site whose name now resolves to this address reaches us with its
 * own name in Host. Without a token the page and /api reads are open, so they answer only to an
 * address, localhost, or a name the operator listed; with a token, the token is what protects them.
 */
function isUnknownHost(req: http.IncomingMessage, view: HttpView): boolean {
  if (view.token() !== '') return false
  const host = req.headers.host
  if (host === undefined) return false
  const name = (host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '')).toLowerCase()
  return isIP(name) === 0 && name !== 'localhost' && !view.allowedHosts().some((h) => h.toLowerCase() === name)
}

async function handleAction(view: HttpView, req: http.IncomingMessage, res: http.ServerResponse, action: string, db: string | null, args: URLSearchParams): Promise<void> {
  if (isCrossSite(req)) return sendJson(res, 403, { error: 'cross-site request refused' })
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY) return sendJson(res, 413, { error: 'request body too large; actions take no body' })
  const token = view.token()
  if (token === '') return sendJson(res, 403, { error: 'actions are off: set [tidepool] http_token' })
  if (!tokenMatches(req.headers.authorization, token)) return sendJson(res, 401, { error: 'missing or wrong bearer token' })
  const r = await view.act(action, db, args)
  if (r.error !== null) return sendJson(res, 409, { error: r.error })
  sendJson(res, 200, r.rows === undefined ? { ok: true } : { ok: true, rows: r.rows })
}

function refreshed(view: HttpView): Promise<void> {
  return view.refresh === undefined ? Promise.resolve() : view.refresh()
}

/**
 * `inherited`: a listening socket another tidepool handed over (online restart): its connections
 * are served here and nothing is bound.
 */
export function startHttp(view: HttpView, host: string, port: number, inherited: { server: net.Server; early: net.Socket[]; onEarly: (s: net.Socket) => void } | null = null): Promise<http.Server> {
  const assets = loadDashboardAssets()
  const server = http.createServer((req, res) => {
    // Bodies are never read; a client that sends one gets its answer and the connection closes.
    res.setHeader('Connection', 'close')
    for (const [k, v] of Object.entries(BASE_HEADERS)) res.setHeader(k, v)
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
    const asset = assets.get(path)
    if ((asset !== undefined || path.startsWith('/api/')) && isUnknownHost(req, view)) {
      res.writeHead(421, { 'Content-Type': 'text/plain' }).end('unknown Host: add it to [tidepool] http_allowed_hosts, or set http_token\n')
      return
    }
    if (asset !== undefined) {
      if (path === '/') res.setHeader('Content-Security-Policy', PAGE_CSP)
      res.writeHead(200, { 'Content-Type': asset.type, 'Content-Length': asset.body.length, 'Cache-Control': 'no-cache' }).end(req.method === 'HEAD' ? undefined : asset.body)
      return
    }
    const jsonView = /^\/api\/([a-z_]+)\.json$/.exec(path)?.[1]
    if (jsonView !== undefined) {
      const token = view.token()
      if (token !== '' && !tokenMatches(req.headers.authorization, token)) {
        res.setHeader('WWW-Authenticate', 'Bearer')
        return sendJson(res, 401, { error: 'missing or wrong bearer token' })
      }
      refreshed(view).then(() => {
        if (jsonView === 'dashboard') return sendJson(res, 200, view.dashboard())
        const rows = view.json(jsonView)
        if (rows === null) sendJson(res, 404, { error: `no such view: ${jsonView}` })
        else sendJson(res, 200, rows)
      }, (err: unknown) => sendJson(res, 503, { error: (err as Error).message }))
      return
    }
    if (path === '/health') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n')
    } else if (path === '/ready') {
      const r = view.readiness()
      res.writeHead(r.ready ? 200 : 503, { 'Content-Type': 'text/plain' }).end(`${r.reason}\n`)
    } else if (path === '/metrics') {
      refreshed(view).then(
        () => res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }).end(renderMetrics(view, Date.now())),
        (err: unknown) => res.writeHead(503, { 'Content-Type': 'text/plain' }).end(`${(err as Error).message}\n`),
      )
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n')
    }
  })
  server.headersTimeout = 10_000
  server.requestTimeout = 10_000
  server.maxHeadersCount = 50
  if (inherited !== null) {
    inherited.server.off('connection', inherited.onEarly)
    inherited.server.on('connection', (socket: net.Socket) => server.emit('connection', socket))
    for (const socket of inherited.early.splice(0)) server.emit('connection', socket)
    return Promise.resolve(server)
  }
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port }, () => {
      server.off('error', reject)
      resolve(server)
    })
  })
}
