// The server side of SCRAM-SHA-256 (RFC 5802 / RFC 7677) for clients logging in to tidepool,
// against a stored plain password or a PostgreSQL verifier (SCRAM-SHA-256$iter:salt$StoredKey:ServerKey).
// After a successful exchange the client's ClientKey is known (proof XOR signature), which lets
// tidepool log in to a server holding the same verifier without a plain password, as PgBouncer does.
// An unknown user, or one stored only as an md5 hash, gets a challenge with a salt derived from
// the name, so the exchange looks the same as for a real user and fails only at the proof.
// Over TLS, SCRAM-SHA-256-PLUS is offered too, as PostgreSQL does: the client's channel binding
// data must then be the tls-server-end-point hash of tidepool's certificate, so a man in the middle
// holding another certificate cannot relay the exchange (libpq's channel_binding=require).
// Must not: log or return secrets; every secret comparison is constant-time.

import { randomBytes, timingSafeEqual } from 'node:crypto'
import { hmac, isMd5Hash, parseScramAttributes, scramSaltedPassword, sha256 } from './secrets.ts'
import * as build from '../protocol/build.ts'
import { BodyReader } from '../protocol/reader.ts'
import { TidepoolError } from '../util/errors.ts'
import { CHANNEL_BINDING_TYPE } from '../net/channel-binding.ts'

export const SCRAM_MECHANISM = 'SCRAM-SHA-256'
export const SCRAM_PLUS_MECHANISM = 'SCRAM-SHA-256-PLUS'

export interface ScramKeys {
  readonly iterations: number
  readonly salt: Buffer
  readonly storedKey: Buffer
  readonly serverKey: Buffer
}


/** Parses PostgreSQL's verifier format; null when `secret` is not one. */
export function parseScramVerifier(secret: string): ScramKeys | null {
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(secret)
  if (m === null) return null
  const storedKey = Buffer.from(m[3], 'base64')
  const serverKey = Buffer.from(m[4], 'base64')
  if (storedKey.length !== 32 || serverKey.length !== 32) return null
  return { iterations: Number(m[1]), salt: Buffer.from(m[2], 'base64'), storedKey, serverKey }
}

export function keysFromPassword(password: string, salt: Buffer, iterations: number): ScramKeys {
  const salted = scramSaltedPassword(password, salt, iterations)
  return { iterations, salt, storedKey: sha256(hmac(salted, 'Client Key')), serverKey: hmac(salted, 'Server Key') }
}

/**
 * A plain password checked against a verifier (auth_type plain with a SCRAM secret stored).
 * Returns the ClientKey it proves, for the server login, or null when it does not match.
 */
export function clientKeyIfPasswordMatches(password: string, keys: ScramKeys): Buffer | null {
  const salted = scramSaltedPassword(password, keys.salt, keys.iterations)
  const clientKey = hmac(salted, 'Client Key')
  return timingSafeEqual(sha256(clientKey), keys.storedKey) ? clientKey : null
}

/** Per-process key for fake salts: stable for a name within a run, unguessable outside it. */
const FAKE_SALT_KEY = randomBytes(32)

function fakeKeys(user: string, iterations: number): ScramKeys {
  const salt = hmac(FAKE_SALT_KEY, user).subarray(0, 16)
  return { iterations, salt, storedKey: randomBytes(32), serverKey: randomBytes(32) }
}


export type ScramStep =
  | { kind: 'continue'; send: Buffer }
  | { kind: 'ok'; send: Buffer; clientKey: Buffer }
  | { kind: 'fail' }

/** One client's SCRAM exchange with tidepool as the server. */
export class ScramServerExchange {
  private readonly keys: ScramKeys
  private readonly isReal: boolean
  private clientFirstBare = ''
  private serverFirst = ''
  private nonce = ''
  private gs2Header = ''
  /** tls-server-end-point data of our certificate, when -PLUS was offered. */
  private channelBinding: Buffer | null = null
  /** The client chose -PLUS: its client-final c= carries the binding data. */
  private isBound = false
  private step = 0

  /** `secret`: plain password, SCRAM verifier, or null/md5 hash (the exchange then always fails). */
  constructor(user: string, secret: string | null, iterations: number) {
    const verifier = secret === null ? null : parseScramVerifier(secret)
    const isMd5 = secret !== null && isMd5Hash(secret)
    if (verifier !== null) {
      this.keys = verifier
      this.isReal = true
    } else if (secret !== null && !isMd5) {
      this.keys = keysFromPassword(secret, randomBytes(16), iterations)
      this.isReal = true
    } else {
      this.keys = fakeKeys(user, iterations)
      this.isReal = false
    }
  }

  /**
   * AuthenticationSASL, the first message tidepool sends. `channelBinding`: the tls-server-end-point
   * data of the certificate on this client's TLS connection (null without TLS): -PLUS is offered
   * first then, as PostgreSQL lists it.
   */
  start(channelBinding: Buffer | null = null): Buffer {
    this.channelBinding = channelBinding
    return build.authenticationSasl(channelBinding === null ? [SCRAM_MECHANISM] : [SCRAM_PLUS_MECHANISM, SCRAM_MECHANISM])
  }

