// The dashboard at the HTTP level (the browser side is dashboard-browser.test.ts): the page and
// its files are served from the package with headers that keep other sites out, reads need the
// token once one is set, GET never acts, and a cross-site POST cannot act even with the token.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { freePort } from '../harness/ports.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const TOKEN = 'dash-token'
const AUTH = { Authorization: `Bearer ${TOKEN}` }

test('GET / and its files: offline, with CSP, no framing, no sniffing', { timeout: 30_000 }, async (t) => {
  const httpPort = await freePort()
  await startTidepool(t, pgi, { tidepool: { http_listen_port: httpPort, http_token: TOKEN } })
  const base = `http://127.0.0.1:${httpPort}`
  const page = await fetch(`${base}/`)
  assert.equal(page.status, 200, 'the page itself holds no data: no token needed')
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/)
  const csp = page.headers.get('content-security-policy') ?? ''
  assert.match(csp, /script-src 'self'/)
  assert.match(csp, /frame-ancestors 'none'/)
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/)
  assert.equal(page.headers.get('x-frame-options'), 'DENY')
  assert.equal(page.headers.get('x-content-type-options'), 'nosniff')
  const html = await page.text()
  // Every script and stylesheet is one of ours: nothing from a CDN, nothing inline.
  const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1])
  assert.deepEqual(refs.sort(), ['/dashboard/dashboard.js', '/dashboard/look.css', '/dashboard/uplot.css', '/dashboard/uplot.js'])
  assert.doesNotMatch(html, /<script>|<style>| style="/)
  for (const ref of refs) {
    const r = await fetch(`${base}${ref}`)
    assert.equal(r.status, 200, ref)
    assert.match(r.headers.get('content-type') ?? '', ref.endsWith('.js') ? /^text\/javascript/ : /^text\/css/)
    assert.ok((await r.arrayBuffer()).byteLength > 100, ref)
  }
  assert.equal((await fetch(`${base}/dashboard/../package.json`)).status, 404)
  assert.equal((await fetch(`${base}/dashboard/nope.js`)).status, 404)
  // JSON answers carry the headers too, and are never cached.
  const json = await fetch(`${base}/api/dashboard.json`, { headers: AUTH })
  assert.equal(json.headers.get('x-content-type-options'), 'nosniff')
  assert.equal(json.headers.get('cache-control'), 'no-store')
})

