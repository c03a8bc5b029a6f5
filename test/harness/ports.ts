// Free TCP ports on loopback for tests and benches.
// The kernel picks the port (listen on 0), so parallel runs on one machine never choose the same
// number by design; the port is free when we return it but not reserved, so callers that bind
// later (PostgreSQL, PgBouncer) must be ready to retry on EADDRINUSE.
// Must not: bind anything but 127.0.0.1.

import { createServer } from 'node:net'

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const address = server.address()
      if (address === null || typeof address === 'string') {
        server.close()
        reject(new Error('freePort: listener has no TCP address'))
        return
      }
      const port = address.port
      server.close((err) => (err ? reject(err) : resolve(port)))
    })
  })
}
