// Where a PostgreSQL "host" points: a value starting with '/' is a unix socket directory, as in
// libpq and pgbouncer.ini, and the socket file in it is named after the port. One copy of that
// rule for server connections, cancel requests and tidepool's own unix listener.
// Must not: set socket options or attach handlers; callers own the socket.

import net from 'node:net'
import { join } from 'node:path'

export function isUnixHost(host: string): boolean {
  return host.startsWith('/')
}

/** PostgreSQL's socket file name in a directory: `.s.PGSQL.<port>`. */
export function socketPath(dir: string, port: number): string {
  return join(dir, `.s.PGSQL.${port}`)
}

/** Connects to a host:port, or to the socket for `port` in the directory `host`. */
export function dial(host: string, port: number, onread?: net.OnReadOpts): net.Socket {
  return isUnixHost(host)
    ? net.connect({ path: socketPath(host, port), onread })
    : net.connect({ host, port, onread })
}
