// A socket's file descriptor, for SHOW FDS and SHOW SOCKETS. Node exposes it only on the
// internal handle, so this is the one place that reaches in.

import type net from 'node:net'

/** The descriptor, or -1 where there is none (TLS sockets wrap another). */
export function fdOf(socket: net.Socket | net.Server): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd
  return typeof fd === 'number' ? fd : -1
}
