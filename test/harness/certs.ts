// Throwaway certificates for TLS tests, made with the openssl CLI in a temp dir: a CA, a server
// certificate for localhost / 127.0.0.1, a client certificate (CN = the given user), and a second,
// untrusted CA with its own client certificate. Removed in t.after().

import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import type { TestContext } from 'node:test'

export interface TestCerts {
  dir: string
  caCert: string
  serverCert: string
  serverKey: string
  clientCert: string
  clientKey: string
  /** Signed by a CA nobody trusts. */
  rogueClientCert: string
  rogueClientKey: string
}

function ossl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
}

/** A key and certificate `<name>.key/.crt` in `dir`, signed by `<signer>.crt`; `ext` is an openssl extension file's text. */
function leaf(dir: string, name: string, cn: string, signer: string, ext: string | null): void {
  ossl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`])
  const args = ['x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.crt`, '-CAkey', `${signer}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2']
  if (ext !== null) {
    fs.writeFileSync(join(dir, `${name}.ext`), ext)
    args.push('-extfile', `${name}.ext`)
  }
  ossl(dir, args)
}

export function makeCerts(t: TestContext, clientCn: string): TestCerts {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-certs-'))
  fs.chmodSync(dir, 0o755)
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const ca = (name: string) => ossl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`])
  ca('ca')
  ca('rogue-ca')
  leaf(dir, 'server', 'localhost', 'ca', 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  leaf(dir, 'client', clientCn, 'ca', null)
  leaf(dir, 'rogue-client', clientCn, 'rogue-ca', null)
  // libpq refuses a client key that others can read.
  for (const f of fs.readdirSync(dir)) fs.chmodSync(join(dir, f), f.endsWith('.key') ? 0o600 : 0o644)
  const p = (f: string) => join(dir, f)
  return {
    dir, caCert: p('ca.crt'), serverCert: p('server.crt'), serverKey: p('server.key'),
    clientCert: p('client.crt'), clientKey: p('client.key'), rogueClientCert: p('rogue-client.crt'), rogueClientKey: p('rogue-client.key'),
  }
}

/**
 * Another server certificate from `certs`' CA, for the host-name rules of verify-full: subject CN
 * `cn`, subjectAltName `san` (openssl syntax, "DNS:localhost,IP:127.0.0.1") or none. Its key is
 * owned by the postgres OS user and private, as PostgreSQL wants to read it.
 */
export function makeServerCert(certs: TestCerts, name: string, cn: string, san: string | null): { cert: string; key: string } {
  leaf(certs.dir, name, cn, 'ca', san === null ? null : `subjectAltName=${san}\n`)
  const key = join(certs.dir, `${name}.key`)
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres']).toString().trim())
  fs.chownSync(key, id('-u'), id('-g'))
  fs.chmodSync(key, 0o600)
  fs.chmodSync(join(certs.dir, `${name}.crt`), 0o644)
  return { cert: join(certs.dir, `${name}.crt`), key }
}
