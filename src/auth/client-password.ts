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

/** The password text of a PasswordMessage body (buf[start, end) holds it NUL-terminated). */
export function passwordText(buf: Buffer, start: number, end: number): string {
  const nul = buf.indexOf(0, start)
  return buf.toString('utf8', start, nul >= start && nul < end ? nul : end)
}

/**
 * Checks a PasswordMessage body. Null when it matches, else why not (for the log only). An empty
 * password never matches, sent or stored: PostgreSQL refuses to store one and refuses one sent
 * in clear ("empty password returned by client"), and PgBouncer refuses both.
 */
export function clientPasswordMismatch(check: PasswordCheck, buf: Buffer, start: number, end: number): string | null {
  const given = passwordText(buf, start, end)
  const secret = check.secret ?? '\u0000no-such-user'
  let isMatch: boolean
  if (check.method === 'plain') {
    // A stored md5 hash cannot check a plain password except by hashing it the same way.
    isMatch = isMd5Hash(secret) ? equalSecret('md5' + md5hex(given, check.user), secret) : equalSecret(given, secret)
  } else {
    const inner = isMd5Hash(secret) ? secret.slice(3) : md5hex(secret, check.user)
    isMatch = equalSecret(given, 'md5' + md5hex(inner, check.salt))
  }
  if (check.secret === null) return 'no such user'
  if (check.secret === '') return 'the stored password is empty'
  if (check.method === 'plain' && given === '') return 'empty password returned by client'
  return isMatch ? null : 'wrong password'
}
