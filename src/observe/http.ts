// The HTTP side: /health (the process answers), /ready (accepting work: 503 while paused or
// shutting down, so a TCP load balancer, keepalived or a Kubernetes probe routes around this node),
// and /metrics (Prometheus text). Off unless http_listen_port is set; loopback by default.
// Must not: accept request bodies (only GET and HEAD are served) or change any state.

import http from 'node:http'
import { renderMetrics, type MetricsSource } from './metrics.ts'

export interface HttpView extends MetricsSource {
  readiness(): { ready: boolean; reason: string }
}

export function startHttp(view: HttpView, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    // Bodies are never read; a client that sends one gets its answer and the connection closes.
    res.setHeader('Connection', 'close')
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('method not allowed\n')
      return
    }
    const path = (req.url ?? '/').split('?')[0]
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
