// Client-side password logins (auth_type plain and md5) against the secret from auth_file.
// An unknown user gets the same request and the same failure as a wrong password, so user names
// cannot be probed. Secrets are compared in constant time and never logged.
// Must not: tell the caller *why* a check failed beyond true/false.

import { randomBytes, timingSafeEqual } from 'node:crypto'
import { isMd5Hash, md5hex } from './secrets.ts'
import * as build from '../protocol/build.ts'

export interface PasswordCheck {
  readonly method: 'plain' | 'md5'
  readonly user: string
  /** Stored secret: plain text or 'md5' + 32 hex; null for an unknown user (the check always fails). */
  readonly secret: string | null
  readonly salt: Buffer
  readonly request: Buffer
}

export function passwordRequest(method: 'plain' | 'md5', user: string, secret: string | null): PasswordCheck {
  const salt = randomBytes(4)
  const request = method === 'md5' ? build.authenticationMd5Password(salt) : build.authenticationCleartextPassword()
  return { method, user, secret, salt, request }
}


function equalSecret(a: string, b: string): boolean {
  const ab = Buffer.from(a)
  const bb = Buffer.from(b)
  // Compare against itself on a length mismatch so the time spent does not depend on the secret.
  return timingSafeEqual(ab, ab.length === bb.length ? bb : ab) && ab.length === bb.length
}

/** Checks a PasswordMessage body (buf[start, end) holds the NUL-terminated password text). */
export function checkClientPassword(check: PasswordCheck, buf: Buffer, start: number, end: number): boolean {
  const nul = buf.indexOf(0, start)
  const given = buf.toString('utf8', start, nul >= start && nul < end ? nul : end)
  const secret = check.secret ?? '\u0000no-such-user'
  if (check.method === 'plain') {
    // A stored md5 hash cannot check a plain password except by hashing it the same way.
    return isMd5Hash(secret) ? equalSecret('md5' + md5hex(given, check.user), secret) : equalSecret(given, secret)
  }
  const inner = isMd5Hash(secret) ? secret.slice(3) : md5hex(secret, check.user)
  const expected = 'md5' + md5hex(inner, check.salt)
  return equalSecret(given, expected) && check.secret !== null
}