  /** Takes a PasswordMessage-type body (SASLInitialResponse, then SASLResponse). */
  onMessage(buf: Buffer, start: number, end: number): ScramStep {
    const r = new BodyReader(buf, start, end)
    if (this.step === 0) {
      const mech = r.cstring()
      const isPlusOffered = this.channelBinding !== null
      if (mech !== SCRAM_MECHANISM && !(mech === SCRAM_PLUS_MECHANISM && isPlusOffered)) {
        throw new TidepoolError('TP_PROTOCOL_VIOLATION', `unsupported SASL mechanism ${JSON.stringify(mech)}`)
      }
      const len = r.int32()
      const clientFirst = (len < 0 ? Buffer.alloc(0) : r.bytes(len)).toString('utf8')
      const m = /^(n|y|p=([^,]*)),(a=[^,]*)?,(.*)$/.exec(clientFirst)
      if (m === null) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'malformed SCRAM client-first-message')
      this.isBound = mech === SCRAM_PLUS_MECHANISM
      checkGs2Flag(m[1], m[2], this.isBound, isPlusOffered)
      this.gs2Header = clientFirst.slice(0, clientFirst.length - m[4].length)
      this.clientFirstBare = m[4]
      const attrs = parseScramAttributes(this.clientFirstBare)
      const cnonce = attrs.get('r')
      if (cnonce === undefined || cnonce === '' || attrs.has('m')) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'malformed SCRAM client-first-message')
      this.nonce = cnonce + randomBytes(18).toString('base64')
      this.serverFirst = `r=${this.nonce},s=${this.keys.salt.toString('base64')},i=${this.keys.iterations}`
      this.step = 1
      return { kind: 'continue', send: build.authenticationSaslContinue(Buffer.from(this.serverFirst)) }
    }
    if (this.step !== 1) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'unexpected SASL message')
    this.step = 2
    const clientFinal = r.rest().toString('utf8')
    const proofAt = clientFinal.lastIndexOf(',p=')
    if (proofAt < 0) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'malformed SCRAM client-final-message')
    const withoutProof = clientFinal.slice(0, proofAt)
    const attrs = parseScramAttributes(withoutProof)
    const cbind = Buffer.concat([Buffer.from(this.gs2Header), this.isBound ? (this.channelBinding as Buffer) : Buffer.alloc(0)])
    // PostgreSQL's words; checked before the proof, so a relayed exchange never gets as far as a signature.
    if (attrs.get('c') !== cbind.toString('base64')) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'SCRAM channel binding check failed')
    if (attrs.get('r') !== this.nonce) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'SCRAM nonce does not match')
    const proof = Buffer.from(clientFinal.slice(proofAt + 3), 'base64')
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`
    const signature = hmac(this.keys.storedKey, authMessage)
    if (proof.length !== signature.length) return { kind: 'fail' }
    const clientKey = Buffer.alloc(proof.length)
    for (let i = 0; i < proof.length; i++) clientKey[i] = proof[i] ^ signature[i]
    const isMatch = timingSafeEqual(sha256(clientKey), this.keys.storedKey)
    if (!isMatch || !this.isReal) return { kind: 'fail' }
    const serverSignature = hmac(this.keys.serverKey, authMessage)
    return { kind: 'ok', send: build.authenticationSaslFinal(Buffer.from(`v=${serverSignature.toString('base64')}`)), clientKey }
  }
}

/**
 * The gs2 channel-binding flag against the mechanism chosen, by PostgreSQL's rules: -PLUS needs
 * "p=tls-server-end-point"; plain SCRAM takes "n", or "y" ("I could bind but you cannot") only
 * when we did not offer -PLUS, since otherwise "y" means someone removed it from our offer.
 */
function checkGs2Flag(flag: string, cbType: string | undefined, isBound: boolean, isPlusOffered: boolean): void {
  if (isBound) {
    if (cbType === undefined) throw new TidepoolError('TP_PROTOCOL_VIOLATION', `the client selected ${SCRAM_PLUS_MECHANISM}, but the SCRAM message does not include channel binding data`)
    if (cbType !== CHANNEL_BINDING_TYPE) throw new TidepoolError('TP_PROTOCOL_VIOLATION', `unsupported SCRAM channel-binding type ${JSON.stringify(cbType)}`)
    return
  }
  if (cbType !== undefined) throw new TidepoolError('TP_PROTOCOL_VIOLATION', `the client selected ${SCRAM_MECHANISM} without channel binding, but the SCRAM message includes channel binding data`)
  if (flag === 'y' && isPlusOffered) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'SCRAM channel binding negotiation error: the client supports SCRAM channel binding but thinks the server does not; this server does')
}
