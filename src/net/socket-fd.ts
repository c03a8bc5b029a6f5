// A socket's file descriptor, for SHOW FDS and SHOW SOCKETS. Node exposes it only on the
// internal handle, so this is the one place that reaches in (with stopReadingNow, and the
// listening-handle helpers of an online restart with workers, for the same reason).

import fs from 'node:fs'
import net from 'node:net'

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

/** A listening socket's own libuv handle, to send to another process unlistened (online restart with workers). */
type RawHandle = { fd?: unknown; close: () => void }
type ServerInternals = net.Server & { _handle: RawHandle | null; _pipeName?: string; _listen2: (address: null, port: number, addressType: number, backlog: number) => void }

/**
 * The libuv handle of a listening server, or null where it has none of its own (node:cluster's
 * round-robin gives a worker a stand-in). Sent as it is, a handle arrives unlistened: a process
 * that only passes it on (a primary) never accepts on it, where a net.Server would start to.
 */
export function listeningHandleOf(server: net.Server): object | null {
  const h = (server as ServerInternals)._handle
  return h !== null && h !== undefined && typeof h.fd === 'number' && h.fd >= 0 ? h : null
}

/**
 * A server accepting on a handle another process sent (listeningHandleOf). net.Server.listen(handle)
 * would send a unix socket's descriptor to node:cluster's primary in a worker; this listens on it
 * here, as cluster itself does with the handle its primary shares.
 */
export function serverFromHandle(handle: object, backlog: number, pipeName: string | null): net.Server {
  const server = new net.Server() as ServerInternals
  server._handle = handle as RawHandle
  if (pipeName !== null) server._pipeName = pipeName
  server._listen2(null, -1, -1, backlog)
  return server
}

/**
 * Stops accepting on this process's copy of a listening socket and tells nobody: under
 * node:cluster, close() would tell the primary, which then closes its own copy, and a primary that
 * bound the unix socket removes its file, which the new pooler serves.
 */
export function closeQuietly(server: net.Server): void {
  const s = server as ServerInternals
  const h = s._handle
  if (h === null || h === undefined) return
  s._handle = null
  ;(Object.getPrototypeOf(h) as RawHandle).close.call(h)
}

/** The kernel's id of the socket behind a descriptor (several processes' copies share it), or null off Linux. */
export function socketInode(fd: number): string | null {
  try {
    return /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`))?.[1] ?? null
  } catch {
    return null
  }
}
