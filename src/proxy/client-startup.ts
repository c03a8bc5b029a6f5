// A client's first bytes, before any login: SSLRequest, GSSENCRequest, direct TLS (PostgreSQL 17
// sslnegotiation=direct), CancelRequest, and the StartupMessage, whose parameters begin the login
// (client-login.ts). One ClientStartup per connection, dropped once the StartupMessage arrived.
// Must not: keep anything past the startup packet; bytes after it go back to the client's phase dispatch.

import type net from 'node:net'
import type tls from 'node:tls'
import { acceptClientTls, clientCertError, isAlpnPostgres, type ClientTls } from '../net/tls.ts'
import { MAX_STARTUP_PACKET_LENGTH, StartupCode } from '../protocol/codes.ts'
import * as build from '../protocol/build.ts'
import { parseStartupPacket, startupPacketLength, unsupportedProtocol } from '../protocol/startup.ts'
import { ClientErrors, type ClientFailure } from '../protocol/client-errors.ts'
import type { LogSubject } from '../observe/log.ts'
import type { ProxyContext } from './context.ts'
import { attachClientSocket, detachClientReads, type SocketOwner } from './client-socket.ts'
import { cancelTimeoutMs } from './cancel.ts'

/** What the startup phase needs of its client connection (ClientConn implements it). */
export interface StartupClient extends SocketOwner, LogSubject {
  socket: net.Socket
  isTls: boolean
  /** A unix socket connection: no TLS there (the OS already vouches for the path), as in PgBouncer. */
  readonly isUnix: boolean
  readonly ctx: ProxyContext
  readonly isClosed: boolean
  /** Still in the startup phase: the next packet is a startup packet. */
  readonly isStarting: boolean
  fail(err: ClientFailure): void
  close(reason: string, isQuiet?: boolean): void
  /** A StartupMessage arrived: the login begins with its parameters. */
  onStartupParams(params: Map<string, string>): void
}

/** The answer to an SSLRequest or GSSENCRequest we do not take: a Buffer, so no string is encoded per login. */
const NO = Buffer.from('N')

/** The content type byte of a TLS handshake record, the first byte a ClientHello sends. */
const TLS_HANDSHAKE_RECORD = 0x16

export class ClientStartup {
  /** Bytes of a startup packet not yet complete. */
  private buf: Buffer | null = null
  /** Nothing read from the socket yet: the first byte tells a direct TLS handshake from a startup packet. */
  private isFirstRead = true
  /** TLS began with the client's ClientHello (PostgreSQL 17 sslnegotiation=direct), not after SSLRequest. */
  private isDirectTls = false
  /** Set while a startup chunk still has bytes after the packet being handled. */
  private hasBytesAfterPacket = false
  /**
   * An SSLRequest, or a GSSENCRequest, was answered. As in PostgreSQL's ProcessStartupPacket each
   * is answered once (after a refused one the client may ask for the other); a repeat is read as a
   * startup packet of protocol 1234.5679 and refused, so a client cannot make us write a byte
   * for every 8 it sends.
   */
  private isSslDone = false
  private isGssDone = false

  constructor(private readonly client: StartupClient) {}

