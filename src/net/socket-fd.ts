// A socket's file descriptor, for SHOW FDS and SHOW SOCKETS. Node exposes it only on the
// internal handle, so this is the one place that reaches in (with stopReadingNow, for the same reason).

import type net from 'node:net'

/** The descriptor, or -1 where there is none (TLS sockets wrap another). */
export function fdOf(socket: net.Socket | net.Server): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd
  return typeof fd === 'number' ? fd : -1
}

/**
 * Stops reading at once, in libuv, not when the stream's buffer next fills as pause() may: a
 * socket about to be handed to another process must not read one more byte here (runtime/takeover.ts).
 */
export function stopReadingNow(socket: net.Socket): void {
  const h = (socket as unknown as { _handle?: { reading?: boolean; readStop?: () => number } | null })._handle
  if (h === null || h === undefined || typeof h.readStop !== 'function') return
  h.reading = false
  h.readStop()
}
