// TLS contexts built from the client_tls_* settings. Built at start and on every RELOAD, so new
// certificates take effect for new connections while existing ones keep theirs.
// client_tls_protocols takes PgBouncer's words: secure (TLS 1.2 and 1.3), all, legacy, or a comma
// list such as "tlsv1.2,tlsv1.3". client_tls_ciphers' keywords (default, secure, fast, normal,
// all) keep Node's defaults; anything else is an OpenSSL cipher string. client/server_tls13_ciphers
// name TLS 1.3 suites (TLS_*); client_tls_ecdhcurve and client_tls_dheparams choose the key
// exchange. Values Node cannot honour ('none' curve, 'legacy' DH) are refused, never ignored.
// Must not: log key material; a bad file is a TidepoolError('TP_CONFIG_INVALID') naming the setting.

import tls from 'node:tls'
import net from 'node:net'
import fs from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import type { Config } from '../config/types.ts'
import { TidepoolError } from '../util/errors.ts'
import { serverNameError } from './server-identity.ts'

export interface ClientTls {
  readonly context: tls.SecureContext
  /** verify-ca and verify-full: the client must present a certificate signed by client_tls_ca_file. */
  readonly requireClientCert: boolean
  /** client_tls_ca_file is set: every TLS client is asked for a certificate, which hba's
   *  clientcert and cert lines then need verified; only verify-ca and verify-full refuse a client without one. */
  readonly requestClientCert: boolean
  /** require and stronger: a client that does not ask for TLS is refused. */
  readonly isRequired: boolean
}

const VERSIONS: Record<string, tls.SecureVersion> = { 'tlsv1': 'TLSv1', 'tlsv1.0': 'TLSv1', 'tlsv1.1': 'TLSv1.1', 'tlsv1.2': 'TLSv1.2', 'tlsv1.3': 'TLSv1.3' }
const ORDER: tls.SecureVersion[] = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']

