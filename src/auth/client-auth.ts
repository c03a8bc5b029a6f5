// Chooses and runs the client login flow for auth_type plain, md5 or scram-sha-256 against the
// secret from auth_file, as PgBouncer does: md5 switches to SCRAM for a user stored with a SCRAM
// verifier, and plain accepts a plain, md5 or SCRAM secret.
// Must not: reveal which part failed; a failure is always just { kind: 'fail' }.

import { checkClientPassword, passwordRequest } from './client-password.ts'
import { ScramServerExchange, clientKeyIfPasswordMatches, parseScramVerifier } from './scram-server.ts'

export type AuthStep =
  | { kind: 'continue'; send: Buffer }
  /** `scramClientKey`: learnt from a SCRAM exchange against a stored verifier (for server login). */
  | { kind: 'ok'; send: Buffer | null; scramClientKey: Buffer | null }
  | { kind: 'fail' }

export interface ClientAuthFlow {
  /**
   * The first Authentication request to send. `channelBinding`: tls-server-end-point data of the
   * client's TLS connection, or null; SCRAM then offers SCRAM-SHA-256-PLUS, the other flows ignore it.
   */
  start(channelBinding: Buffer | null): Buffer
  /** A PasswordMessage-type body from the client. */
  onMessage(buf: Buffer, start: number, end: number): AuthStep
}

export function clientAuthFlow(method: 'plain' | 'md5' | 'scram-sha-256', user: string, secret: string | null, scramIterations: number): ClientAuthFlow {
  const verifier = secret === null ? null : parseScramVerifier(secret)
  if (method === 'scram-sha-256' || (method === 'md5' && verifier !== null)) {
    const x = new ScramServerExchange(user, secret, scramIterations)
    return {
      start: (channelBinding) => x.start(channelBinding),
      onMessage: (buf, start, end) => {
        const s = x.onMessage(buf, start, end)
        return s.kind === 'ok' ? { kind: 'ok', send: s.send, scramClientKey: verifier !== null ? s.clientKey : null } : s
      },
    }
  }
  if (method === 'plain' && verifier !== null) {
    const check = passwordRequest('plain', user, secret)
    return {
      start: () => check.request,
      onMessage: (buf, start, end) => {
        const nul = buf.indexOf(0, start)
        const given = buf.toString('utf8', start, nul >= start && nul < end ? nul : end)
        const clientKey = clientKeyIfPasswordMatches(given, verifier)
        return clientKey !== null ? { kind: 'ok', send: null, scramClientKey: clientKey } : { kind: 'fail' }
      },
    }
  }
  const check = passwordRequest(method === 'plain' ? 'plain' : 'md5', user, secret)
  return {
    start: () => check.request,
    onMessage: (buf, start, end) => (checkClientPassword(check, buf, start, end) ? { kind: 'ok', send: null, scramClientKey: null } : { kind: 'fail' }),
  }
}