test('with http_token set, reads need it; GET never acts; a cross-site POST is refused even with the token', { timeout: 30_000 }, async (t) => {
  const httpPort = await freePort()
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user }, tidepool: { http_listen_port: httpPort, http_token: TOKEN } })
  const app = await tp.connect(t)
  await app.query('SELECT 1')
  const base = `http://127.0.0.1:${httpPort}`
  for (const path of ['/api/dashboard.json', '/api/pools.json', '/api/hosts.json', '/api/switchover.json']) {
    const r = await fetch(`${base}${path}`)
    assert.equal(r.status, 401, path)
    assert.equal(r.headers.get('www-authenticate'), 'Bearer')
    assert.equal((await fetch(`${base}${path}`, { headers: { Authorization: 'Bearer wrong' } })).status, 401, path)
    // A token in the URL is not a token.
    assert.equal((await fetch(`${base}${path}?token=${TOKEN}`)).status, 401, path)
  }
  const snap = await (await fetch(`${base}/api/dashboard.json`, { headers: AUTH })).json() as any
  assert.equal(snap.actions, true)
  const pool = snap.pools.find((p: any) => p.database === 'app' && p.user === pgi.user)
  assert.equal(pool.cl_active, 1)
  assert.equal(pool.xacts, 1)
  assert.equal(pool.wait_hist.length, snap.wait_buckets_s.length + 1)
  assert.deepEqual(snap.databases.map((d: any) => d.name), ['app', 'postgres'])
  // /health, /ready and /metrics stay open (load balancers, scrapers).
  for (const path of ['/health', '/ready', '/metrics']) assert.equal((await fetch(`${base}${path}`)).status, 200, path)

  // GET and HEAD never act, with or without the token.
  for (const method of ['GET', 'HEAD']) assert.equal((await fetch(`${base}/api/pause?db=app`, { method, headers: AUTH })).status, 404)
  assert.equal(tp.rt.pools.isPaused('app'), false)
  // A preflight gets no CORS grant, so a page elsewhere cannot send the Authorization header.
  const preflight = await fetch(`${base}/api/pause?db=app`, { method: 'OPTIONS', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization' } })
  assert.equal(preflight.status, 405)
  assert.equal(preflight.headers.get('access-control-allow-origin'), null)
  // What a form on another site can send: no Authorization header.
  const form = await fetch(`${base}/api/pause?db=app`, { method: 'POST', headers: { Origin: 'https://evil.example', 'Content-Type': 'application/x-www-form-urlencoded', 'Sec-Fetch-Site': 'cross-site' }, body: 'db=app' })
  assert.equal(form.status, 403)
  const formNoFetchMeta = await fetch(`${base}/api/pause?db=app`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'db=app' })
  assert.equal(formNoFetchMeta.status, 401)
  // Even a request that somehow carries the token is refused when a browser says it comes from elsewhere.
  assert.equal((await fetch(`${base}/api/pause?db=app`, { method: 'POST', headers: { ...AUTH, Origin: 'https://evil.example' } })).status, 403)
  assert.equal((await fetch(`${base}/api/pause?db=app`, { method: 'POST', headers: { ...AUTH, 'Sec-Fetch-Site': 'same-site' } })).status, 403)
  assert.equal(tp.rt.pools.isPaused('app'), false, 'nothing was paused')
  // The page's own POST: same origin, token in the header.
  const own = await fetch(`${base}/api/pause?db=app`, { method: 'POST', headers: { ...AUTH, Origin: base, 'Sec-Fetch-Site': 'same-origin' } })
  assert.equal(own.status, 200)
  assert.equal(tp.rt.pools.isPaused('app'), true)
  const after = await (await fetch(`${base}/api/dashboard.json`, { headers: AUTH })).json() as any
  assert.equal(after.databases.find((d: any) => d.name === 'app').paused, true)
  assert.equal((await fetch(`${base}/api/resume?db=app`, { method: 'POST', headers: AUTH })).status, 200)
  assert.equal(tp.rt.pools.isPaused('app'), false)
})

test('without http_token, reads are open and the snapshot says actions are off', { timeout: 30_000 }, async (t) => {
  const httpPort = await freePort()
  await startTidepool(t, pgi, { tidepool: { http_listen_port: httpPort } })
  const r = await fetch(`http://127.0.0.1:${httpPort}/api/dashboard.json`)
  assert.equal(r.status, 200)
  const snap = await r.json() as any
  assert.equal(snap.actions, false)
  assert.equal(snap.state.ready, 'ready')
})

/** A GET with a Host header of our choosing (fetch may not set one). */
function getWithHost(port: number, path: string, host: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { ...headers, Host: host } }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', reject)
  })
}

test('without http_token, the page and /api answer only to an address, localhost or http_allowed_hosts (DNS rebinding)', { timeout: 30_000 }, async (t) => {
  const httpPort = await freePort()
  await startTidepool(t, pgi, { tidepool: { http_listen_port: httpPort, http_allowed_hosts: 'pooler.internal' } })
  assert.equal(await getWithHost(httpPort, '/api/pools.json', 'attacker.example'), 421)
  assert.equal(await getWithHost(httpPort, '/', `attacker.example:${httpPort}`), 421)
  assert.equal(await getWithHost(httpPort, '/api/pools.json', `127.0.0.1:${httpPort}`), 200)
  assert.equal(await getWithHost(httpPort, '/api/pools.json', `localhost:${httpPort}`), 200)
  assert.equal(await getWithHost(httpPort, '/api/pools.json', `[::1]:${httpPort}`), 200)
  assert.equal(await getWithHost(httpPort, '/api/pools.json', `Pooler.Internal:${httpPort}`), 200)
  assert.equal(await getWithHost(httpPort, '/metrics', 'attacker.example'), 200, 'scrapers and health checks are not affected')
})

test('with http_token set, any Host may read with the token: the token is the guard', { timeout: 30_000 }, async (t) => {
  const httpPort = await freePort()
  await startTidepool(t, pgi, { tidepool: { http_listen_port: httpPort, http_token: TOKEN } })
  assert.equal(await getWithHost(httpPort, '/api/pools.json', 'pooler.example', AUTH), 200)
  assert.equal(await getWithHost(httpPort, '/api/pools.json', 'pooler.example'), 401)
})
