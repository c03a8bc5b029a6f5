// The primitives shared by every login flow: recognising stored secret formats, and the hashes
// and message parsing SCRAM uses on both sides (tidepool as client of a server, and as server
// for a client). One copy, so the two SCRAM sides cannot drift apart.
// Must not: log or keep secrets.

import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes } from 'node:crypto'
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

/** The two keys SCRAM derives from a SaltedPassword; PBKDF2 is the slow part, the rest is two HMACs. */
export interface DerivedKeys {
  readonly clientKey: Buffer
  readonly serverKey: Buffer
}

/** Derived keys kept, least recently used first out: enough for every user and server of a large config. */
export const SCRAM_KEY_CACHE_MAX = 1024
/**
 * Keyed by an HMAC of (iterations, salt, password) under a per-process key, so the map holds no
 * password text. Promises, so concurrent logins of one user share one PBKDF2.
 */
const keyCache = new Map<string, Promise<DerivedKeys>>()
const CACHE_KEY = randomBytes(32)

function cacheKey(password: string, salt: Buffer, iterations: number): string {
  return createHmac('sha256', CACHE_KEY).update(`${iterations}:${salt.toString('base64')}:`).update(password).digest('base64')
}

/**
 * SCRAM's ClientKey and ServerKey for a password, computed on libuv's threadpool so a large
 * iteration count delays only this login, not every client on the event loop; cached, so a
 * pool's server logins and a plain-text user's client logins pay PBKDF2 once.
 */
export function scramKeys(password: string, salt: Buffer, iterations: number): Promise<DerivedKeys> {
  const key = cacheKey(password, salt, iterations)
  const hit = keyCache.get(key)
  if (hit !== undefined) {
    keyCache.delete(key)
    keyCache.set(key, hit)
    return hit
  }
  const computed = new Promise<DerivedKeys>((resolve, reject) => {
    pbkdf2(scramPasswordBytes(password), salt, iterations, 32, 'sha256', (err, salted) => {
      if (err !== null) return reject(err)
      resolve({ clientKey: hmac(salted, 'Client Key'), serverKey: hmac(salted, 'Server Key') })
    })
  })
  keyCache.set(key, computed)
  if (keyCache.size > SCRAM_KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value as string)
  computed.catch(() => keyCache.delete(key))
  return computed
}

/** Whether scramKeys has (or is computing) this entry: for tests of the cache. */
export function isScramKeyCached(password: string, salt: Buffer, iterations: number): boolean {
  return keyCache.has(cacheKey(password, salt, iterations))
}

/** Per-process key for SCRAM salts tidepool makes up itself: stable for a name within a run, unguessable outside it. */
const SALT_KEY = randomBytes(32)

/**
 * The salt tidepool announces for a user it holds no verifier for: a plain-text secret, or no
 * usable secret at all (unknown user, md5 hash, empty password). The same derivation for both,
 * so a salt that is stable per user and 16 bytes long like PostgreSQL's says nothing about
 * whether the user exists; and a stable salt lets the derived keys be cached.
 */
export function userSalt(user: string): Buffer {
  return hmac(SALT_KEY, user).subarray(0, 16)
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
