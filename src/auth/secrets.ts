// The primitives shared by every login flow: recognising stored secret formats, and the hashes
// and message parsing SCRAM uses on both sides (tidepool as client of a server, and as server
// for a client). One copy, so the two SCRAM sides cannot drift apart.
// Must not: log or keep secrets.

import { createHash, createHmac, pbkdf2Sync } from 'node:crypto'
import { TidepoolError } from '../util/errors.ts'
import { scramPasswordBytes } from './saslprep.ts'

/** PostgreSQL's md5 secret: 'md5' + 32 lowercase hex digits. */
export function isMd5Hash(s: string): boolean {
  return s.length === 35 && s.startsWith('md5') && /^[0-9a-f]{32}$/.test(s.slice(3))
}

/** A SCRAM verifier is not a password: usable only as SCRAM keys. */
export function isScramVerifier(s: string): boolean {
  return s.startsWith('SCRAM-SHA-256$')
}

export function md5hex(...parts: Array<string | Buffer>): string {
  const h = createHash('md5')
  for (const p of parts) h.update(p)
  return h.digest('hex')
}

export const hmac = (key: Buffer, data: string | Buffer): Buffer => createHmac('sha256', key).update(data).digest()
export const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest()

/**
 * SCRAM's SaltedPassword (RFC 5802): every plain password turned into SCRAM keys, on either side,
 * comes through here, so tidepool prepares passwords exactly as PostgreSQL and libpq do.
 */
export function scramSaltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(scramPasswordBytes(password), salt, iterations, 32, 'sha256')
}

export function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length)
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i]
  return out
}

/** SCRAM's `k=v,k=v` attribute lists (RFC 5802 §5). */
export function parseScramAttributes(s: string): Map<string, string> {
  const m = new Map<string, string>()
  for (const part of s.split(',')) {
    if (part.length < 2 || part[1] !== '=') throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'malformed SCRAM message')
    m.set(part[0], part.slice(2))
  }
  return m
}
