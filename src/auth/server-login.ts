// tidepool logging in to a PostgreSQL server: answers the server's Authentication requests with
// cleartext, md5 or SCRAM-SHA-256 (RFC 5802 / RFC 7677), and checks the server's SCRAM signature so
// a server that does not know the password cannot pass as one: once SASL has begun,
// AuthenticationOk counts only after a verified SASLFinal. Over TLS, when the server offers
// SCRAM-SHA-256-PLUS, the exchange is bound to the server's certificate (tls-server-end-point), as
// libpq's channel_binding=prefer does: a relay with a certificate of its own cannot complete it.
// libpq's require_auth (server_require_auth, a [databases] entry's require_auth=) limits the
// methods a server may ask for, so a server on the path cannot downgrade us to a cleartext password
// or wave us in with no exchange. PBKDF2 for SCRAM runs off the event loop, capped by
// server_scram_max_iterations.
// Must not: log or expose the password or derived keys.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { hmac, isMd5Hash, isScramVerifier, parseScramAttributes, scramKeys, scramSaltedPassword, sha256, xor, type DerivedKeys } from './secrets.ts'
import { AuthCode } from '../protocol/codes.ts'
import * as build from '../protocol/build.ts'
import { BodyReader } from '../protocol/reader.ts'
import { TidepoolError } from '../util/errors.ts'
import { CHANNEL_BINDING_TYPE } from '../net/channel-binding.ts'

const MECHANISM = 'SCRAM-SHA-256'
const PLUS_MECHANISM = 'SCRAM-SHA-256-PLUS'

export function md5Password(user: string, password: string): string {
  return 'md5' + createHash('md5').update(password + user).digest('hex')
}


/** SCRAM's escaping of ',' and '=' in the n= attribute (RFC 5802 section 5.1). */
function saslName(s: string): string {
  return s.replaceAll('=', '=3D').replaceAll(',', '=2C')
}

