// auth_ident_file (pg_ident.conf syntax) and the checks that tie auth_hba_file's options to the
// settings that can honour them: parse errors name file:line, regular expressions with \1 map a
// certificate CN to users, and a map=, clientcert= or cert line that could not be enforced
// rejects the configuration instead of being ignored.

import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { identAllows, parseIdent, type IdentFile } from '../../src/auth/ident.ts'
import { loadHba } from '../../src/auth/hba-load.ts'
import { loadConfigFromText } from '../../src/config/load.ts'
import { TidepoolError } from '../../src/util/errors.ts'

const FILE = '/etc/tidepool/pg_ident.conf'

function mustParse(text: string): IdentFile {
  const r = parseIdent(text, FILE)
  if (!r.ok) assert.fail(r.errors.join('\n'))
  return r.ident
}

test('ident: literal names, all, and regular expressions with \\1', () => {
  const ident = mustParse([
    '# MAPNAME  SYSTEM-USERNAME            PG-USERNAME',
    'certs      alice.example              alice',
    'certs      alice.example              reports',
    'certs      /^(.*)@example\\.com$      \\1',
    'certs      /@partner\\.org$           guest',
    'admins     root-ca-admin              all',
    'quoted     "/not-a-regex"             "all"',
  ].join('\n'))
  assert.equal(identAllows(ident, 'certs', 'alice.example', 'alice'), true)
  assert.equal(identAllows(ident, 'certs', 'alice.example', 'reports'), true, 'one system name, several users')
  assert.equal(identAllows(ident, 'certs', 'alice.example', 'bob'), false)
  assert.equal(identAllows(ident, 'certs', 'bob@example.com', 'bob'), true, '\\1 takes the group')
  assert.equal(identAllows(ident, 'certs', 'bob@example.com', 'alice'), false)
  assert.equal(identAllows(ident, 'certs', 'bob@example.com.evil', 'bob'), false, 'anchored by the pattern itself')
  assert.equal(identAllows(ident, 'certs', 'x@partner.org', 'guest'), true, 'unanchored at the start: any prefix')
  assert.equal(identAllows(ident, 'certs', 'x@partner.org', 'x'), false)
  assert.equal(identAllows(ident, 'admins', 'root-ca-admin', 'anyone'), true, 'all')
  assert.equal(identAllows(ident, 'admins', 'alice.example', 'alice'), false, 'maps are separate')
  assert.equal(identAllows(ident, 'quoted', '/not-a-regex', 'all'), true, 'quoted: literal name and literal "all"')
  assert.equal(identAllows(ident, 'quoted', '/not-a-regex', 'bob'), false)
  assert.equal(identAllows(ident, 'nosuchmap', 'alice.example', 'alice'), false)
  assert.deepEqual([...ident.maps].sort(), ['admins', 'certs', 'quoted'])
})

test('ident: errors name file:line and reject the whole file', () => {
  const cases: Array<[string, RegExp]> = [
    ['certs alice', /expected three fields/],
    ['certs alice bob carol', /expected three fields/],
    ['certs alice,bob alice', /not a comma-separated list/],
    ['include other.conf', /"include" is not supported/],
    ['certs /([a-z] x', /invalid regular expression/],
    ['certs /^.*$ \\1', /has no parenthesised group/],
    ['certs alice +admins', /group membership/],
    ['certs alice /^a', /regular expression in the database-username field/],
    ['certs "alice bob', /unterminated double quote/],
  ]
  for (const [line, message] of cases) {
    const r = parseIdent(`# ok\ncerts a a\n${line}\n`, FILE)
    assert.equal(r.ok, false, line)
    if (!r.ok) {
      assert.equal(r.errors.length, 1, line)
      assert.ok(r.errors[0].startsWith(`${FILE}:3: `), r.errors[0])
      assert.match(r.errors[0], message, line)
    }
  }
})

async function hbaConfig(t: TestContext, settings: string, files: Record<string, string>) {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-ident-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(join(dir, name), text)
  const r = await loadConfigFromText(`[databases]\napp = host=127.0.0.1\n[pgbouncer]\nauth_type = hba\nauth_hba_file = hba.conf\n${settings}`, join(dir, 'tidepool.ini'))
  if (!r.ok) assert.fail(r.errors.join('\n'))
  return { config: r.config, dir }
}

function loadError(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof TidepoolError)
    return err.message
  }
  return assert.fail('expected the configuration to be rejected')
}

const TLS = 'client_tls_sslmode = require\nclient_tls_key_file = k.pem\nclient_tls_cert_file = c.pem\n'

test('hba load: map= needs auth_ident_file and a map of that name', async (t) => {
  const hba = 'hostssl all all all cert map=certs\n'
  const noIdent = await hbaConfig(t, `${TLS}client_tls_ca_file = ca.pem\n`, { 'hba.conf': hba })
  assert.match(loadError(() => loadHba(noIdent.config)), /hba\.conf:1: map=certs needs auth_ident_file/)
  const wrongMap = await hbaConfig(t, `${TLS}client_tls_ca_file = ca.pem\nauth_ident_file = ident.conf\n`, { 'hba.conf': hba, 'ident.conf': 'other a a\n' })
  assert.match(loadError(() => loadHba(wrongMap.config)), /hba\.conf:1: map "certs" is not defined in auth_ident_file/)
  const badIdent = await hbaConfig(t, `${TLS}client_tls_ca_file = ca.pem\nauth_ident_file = ident.conf\n`, { 'hba.conf': hba, 'ident.conf': 'certs a\n' })
  assert.match(loadError(() => loadHba(badIdent.config)), /ident\.conf:1: expected three fields/)
  const ok = await hbaConfig(t, `${TLS}client_tls_ca_file = ca.pem\nauth_ident_file = ident.conf\n`, { 'hba.conf': hba, 'ident.conf': 'certs /^(.*)$ \\1\n' })
  const loaded = loadHba(ok.config)
  assert.ok(loaded?.ident !== undefined)
  assert.equal(identAllows(loaded.ident, 'certs', 'x', 'x'), true)
})

test('hba load: clientcert= and cert lines need client_tls_ca_file while TLS is on', async (t) => {
  const noCa = await hbaConfig(t, TLS, { 'hba.conf': 'hostssl all all all scram-sha-256 clientcert=verify-ca\nhostssl all all all cert\n' })
  const msg = loadError(() => loadHba(noCa.config))
  assert.match(msg, /hba\.conf:1: clientcert=verify-ca needs client_tls_ca_file/)
  assert.match(msg, /hba\.conf:2: cert authentication needs client_tls_ca_file/)
  const tlsOff = await hbaConfig(t, '', { 'hba.conf': 'hostssl all all all cert\nhost all all all md5\n' })
  assert.equal(loadHba(tlsOff.config)?.rules.length, 2, 'with TLS off a hostssl line never matches: nothing to weaken')
})
