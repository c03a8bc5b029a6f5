// server_tls_sslmode = verify-full: does the server's certificate name the host we dialled? libpq's
// rules (fe-secure-openssl.c), so a certificate psql accepts for a host is the one tidepool accepts:
//   - a host name is matched against the dNSName SANs (a "*." wildcard covers one leftmost label),
//     and against the subject CN only when the certificate has no dNSName SAN;
//   - an IP address is matched against the iPAddress SANs byte for byte; like libpq it also matches a
//     dNSName spelling the same address, and the CN only when there is no iPAddress SAN (NSS's
//     fallback for certificates made before IP SANs were common).
// Node's own check cannot be used: without a servername (never sent for an IP) it checks "localhost".
// Must not: accept a certificate when the host is empty; look the host up in DNS.

import net from 'node:net'
import { X509Certificate } from 'node:crypto'
import type tls from 'node:tls'

const HOST_CHECK = { subject: 'default', wildcards: true, partialWildcards: false, multiLabelWildcards: false, singleLabelSubdomains: false } as const

/** Why `cert` does not name `host`, as libpq words it; undefined when it does. */
export function serverNameError(host: string, cert: tls.PeerCertificate): Error | undefined {
  if (host === '' || cert.raw === undefined) return nameError(host, 'the server sent no certificate to check')
  const x509 = new X509Certificate(cert.raw)
  const sans = altNames(x509.subjectAltName)
  const dns = sans.filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4))
  const ips = sans.filter((n) => n.startsWith('IP Address:'))
  const cn = firstCn(cert.subject?.CN)
  if (net.isIP(host) !== 0) {
    if (x509.checkIP(host) !== undefined) return undefined
    if (dns.some((d) => d.toLowerCase() === host.toLowerCase())) return undefined
    if (ips.length === 0 && cn !== null && cn.toLowerCase() === host.toLowerCase()) return undefined
  } else if (x509.checkHost(host, HOST_CHECK) !== undefined) return undefined
  const names = [...sans, ...(cn === null ? [] : [`CN=${cn}`])]
  return nameError(host, `server certificate (${names.length === 0 ? 'no names' : names.join(', ')}) does not match host name "${host}"`)
}

function nameError(host: string, message: string): Error {
  // The code Node gives its own name mismatch, so whoever logs TLS errors by code sees the same one.
  return Object.assign(new Error(message), { code: 'ERR_TLS_CERT_ALTNAME_INVALID', host })
}

/** Node's "DNS:a, IP Address:1.2.3.4" list; a name holding ", " comes quoted, and is then no host name anyway. */
function altNames(list: string | undefined): string[] {
  return list === undefined || list === '' ? [] : list.split(', ')
}

function firstCn(cn: string | string[] | undefined): string | null {
  if (cn === undefined) return null
  return typeof cn === 'string' ? cn : (cn[0] ?? null)
}