/** PostgreSQL's stored verifier format: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>. */
export function scramVerifier(password: string, salt: Buffer = randomBytes(16), iterations = 4096): string {
  const salted = scramSaltedPassword(password, salt, iterations)
  const storedKey = sha256(hmac(salted, 'Client Key'))
  const serverKey = hmac(salted, 'Server Key')
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`
}


/** What a server may ask of our login: libpq's require_auth (allowed methods, [] = any) and the SCRAM iteration cap. */
export interface ServerAuthPolicy {
  readonly requireAuth: readonly string[]
  readonly maxIterations: number
}

/** No require_auth (libpq's default) and server_scram_max_iterations' default. */
export const DEFAULT_SERVER_AUTH_POLICY: ServerAuthPolicy = Object.freeze({ requireAuth: [], maxIterations: 100_000 })

/** libpq's words for each request, in its "authentication method requirement ... failed" error. */
const REQUESTED: Readonly<Record<string, string>> = {
  password: 'server requested a cleartext password',
  md5: 'server requested a hashed password',
  'scram-sha-256': 'server requested SASL authentication',
  none: 'server did not complete authentication',
}

export class ServerAuth {
  private clientNonce: string
  private clientFirstBare = ''
  private expectedServerSignature: Buffer | null = null
  /** The method we answered, or 'none' while the server has asked for nothing. */
  private method: 'none' | 'password' | 'md5' | 'scram-sha-256' = 'none'
  /** The server's SCRAM signature checked: only then may a SASL login end in AuthenticationOk. */
  private isServerVerified = false
  private isOk = false
  /** The connection is TLS; `channelBinding` is the server certificate's tls-server-end-point data (null: unknown hash). */
  private isTls = false
  private channelBinding: Buffer | null = null
  /** The gs2 header sent, and with -PLUS the binding data after it: client-final's c= is their base64. */
  private cbindInput: Buffer = Buffer.from('n,,')
  /** The SASL mechanism chosen, for whoever checks what the login used. */
  mechanism: string | null = null

  /**
   * `keys`: for a server that holds the same SCRAM verifier as auth_file, the ClientKey learnt
   * from a client's SCRAM login and the verifier's ServerKey stand in for the plain password.
   */
  constructor(
    private readonly user: string,
    private readonly password: string | null,
    nonce?: string,
    private readonly keys: { clientKey: Buffer; serverKey: Buffer } | null = null,
    private readonly policy: ServerAuthPolicy = DEFAULT_SERVER_AUTH_POLICY,
  ) {
    this.clientNonce = nonce ?? randomBytes(18).toString('base64')
  }

  get isDone(): boolean {
    return this.isOk
  }

  /** The connection went TLS: `endPoint` is tls-server-end-point data of the server's certificate, or null when its hash is unknown. */
  setChannelBinding(endPoint: Buffer | null): void {
    this.isTls = true
    this.channelBinding = endPoint
  }

  /** Refuses a method require_auth does not allow, in libpq's words. */
  private require(method: 'none' | 'password' | 'md5' | 'scram-sha-256'): void {
    const allowed = this.policy.requireAuth
    if (allowed.length > 0 && !allowed.includes(method)) {
      throw new TidepoolError('TP_AUTH_FAILED', `authentication method requirement "${allowed.join(',')}" failed: ${REQUESTED[method]}`)
    }
  }

  /**
   * The answer to one Authentication message: a message to send, null for none, or a promise of
   * one while PBKDF2 runs on the threadpool (the caller handles no other server message meanwhile).
   */
  onAuthRequest(body: Buffer, start = 0, end = body.length): Buffer | null | Promise<Buffer> {
    const r = new BodyReader(body, start, end)
    const code = r.int32()
    if (code !== AuthCode.Ok && code !== AuthCode.SASLContinue && code !== AuthCode.SASLFinal && this.method !== 'none') {
      throw new TidepoolError('TP_PROTOCOL_VIOLATION', `server asked for authentication (code ${code}) a second time`)
    }
    switch (code) {
      case AuthCode.Ok:
        // A server that ends SCRAM without its signature has not shown it knows the password.
        if (this.method === 'scram-sha-256' && !this.isServerVerified) throw new TidepoolError('TP_AUTH_FAILED', 'server sent AuthenticationOk without completing SCRAM (no valid server signature)')
        if (this.method === 'none') this.require('none')
        this.isOk = true
        return null
      case AuthCode.CleartextPassword:
        this.require('password')
        this.method = 'password'
        if (this.password === null) throw new TidepoolError('TP_AUTH_FAILED', 'server asked for a password and none is configured')
        if (isMd5Hash(this.password) || isScramVerifier(this.password)) throw new TidepoolError('TP_AUTH_UNSUPPORTED', 'server asked for a cleartext password but only a hash or verifier is stored')
        return build.passwordMessage(this.password)
      case AuthCode.MD5Password: {
        this.require('md5')
        this.method = 'md5'
        if (this.password === null) throw new TidepoolError('TP_AUTH_FAILED', 'server asked for a password and none is configured')
        if (isScramVerifier(this.password)) throw new TidepoolError('TP_AUTH_UNSUPPORTED', 'server asked for md5 but only a SCRAM verifier is stored')
        const salt = r.bytes(4)
        const inner = isMd5Hash(this.password) ? this.password.slice(3) : md5Password(this.user, this.password).slice(3)
        return build.passwordMessage('md5' + createHash('md5').update(inner).update(salt).digest('hex'))
      }
      case AuthCode.SASL: {
        const mechs: string[] = []
        for (let m = r.cstring(); m !== ''; m = r.cstring()) mechs.push(m)
        this.require('scram-sha-256')
        this.method = 'scram-sha-256'
        const mech = this.pickMechanism(mechs)
        if (this.keys === null && (this.password === null || isMd5Hash(this.password) || isScramVerifier(this.password))) {
          throw new TidepoolError('TP_AUTH_FAILED', 'SCRAM needs the plain password, or a client that logged in with SCRAM first; neither is available')
        }
        // gs2 header, as libpq writes it: "p=" binds; "y" says we could bind but were not offered
        // -PLUS (a server that did offer it then knows the offer was stripped); "n" without TLS.
        const gs2 = mech === PLUS_MECHANISM ? `p=${CHANNEL_BINDING_TYPE},,` : this.isTls && this.channelBinding !== null ? 'y,,' : 'n,,'
        this.cbindInput = mech === PLUS_MECHANISM ? Buffer.concat([Buffer.from(gs2), this.channelBinding as Buffer]) : Buffer.from(gs2)
        this.mechanism = mech
        this.clientFirstBare = `n=${saslName(this.user)},r=${this.clientNonce}`
        return build.saslInitialResponse(mech, Buffer.from(gs2 + this.clientFirstBare))
      }
      case AuthCode.SASLContinue: {
        if (this.clientFirstBare === '') throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'SASLContinue before SASL')
        if (this.expectedServerSignature !== null || this.isServerVerified) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'second SASLContinue')
        const serverFirst = r.rest().toString('utf8')
        const a = parseScramAttributes(serverFirst)
        const nonce = a.get('r')
        const saltB64 = a.get('s')
        const iterations = Number(a.get('i'))
        if (nonce === undefined || saltB64 === undefined || !nonce.startsWith(this.clientNonce) || nonce.length <= this.clientNonce.length) {
          throw new TidepoolError('TP_AUTH_FAILED', 'invalid SCRAM nonce from server')
        }
        if (!Number.isInteger(iterations) || iterations < 1) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'invalid SCRAM iteration count from server')
        const finish = (k: DerivedKeys): Buffer => {
          const storedKey = sha256(k.clientKey)
          const clientFinalNoProof = `c=${this.cbindInput.toString('base64')},r=${nonce}`
          const authMessage = `${this.clientFirstBare},${serverFirst},${clientFinalNoProof}`
          const proof = xor(k.clientKey, hmac(storedKey, authMessage))
          this.expectedServerSignature = hmac(k.serverKey, authMessage)
          return build.saslResponse(Buffer.from(`${clientFinalNoProof},p=${proof.toString('base64')}`))
        }
        if (this.keys !== null && (this.password === null || isMd5Hash(this.password) || isScramVerifier(this.password))) return finish(this.keys)
        // Only a PBKDF2 we compute costs CPU per iteration; the keys above are already derived.
        if (iterations > this.policy.maxIterations) {
          throw new TidepoolError('TP_AUTH_FAILED', `server asked for ${iterations} SCRAM iterations, more than server_scram_max_iterations (${this.policy.maxIterations})`)
        }
        return scramKeys(this.password as string, Buffer.from(saltB64, 'base64'), iterations).then(finish)
      }
      case AuthCode.SASLFinal: {
        const expected = this.expectedServerSignature
        if (expected === null) throw new TidepoolError('TP_PROTOCOL_VIOLATION', 'SASLFinal before SASLContinue')
        const a = parseScramAttributes(r.rest().toString('utf8'))
        if (a.has('e')) throw new TidepoolError('TP_AUTH_FAILED', `SCRAM error from server: ${a.get('e')}`)
        const v = Buffer.from(a.get('v') ?? '', 'base64')
        if (v.length !== expected.length || !timingSafeEqual(v, expected)) throw new TidepoolError('TP_AUTH_FAILED', 'server SCRAM signature does not match')
        this.expectedServerSignature = null
        this.isServerVerified = true
        return null
      }
      default:
        throw new TidepoolError('TP_AUTH_UNSUPPORTED', `server asked for an authentication method tidepool does not support (code ${code})`)
    }
  }

  /** SCRAM-SHA-256-PLUS whenever the server offers it and we can bind to its certificate; else SCRAM-SHA-256. */
  private pickMechanism(offered: string[]): string {
    if (offered.includes(PLUS_MECHANISM) && this.channelBinding !== null) return PLUS_MECHANISM
    if (offered.includes(MECHANISM)) return MECHANISM
    const why = offered.includes(PLUS_MECHANISM)
      ? (this.isTls ? 'the server certificate\'s signature hash is unknown, so there is nothing to bind to' : 'it needs TLS (server_tls_sslmode)')
      : `tidepool speaks ${MECHANISM} and ${PLUS_MECHANISM}`
    throw new TidepoolError('TP_AUTH_UNSUPPORTED', `server offers SASL mechanisms ${offered.join(', ')}; ${why}`)
  }
}
