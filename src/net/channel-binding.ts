// SCRAM channel binding data of type tls-server-end-point (RFC 5929 section 4.1), the one type
// PostgreSQL offers: a hash of the server's DER certificate, with the hash function of the
// certificate's own signature, SHA-256 when that is MD5 or SHA-1. Both ends compute it: tidepool
// for its own certificate (clients' SCRAM-SHA-256-PLUS) and for a server's (its login to PostgreSQL).
// Must not: guess a hash for a signature algorithm it does not know (RSASSA-PSS, EdDSA): it answers
// null, and no -PLUS is offered or used, rather than binding data the other end computes differently.

import { createHash } from 'node:crypto'
import type tls from 'node:tls'

export const CHANNEL_BINDING_TYPE = 'tls-server-end-point'

/** signatureAlgorithm OIDs (DER content bytes, hex) → the hash tls-server-end-point uses. */
const HASH_BY_SIGNATURE_OID: Record<string, string> = {
  '2a864886f70d010104': 'sha256', // md5WithRSAEncryption (MD5 → SHA-256)
  '2a864886f70d010105': 'sha256', // sha1WithRSAEncryption (SHA-1 → SHA-256)
  '2a864886f70d01010e': 'sha224',
  '2a864886f70d01010b': 'sha256',
  '2a864886f70d01010c': 'sha384',
  '2a864886f70d01010d': 'sha512',
  '2a8648ce3d0401': 'sha256', // ecdsa-with-SHA1
  '2a8648ce3d040301': 'sha224',
  '2a8648ce3d040302': 'sha256',
  '2a8648ce3d040303': 'sha384',
  '2a8648ce3d040304': 'sha512',
  '2a8648ce380403': 'sha256', // dsa-with-sha1
  '608648016503040301': 'sha224', // dsa-with-sha224
  '608648016503040302': 'sha256', // dsa-with-sha256
}

/** tls-server-end-point data for a DER certificate; null when its signature hash is unknown or the DER is malformed. */
export function tlsServerEndPoint(der: Buffer): Buffer | null {
  const hash = signatureHash(der)
  return hash === null ? null : createHash(hash).update(der).digest()
}

/** The binding data for the certificate tidepool presents on `socket` (a client connection). */
export function localEndPoint(socket: tls.TLSSocket): Buffer | null {
  const raw = (socket.getCertificate() as { raw?: Buffer } | null)?.raw
  return raw === undefined ? null : tlsServerEndPoint(raw)
}

/** The binding data for the certificate the server presented on `socket` (a server connection). */
export function peerEndPoint(socket: tls.TLSSocket): Buffer | null {
  const raw = socket.getPeerCertificate()?.raw as Buffer | undefined
  return raw === undefined ? null : tlsServerEndPoint(raw)
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, signature }. */
function signatureHash(der: Buffer): string | null {
  const cert = tlv(der, 0)
  if (cert === null || cert.tag !== 0x30) return null
  const tbs = tlv(der, cert.body)
  if (tbs === null) return null
  const algId = tlv(der, tbs.end)
  if (algId === null || algId.tag !== 0x30) return null
  const oid = tlv(der, algId.body)
  if (oid === null || oid.tag !== 0x06) return null
  return HASH_BY_SIGNATURE_OID[der.toString('hex', oid.body, oid.end)] ?? null
}

/** One DER tag-length-value at `at`: where its body starts and where it ends. */
function tlv(der: Buffer, at: number): { tag: number; body: number; end: number } | null {
  if (at + 2 > der.length) return null
  const tag = der[at]
  let len = der[at + 1]
  let body = at + 2
  if (len & 0x80) {
    const n = len & 0x7f
    if (n === 0 || n > 4 || body + n > der.length) return null
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + der[body + i]
    body += n
  }
  const end = body + len
  return end > der.length ? null : { tag, body, end }
}