export function protocolRange(name: string, value: string): { minVersion: tls.SecureVersion; maxVersion: tls.SecureVersion } {
  const v = value.trim().toLowerCase()
  if (v === 'secure' || v === 'default' || v === '') return { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3' }
  if (v === 'all' || v === 'legacy') return { minVersion: 'TLSv1', maxVersion: 'TLSv1.3' }
  const picked = v.split(',').map((p) => VERSIONS[p.trim()])
  if (picked.some((p) => p === undefined)) throw new TidepoolError('TP_CONFIG_INVALID', `${name}: unknown protocol in "${value}"`)
  const idx = picked.map((p) => ORDER.indexOf(p as tls.SecureVersion))
  return { minVersion: ORDER[Math.min(...idx)], maxVersion: ORDER[Math.max(...idx)] }
}

/** PgBouncer's cipher keywords keep Node's defaults (undefined); anything else is an OpenSSL cipher string. */
function cipherList(value: string): string | undefined {
  return ['', 'default', 'secure', 'fast', 'normal', 'all'].includes(value.trim().toLowerCase()) ? undefined : value
}

/**
 * Node's one `ciphers` option for *_tls_ciphers (TLS 1.2 and older) and *_tls13_ciphers (TLS 1.3
 * suites, TLS_*). Node reads the TLS_ entries as the TLS 1.3 list, so each half not set keeps
 * Node's default half: a 1.2 list alone must not turn TLS 1.3 off. undefined: both default.
 */
export function ciphersOption(prefix: 'client' | 'server', tls12: string, tls13: string): string | undefined {
  const legacy = cipherList(tls12)
  const suites = tls13.split(':').map((x) => x.trim()).filter((x) => x !== '')
  if (legacy === undefined && suites.length === 0) return undefined
  const bad = suites.find((x) => !x.startsWith('TLS_'))
  if (bad !== undefined) throw new TidepoolError('TP_CONFIG_INVALID', `${prefix}_tls13_ciphers: "${bad}" is not a TLS 1.3 cipher suite (they are named TLS_*, e.g. TLS_AES_256_GCM_SHA384)`)
  const defaults = tls.DEFAULT_CIPHERS.split(':')
  const l13 = suites.length > 0 ? suites : defaults.filter((x) => x.startsWith('TLS_'))
  return [...l13, legacy ?? defaults.filter((x) => !x.startsWith('TLS_')).join(':')].join(':')
}

/** client_tls_ecdhcurve and client_tls_dheparams as Node's ecdhCurve and dhparam options. */
function keyExchangeOptions(s: Config['settings']): Pick<tls.SecureContextOptions, 'ecdhCurve' | 'dhparam'> {
  const curve = s.client_tls_ecdhcurve.trim()
  if (curve.toLowerCase() === 'none') {
    throw new TidepoolError('TP_CONFIG_INVALID', 'client_tls_ecdhcurve none is not supported: Node.js cannot turn ECDH off (TLS 1.3 needs it); use auto or a curve name')
  }
  const dh = s.client_tls_dheparams.trim().toLowerCase()
  if (dh !== 'none' && dh !== 'auto') {
    throw new TidepoolError('TP_CONFIG_INVALID', `client_tls_dheparams ${s.client_tls_dheparams}: only none and auto are supported (legacy's 1024-bit group is refused by OpenSSL 3)`)
  }
  // Without dhparam Node offers no DHE suites, which is PgBouncer's none; auto is OpenSSL's built-in group.
  return { ecdhCurve: curve === '' || curve.toLowerCase() === 'auto' ? 'auto' : curve, ...(dh === 'auto' ? { dhparam: 'auto' } : {}) }
}

function readSetting(config: Config, name: string, path: string): Buffer {
  const full = isAbsolute(path) ? path : resolve(dirname(config.file), path)
  try {
    return fs.readFileSync(full)
  } catch (err) {
    throw new TidepoolError('TP_CONFIG_INVALID', `${name}: cannot read ${full}: ${(err as Error).message}`)
  }
}

/** null when client_tls_sslmode is disable. */
export function clientTlsFromConfig(config: Config): ClientTls | null {
  const s = config.settings
  if (s.client_tls_sslmode === 'disable') return null
  const requireClientCert = s.client_tls_sslmode === 'verify-ca' || s.client_tls_sslmode === 'verify-full'
  const options: tls.SecureContextOptions = {
    ...keyExchangeOptions(s),
    key: readSetting(config, 'client_tls_key_file', s.client_tls_key_file),
    cert: readSetting(config, 'client_tls_cert_file', s.client_tls_cert_file),
    ...protocolRange('client_tls_protocols', s.client_tls_protocols),
  }
  if (s.client_tls_ca_file !== '') options.ca = readSetting(config, 'client_tls_ca_file', s.client_tls_ca_file)
  else if (requireClientCert) throw new TidepoolError('TP_CONFIG_INVALID', `client_tls_sslmode ${s.client_tls_sslmode} needs client_tls_ca_file`)
  options.ciphers = ciphersOption('client', s.client_tls_ciphers, s.client_tls13_ciphers)
  let context: tls.SecureContext
  try {
    context = tls.createSecureContext(options)
  } catch (err) {
    throw new TidepoolError('TP_CONFIG_INVALID', `client TLS: ${(err as Error).message}`)
  }
  return {
    context, requireClientCert, requestClientCert: s.client_tls_ca_file !== '',
    isRequired: s.client_tls_sslmode === 'require' || requireClientCert,
  }
}

/** The ALPN protocol name PostgreSQL 17 registered; a direct TLS client must offer it. */
export const PG_ALPN = 'postgresql'

/**
 * The server side of TLS on an accepted client socket, after 'S' or for a direct handshake.
 * Bytes already read from `raw` (a direct ClientHello) go in `firstBytes`: they are put back so
 * the TLS layer reads them first. A client that offers ALPN without "postgresql" is refused in
 * the handshake, as PostgreSQL does; one that offers none is allowed here (see isAlpnPostgres).
 */
export function acceptClientTls(raw: net.Socket, conf: ClientTls, firstBytes: Buffer | null = null): tls.TLSSocket {
  if (firstBytes !== null) {
    // Node's TLS wrapper drains what the socket has buffered before it reads the handle itself,
    // but only from a paused socket; a flowing one would hand the bytes to nobody.
    raw.pause()
    raw.unshift(firstBytes)
  }
  return new tls.TLSSocket(raw, {
    isServer: true, secureContext: conf.context, ALPNProtocols: [PG_ALPN],
    requestCert: conf.requestClientCert || conf.requireClientCert, rejectUnauthorized: conf.requireClientCert,
  })
}

export function isAlpnPostgres(socket: tls.TLSSocket): boolean {
  return socket.alpnProtocol === PG_ALPN
}

/**
 * Why the client's certificate does not count, or null when it was verified against
 * client_tls_ca_file. Node checks client certificates only inside tls.Server, and our sockets are
 * wrapped by hand, so the verdict is read from the handshake here.
 */
export function clientCertError(socket: tls.TLSSocket): string | null {
  const handle = (socket as unknown as { ssl: { verifyError(): (Error & { code?: string }) | null } | null }).ssl
  if (handle === null) return 'no TLS handle'
  const err = handle.verifyError()
  if (err !== null) return err.code ?? err.message
  const cert = socket.getPeerCertificate()
  return cert === null || Object.keys(cert).length === 0 ? 'no client certificate' : null
}

/** The subject CN of a verified client certificate; null without one. */
export function verifiedClientCn(socket: tls.TLSSocket): string | null {
  if (clientCertError(socket) !== null) return null
  const cn = socket.getPeerCertificate().subject?.CN as string | string[] | undefined
  // A subject with several CNs names no single user.
  return typeof cn === 'string' ? cn : null
}

export interface ServerTls {
  readonly mode: 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full'
  /** Options for tls.connect, without socket, servername and the host-name check (connectServerTls adds them). */
  readonly options: tls.ConnectionOptions
  /** require and stronger: a server that answers 'N' is not used. */
  readonly isRequired: boolean
}

/** null when server_tls_sslmode is disable. */
export function serverTlsFromConfig(config: Config): ServerTls | null {
  const s = config.settings
  const mode = s.server_tls_sslmode
  if (mode === 'disable') return null
  const verify = mode === 'verify-ca' || mode === 'verify-full'
  const options: tls.ConnectionOptions = { ...protocolRange('server_tls_protocols', s.server_tls_protocols), rejectUnauthorized: verify }
  // Without server_tls_ca_file, verify-ca and verify-full trust Node's root certificates, as
  // PgBouncer trusts the system's default CA bundle: the order of SETs never matters.
  if (s.server_tls_ca_file !== '') options.ca = readSetting(config, 'server_tls_ca_file', s.server_tls_ca_file)
  if (s.server_tls_cert_file !== '') options.cert = readSetting(config, 'server_tls_cert_file', s.server_tls_cert_file)
  if (s.server_tls_key_file !== '') options.key = readSetting(config, 'server_tls_key_file', s.server_tls_key_file)
  options.ciphers = ciphersOption('server', s.server_tls_ciphers, s.server_tls13_ciphers)
  return { mode, options, isRequired: mode === 'require' || verify }
}

/**
 * Whether new server connections would be made as before (PgBouncer's tls_change_requires_reconnect):
 * same sslmode, same protocols and ciphers, same CA, certificate and key contents. When not, every
 * server connection made with the old setup retires.
 */
export function isSameServerTls(a: ServerTls | null, b: ServerTls | null): boolean {
  if (a === null || b === null) return a === b
  if (a.mode !== b.mode) return false
  const x = a.options as Record<string, unknown>
  const y = b.options as Record<string, unknown>
  for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) {
    const u = x[k]
    const v = y[k]
    if (Buffer.isBuffer(u) && Buffer.isBuffer(v) ? !u.equals(v) : u !== v) return false
  }
  return true
}

/**
 * TLS on a server socket after the server's 'S', for pooled connections and auth_query/health-check
 * connections alike. SNI names a host, never an address (libpq's sslsni; RFC 6066 allows no IP
 * literal). verify-full checks the certificate against `host` itself (server-identity.ts): Node's
 * default check would fall back to "localhost" when no servername is sent.
 */
export function connectServerTls(socket: net.Socket, conf: ServerTls, host: string): tls.TLSSocket {
  return tls.connect({
    ...conf.options, socket,
    servername: net.isIP(host) === 0 ? host : undefined,
    // Only verify-full rejects on it (rejectUnauthorized); verify-ca checks the chain alone.
    checkServerIdentity: conf.mode === 'verify-full' ? (_name, cert) => serverNameError(host, cert) : () => undefined,
  })
}
