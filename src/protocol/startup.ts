// Parsing the untyped packets a client sends first: StartupMessage, SSLRequest, GSSENCRequest,
// CancelRequest. The whole packet (with its length word) is given; PostgreSQL's limits apply
// (at least 8 bytes, at most MAX_STARTUP_PACKET_LENGTH) and its error texts are used.
// Must not: decide policy (which parameters are allowed is the proxy's call).

import { MAX_STARTUP_PACKET_LENGTH, StartupCode } from './codes.ts'

export type StartupPacket =
  | { kind: 'startup'; major: number; minor: number; params: Map<string, string>; unrecognized: string[] }
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number }
  | { kind: 'invalid'; reason: string }

/** The length word of a startup-phase packet, or null while fewer than 4 bytes have arrived. */
export function startupPacketLength(buf: Buffer, offset: number): number | null {
  return buf.length - offset >= 4 ? buf.readInt32BE(offset) : null
}

/** PostgreSQL's text for a startup packet whose version word is not 3.x (a repeated SSLRequest included). */
export function unsupportedProtocol(code: number): string {
  return `unsupported frontend protocol ${code >>> 16}.${code & 0xffff}: server supports 3.0 to 3.0`
}

export function parseStartupPacket(packet: Buffer): StartupPacket {
  if (packet.length < 8) return { kind: 'invalid', reason: 'invalid length of startup packet' }
  const len = packet.readInt32BE(0)
  if (len !== packet.length || len < 8 || len > MAX_STARTUP_PACKET_LENGTH) return { kind: 'invalid', reason: 'invalid length of startup packet' }
  const code = packet.readInt32BE(4)
  if (code === StartupCode.SSLRequest) return len === 8 ? { kind: 'ssl' } : { kind: 'invalid', reason: 'invalid length of SSL request packet' }
  if (code === StartupCode.GSSENCRequest) return len === 8 ? { kind: 'gssenc' } : { kind: 'invalid', reason: 'invalid length of GSSENC request packet' }
  if (code === StartupCode.CancelRequest) {
    // Protocol 3.0 keys are 4 bytes; 3.2's longer keys are not issued by tidepool, so only 16 bytes is valid.
    if (len !== 16) return { kind: 'invalid', reason: 'invalid length of cancel request packet' }
    return { kind: 'cancel', pid: packet.readInt32BE(8), secret: packet.readInt32BE(12) }
  }
  const major = code >>> 16
  const minor = code & 0xffff
  if (major !== 3) return { kind: 'invalid', reason: unsupportedProtocol(code) }
  const params = new Map<string, string>()
  const unrecognized: string[] = []
  let pos = 8
  for (;;) {
    if (pos >= len) return { kind: 'invalid', reason: 'invalid startup packet layout: expected terminator as last byte' }
    if (packet[pos] === 0) {
      if (pos !== len - 1) return { kind: 'invalid', reason: 'invalid startup packet layout: expected terminator as last byte' }
      break
    }
    const nameEnd = packet.indexOf(0, pos)
    if (nameEnd < 0 || nameEnd >= len - 1) return { kind: 'invalid', reason: 'invalid startup packet layout: expected terminator as last byte' }
    const valueEnd = packet.indexOf(0, nameEnd + 1)
    if (valueEnd < 0 || valueEnd >= len) return { kind: 'invalid', reason: 'invalid startup packet layout: expected terminator as last byte' }
    const name = packet.toString('utf8', pos, nameEnd)
    const value = packet.toString('utf8', nameEnd + 1, valueEnd)
    if (name.startsWith('_pq_.')) unrecognized.push(name)
    else params.set(name, value)
    pos = valueEnd + 1
  }
  if (!params.has('user') || params.get('user') === '') {
    return { kind: 'invalid', reason: 'no PostgreSQL user name specified in startup packet' }
  }
  return { kind: 'startup', major, minor, params, unrecognized }
}

/** PostgreSQL's isspace() in the C locale: what separates the words of `options`. */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d)
}

/**
 * The `options` startup parameter (libpq's `options`, PGOPTIONS) as PgBouncer 1.20+ reads it: a
 * run of `-c name=value`, `-cname=value` or `--name=value`, words split at white space, a backslash
 * taking the next character as it is. Returns the settings in order, or null for anything else
 * (another switch such as `-d`, a word without `=`). Trailing white space is allowed, which
 * PgBouncer refuses.
 */
export function parseStartupOptions(options: string): Array<[string, string]> | null {
  const out: Array<[string, string]> = []
  const n = options.length
  let i = 0
  for (;;) {
    while (i < n && isSpace(options.charCodeAt(i))) i++
    if (i >= n) return out
    if (options.startsWith('-c', i)) {
      i += 2
      while (i < n && isSpace(options.charCodeAt(i))) i++
    } else if (options.startsWith('--', i)) {
      i += 2
    } else {
      return null
    }
    let word = ''
    for (; i < n && !isSpace(options.charCodeAt(i)); i++) {
      if (options.charCodeAt(i) === 0x5c) i++ // a backslash: the next character, white space or not, is part of the word
      if (i < n) word += options[i]
    }
    const eq = word.indexOf('=')
    if (eq < 0) return null
    out.push([word.slice(0, eq), word.slice(eq + 1)])
  }
}
