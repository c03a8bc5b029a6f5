// The socket handlers every client connection shares. Each is one function for all clients that
// finds its connection through a symbol on the socket: four closures per client cost measurable
// memory with thousands of idle clients (docs/architecture.md, "An idle client costs ...").
// Must not: hold per-client state.

import type net from 'node:net'
import { readIntoOwnBuffer } from '../net/own-buffer-reads.ts'

/** What the shared handlers call on the connection that owns a socket. */
export interface SocketOwner {
  onData(chunk: Buffer): void
  /** Bytes of the last own-buffer read (see readOwnBuffer). */
  lastReadLength: number
  close(reason: string): void
  onClientDrain(): void
}

const OWNER = Symbol('tidepool.client')
type OwnedSocket = net.Socket & { [OWNER]: SocketOwner }

/** `owner` reads `socket` from now on: data, errors, close and drain go to it. */
export function attachClientSocket(socket: net.Socket, owner: SocketOwner): void {
  ;(socket as OwnedSocket)[OWNER] = owner
  socket.on('data', onSocketData)
  socket.on('error', onSocketError)
  socket.on('close', onSocketClose)
  socket.on('drain', onSocketDrain)
}

/** The socket leaves this process (an online restart hands it over): nothing here reacts to it any more. */
export function detachClientSocket(socket: net.Socket): void {
  socket.removeListener('data', onSocketData)
  socket.removeListener('error', onSocketError)
  socket.removeListener('close', onSocketClose)
  socket.removeListener('drain', onSocketDrain)
  socket.on('error', () => {}) // until the handle is gone: an error now is the new owner's to see
}

/** A socket now wrapped by TLS: its plaintext reads and drains belong to the TLS socket from here on. */
export function detachClientReads(socket: net.Socket): void {
  socket.removeListener('data', onSocketData)
  socket.removeListener('drain', onSocketDrain)
}

/**
 * `socket`'s reads go into the buffers `buffer` hands out instead of a new Buffer per read
 * (measurably less CPU per transaction); false where this Node.js has no way to, and reads stay
 * 'data' events. Only for a plain socket between reads, before any TLS layer could take it.
 */
export function readOwnBuffer(socket: net.Socket, buffer: () => Buffer): boolean {
  return readIntoOwnBuffer(socket, { buffer, callback: onSocketOwnRead })
}

function onSocketOwnRead(this: net.Socket, n: number, buf: Uint8Array): boolean {
  const owner = (this as OwnedSocket)[OWNER]
  owner.lastReadLength = n
  owner.onData((buf as Buffer).subarray(0, n))
  return true
}

function onSocketData(this: OwnedSocket, chunk: Buffer): void {
  this[OWNER].onData(chunk)
}
function onSocketError(this: OwnedSocket, err: Error): void {
  this[OWNER].close(`client socket error: ${err.message}`)
}
function onSocketClose(this: OwnedSocket): void {
  this[OWNER].close('client close request')
}
function onSocketDrain(this: OwnedSocket): void {
  this[OWNER].onClientDrain()
}