  onData(chunk: Buffer): void {
    const c = this.client
    if (this.isFirstRead) {
      this.isFirstRead = false
      // 0x16 opens a TLS handshake record; no startup packet can start with it (its length would
      // be hundreds of megabytes), so this is a client doing direct TLS.
      if (chunk[0] === TLS_HANDSHAKE_RECORD) return this.startDirectTls(chunk)
    }
    if (this.isDirectTls && !isAlpnPostgres(c.socket as tls.TLSSocket)) return this.refuseDirectTlsWithoutAlpn()
    let buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk])
    this.buf = null
    while (c.isStarting) {
      const len = startupPacketLength(buf, 0)
      if (len === null) break
      if (len < 8 || len > MAX_STARTUP_PACKET_LENGTH) {
        c.fail(ClientErrors.protocolViolation(`invalid startup packet length ${len}`))
        return
      }
      if (buf.length < len) break
      const packet = buf.subarray(0, len)
      buf = buf.subarray(len)
      this.hasBytesAfterPacket = buf.length > 0
      this.onPacket(packet)
    }
    if (buf.length > 0 && c.isStarting) this.buf = Buffer.from(buf)
    else if (buf.length > 0 && !c.isClosed) c.onData(buf)
  }

  private onPacket(packet: Buffer): void {
    const c = this.client
    const p = parseStartupPacket(packet)
    switch (p.kind) {
      case 'ssl': {
        if (this.isSslDone) return c.fail(ClientErrors.protocolViolation(unsupportedProtocol(StartupCode.SSLRequest)))
        this.isSslDone = true
        const tlsConf = c.ctx.clientTls
        if (tlsConf === null || c.isTls || c.isUnix) {
          c.socket.write(NO)
          return
        }
        if (this.buf !== null || this.hasBytesAfterPacket) {
          // Plain-text bytes sent before our answer would be read as part of the TLS stream.
          c.fail(ClientErrors.protocolViolation('received unencrypted data after SSL request'))
          return
        }
        c.socket.write('S')
        // Inside TLS no GSS encryption can be asked for either (PostgreSQL: gss_done after 'S').
        this.isGssDone = true
        this.upgradeToTls(tlsConf)
        return
      }
      case 'gssenc':
        if (this.isGssDone) return c.fail(ClientErrors.protocolViolation(unsupportedProtocol(StartupCode.GSSENCRequest)))
        this.isGssDone = true
        // No GSS encryption: 'N' tells the client to go on (it may ask for TLS next).
        c.socket.write(NO)
        return
      case 'cancel': {
        const what = c.ctx.cancels.cancel(p.pid, p.secret, cancelTimeoutMs(c.ctx.settings))
        c.ctx.log.debug('cancel.received', c, `cancel request: ${what}`)
        c.close('cancel request handled', true)
        return
      }
      case 'invalid':
        c.fail(ClientErrors.protocolViolation(p.reason))
        return
      case 'startup':
        // A client asking for a newer 3.x or for protocol options learns what we speak (3.0, no
        // options) and may go on, as PostgreSQL answers it.
        if (p.minor > 0 || p.unrecognized.length > 0) c.socket.write(build.negotiateProtocolVersion(0, p.unrecognized))
        c.onStartupParams(p.params)
        return
    }
  }

  /**
   * After 'S', or at once for direct TLS: the same TCP connection carries TLS from here on and the
   * client sends its startup packet inside it. `firstBytes`: a direct ClientHello already read.
   */
  private upgradeToTls(conf: ClientTls, firstBytes: Buffer | null = null): void {
    const c = this.client
    const raw = c.socket
    detachClientReads(raw)
    const secure = acceptClientTls(raw, conf, firstBytes)
    attachClientSocket(secure, c)
    secure.once('secure', () => {
      // tls.Server rejects unverified client certificates in its own 'secure' handler; a
      // TLSSocket made by hand gets no such check, so do the same one here.
      const certError = conf.requireClientCert ? clientCertError(secure) : null
      if (certError !== null) c.fail(ClientErrors.protocolViolation(`client certificate rejected: ${certError}`))
      else if (this.isDirectTls && !isAlpnPostgres(secure)) this.refuseDirectTlsWithoutAlpn()
    })
    c.socket = secure
    c.isTls = true
  }

  private startDirectTls(chunk: Buffer): void {
    const c = this.client
    const conf = c.ctx.clientTls
    if (conf === null || c.isUnix) {
      // Nothing we could say would reach a client that expects TLS records: just close.
      const why = c.isUnix ? 'TLS is not offered on the unix socket' : 'client TLS is not configured (client_tls_sslmode disable)'
      c.ctx.log.warn('client.tls_refused', c, `direct TLS handshake refused: ${why}`)
      return c.close(c.isUnix ? 'direct TLS on the unix socket' : 'direct TLS without client TLS configured', true)
    }
    this.isDirectTls = true
    this.upgradeToTls(conf, chunk)
  }

  /** PostgreSQL 17 takes direct TLS only with ALPN "postgresql", so a generic TLS client cannot pass for one. */
  private refuseDirectTlsWithoutAlpn(): void {
    const c = this.client
    if (c.isClosed) return
    c.ctx.log.warn('client.tls_refused', c, 'direct TLS handshake without the ALPN protocol "postgresql" refused')
    c.close('direct TLS without ALPN', true)
  }
}
