// The server side of SCRAM-SHA-256 (RFC 5802 / RFC 7677) for clients logging in to tidepool,
// against a stored plain password or a PostgreSQL verifier (SCRAM-SHA-256$iter:salt$StoredKey:ServerKey).
// After a successful exchange the client's ClientKey is known (proof XOR signature), which lets
// tidepool log in to a server holding the same verifier without a plain password, as PgBouncer does.
// A user stored with a plain-text password, an unknown user, or one stored only as an md5 hash or
// an empty password, gets a challenge with the same salt derivation (secrets.ts userSalt), so
// the exchange looks the same whether the user exists or not and fails only at the proof.
// Over TLS, SCRAM-SHA-256-PLUS is offered too, as PostgreSQL does: the client's channel binding
// data must then be the tls-server-end-point hash of tidepool's certificate, so a man in the middle
// holding another certificate cannot relay the exchange (libpq's channel_binding=require).
// Must not: log or return secrets; every secret comparison is constant-time.

import { randomBytes, timingSafeEqual } from 'node:crypto'
import { hmac, isMd5Hash, parseScramAttributes, scramKeys, sha256, userSalt } from './secrets.ts'
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

/**
 * A plain password checked against a verifier (auth_type plain with a SCRAM secret stored).
 * Resolves to the ClientKey it proves, for the server login, or null when it does not match.
 */
export async function clientKeyIfPasswordMatches(password: string, keys: ScramKeys): Promise<Buffer | null> {
  const { clientKey } = await scramKeys(password, keys.salt, keys.iterations)
  return timingSafeEqual(sha256(clientKey), keys.storedKey) ? clientKey : null
}


export type ScramStep =
  | { kind: 'continue'; send: Buffer }
  | { kind: 'ok'; send: Buffer; clientKey: Buffer }
  /** `reason`: for the log only, never for the client. */
  | { kind: 'fail'; reason?: string }

/** What the proof is checked against: a verifier's keys, keys still to derive from a plain password, or none. */
type Secret =
  | { kind: 'verifier'; keys: ScramKeys }
  | { kind: 'plain'; password: string }
  | { kind: 'none'; why: string }

/** One client's SCRAM exchange with tidepool as the server. */
export class ScramServerExchange {
  private readonly secret: Secret
  private readonly salt: Buffer
  private readonly iterations: number
  private clientFirstBare = ''
  private serverFirst = ''
  private nonce = ''
  private gs2Header = ''
  /** tls-server-end-point data of our certificate, when -PLUS was offered. */
  private channelBinding: Buffer | null = null
  /** The client chose -PLUS: its client-final c= carries the binding data. */
  private isBound = false
  private step = 0

  /** `secret`: plain password, SCRAM verifier, or null/md5 hash/'' (the exchange then always fails). */
  constructor(user: string, secret: string | null, iterations: number) {
    const verifier = secret === null ? null : parseScramVerifier(secret)
    if (verifier !== null) {
      this.secret = { kind: 'verifier', keys: verifier }
      this.salt = verifier.salt
      this.iterations = verifier.iterations
      return
    }
    if (secret === null) this.secret = { kind: 'none', why: 'no such user' }
    else if (isMd5Hash(secret)) this.secret = { kind: 'none', why: 'only an md5 hash is stored, SCRAM cannot use it' }
    // PostgreSQL never stores an empty password and PgBouncer refuses one: no exchange may succeed.
    else if (secret === '') this.secret = { kind: 'none', why: 'the stored password is empty' }
    else this.secret = { kind: 'plain', password: secret }
    this.salt = userSalt(user)
    this.iterations = iterations
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
  /** The final step checks the proof, which for a plain-text secret waits for PBKDF2 (off the event loop). */
  onMessage(buf: Buffer, start: number, end: number): ScramStep | Promise<ScramStep> {
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
      this.serverFirst = `r=${this.nonce},s=${this.salt.toString('base64')},i=${this.iterations}`
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
    const secret = this.secret
    if (secret.kind === 'none') return { kind: 'fail', reason: secret.why }
    if (secret.kind === 'verifier') return verifyProof(proof, authMessage, secret.keys.storedKey, secret.keys.serverKey)
    return scramKeys(secret.password, this.salt, this.iterations).then((k) => verifyProof(proof, authMessage, sha256(k.clientKey), k.serverKey))
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

/** The client's proof against StoredKey; on a match, the ClientKey it reveals and our ServerSignature. */
function verifyProof(proof: Buffer, authMessage: string, storedKey: Buffer, serverKey: Buffer): ScramStep {
  const signature = hmac(storedKey, authMessage)
  if (proof.length !== signature.length) return { kind: 'fail', reason: 'SCRAM proof does not match' }
  const clientKey = Buffer.alloc(proof.length)
  for (let i = 0; i < proof.length; i++) clientKey[i] = proof[i] ^ signature[i]
  if (!timingSafeEqual(sha256(clientKey), storedKey)) return { kind: 'fail', reason: 'SCRAM proof does not match' }
  const serverSignature = hmac(serverKey, authMessage)
  return { kind: 'ok', send: build.authenticationSaslFinal(Buffer.from(`v=${serverSignature.toString('base64')}`)), clientKey }
}
