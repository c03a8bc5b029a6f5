// auth_type hba and cert as PgBouncer operators configure them: the first matching line of
// auth_hba_file decides (PostgreSQL's error texts), RELOAD picks up a new file, certificate
// logins need a verified client certificate whose CN is the user or maps to it through
// auth_ident_file, and clientcert= on password and trust lines is enforced as PostgreSQL does.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import pg from 'pg'
import { sharedPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { makeCerts } from '../harness/certs.ts'
import { runPsql } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const u = () => TEST_USERS.scram

function dbs(): Record<string, string> {
  return {
    app: `host=127.0.0.1 port=${pgi.port} dbname=app`,
    postgres: `host=127.0.0.1 port=${pgi.port} dbname=postgres user=${pgi.user} password=${pgi.password}`,
    other: `host=127.0.0.1 port=${pgi.port} dbname=app`,
  }
}

async function login(port: number, database: string, user: string, password?: string): Promise<string> {
  const c = new pg.Client({ host: '127.0.0.1', port, database, user, password })
  c.on('error', () => {})
  try {
    await c.connect()
    const r = await c.query('SELECT current_user AS u')
    return `ok:${r.rows[0].u}`
  } catch (e: any) {
    return `${e.code}:${e.message}`
  } finally {
    await c.end().catch(() => {})
  }
}

test('auth_type hba: reject, no entry, trust and scram lines, first match wins, RELOAD reads a new file', { timeout: 30_000 }, async (t) => {
  const hbaLines = (first: string) => [
    '# tidepool test hba',
    first,
    `host app all 127.0.0.1/32 scram-sha-256`,
    `host postgres all 0.0.0.0/0 trust`,
  ].join('\n') + '\n'
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'hba', auth_hba_file: 'hba.conf' },
    databases: dbs(),
    // trust lines admit only users auth_file knows, as in PgBouncer.
    userlist: { [u().user]: u().password, alice: 'a', anyone: 'x' },
    files: { 'hba.conf': hbaLines('host app alice 127.0.0.1/32 reject') },
  })
  assert.equal(await login(tp.port, 'app', 'alice', 'a'), '28000:pg_hba.conf rejects connection for host "127.0.0.1", user "alice", database "app", no encryption')
  assert.equal(await login(tp.port, 'app', u().user, u().password), `ok:${u().user}`)
  assert.equal((await login(tp.port, 'app', u().user, 'wrong')).split(':')[0], '28P01')
  assert.equal(await login(tp.port, 'postgres', 'anyone'), `ok:${pgi.user}`, 'trust line, forced server user')
  assert.equal(await login(tp.port, 'other', u().user, u().password), `28000:no pg_hba.conf entry for host "127.0.0.1", user "${u().user}", database "other", no encryption`)

  fs.writeFileSync(`${tp.dir}/hba.conf`, hbaLines('host app alice 127.0.0.1/32 trust'))
  assert.equal((await tp.rt.reload()).ok, true)
  assert.equal((await login(tp.port, 'app', 'alice')).split(':')[0], '28P01', 'alice now trusted by tidepool; the server still wants her password')
  fs.writeFileSync(`${tp.dir}/hba.conf`, 'host app all 127.0.0.1/32 peer\n')
  const bad = await tp.rt.reload()
  assert.equal(bad.ok, false, 'a file with an unsupported method is rejected whole')
  assert.match(bad.errors.join('\n'), /hba\.conf:1:/)
  assert.equal(await login(tp.port, 'postgres', 'anyone'), `ok:${pgi.user}`, 'the previous file stays in force')
})

test('auth_type cert: a verified client certificate whose CN is the user logs in; another CN does not', { timeout: 60_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'cert', client_tls_sslmode: 'verify-ca', client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert, client_tls_ca_file: certs.caCert },
    userlist: { [pgi.user]: pgi.password, someone_else: 'x' },
  })
  const ok = await runPsql({ port: tp.port, user: pgi.user, db: `dbname=app sslmode=require sslcert=${certs.clientCert} sslkey=${certs.clientKey}`, sql: 'SELECT current_user' })
  assert.equal(ok.code, 0, ok.stderr)
  assert.equal(ok.stdout.trim(), pgi.user)
  const other = await runPsql({ port: tp.port, user: 'someone_else', db: `dbname=app sslmode=require sslcert=${certs.clientCert} sslkey=${certs.clientKey}`, sql: 'SELECT 1' })
  assert.notEqual(other.code, 0)
  assert.match(other.stderr, /certificate authentication failed for user "someone_else"/)
})

test('hba clientcert=verify-ca and verify-full on password and trust lines, checked as PostgreSQL does', { timeout: 90_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const tp = await startTidepool(t, pgi, {
    settings: {
      auth_type: 'hba', auth_hba_file: 'hba.conf', client_tls_sslmode: 'require',
      client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert, client_tls_ca_file: certs.caCert,
    },
    databases: dbs(),
    userlist: { [pgi.user]: pgi.password, [u().user]: u().password },
    files: {
      'hba.conf': [
        'hostssl postgres all 127.0.0.1/32 trust clientcert=verify-full',
        `hostssl app ${u().user} 127.0.0.1/32 scram-sha-256 clientcert=verify-full`,
        'hostssl app all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca',
      ].join('\n') + '\n',
    },
  })
  const psql = (user: string, password: string, db: string, cert: 'good' | 'rogue' | 'none') => runPsql({
    port: tp.port, user, password, sql: 'SELECT current_user',
    db: `dbname=${db} sslmode=require ${cert === 'good' ? `sslcert=${certs.clientCert} sslkey=${certs.clientKey}` : cert === 'rogue' ? `sslcert=${certs.rogueClientCert} sslkey=${certs.rogueClientKey}` : 'sslcert=/nonexistent sslkey=/nonexistent'}`,
  })
  // verify-ca: any certificate from the CA, whatever its CN, plus the password.
  const ok = await psql(pgi.user, pgi.password, 'app', 'good')
  assert.equal(ok.code, 0, ok.stderr)
  for (const cert of ['none', 'rogue'] as const) {
    const r = await psql(pgi.user, pgi.password, 'app', cert)
    assert.notEqual(r.code, 0, cert)
    assert.match(r.stderr, /connection requires a valid client certificate/, cert)
  }
  const wrongPw = await psql(pgi.user, 'wrong', 'app', 'good')
  assert.match(wrongPw.stderr, /password authentication failed/, 'the certificate does not replace the password')

  // verify-full: the CN must be the user too, checked after the password, with the method's own failure text.
  const mismatch = await psql(u().user, u().password, 'app', 'good')
  assert.notEqual(mismatch.code, 0)
  assert.match(mismatch.stderr, new RegExp(`password authentication failed for user "${u().user}"`))
  assert.ok(tp.logs.some((l) => l.includes('clientcert=verify-full') && l.includes('CN mismatch')), 'the log says why')
  const trustOk = await psql(pgi.user, '', 'postgres', 'good')
  assert.equal(trustOk.code, 0, trustOk.stderr)
  const trustOther = await psql(u().user, '', 'postgres', 'good')
  assert.match(trustOther.stderr, new RegExp(`"trust" authentication failed for user "${u().user}"`))
})

test('hba cert with map=: auth_ident_file maps the certificate CN to users, regular expressions and \\1 included', { timeout: 90_000 }, async (t) => {
  const certs = makeCerts(t, `${pgi.user}@example.com`)
  const tp = await startTidepool(t, pgi, {
    settings: {
      auth_type: 'hba', auth_hba_file: 'hba.conf', auth_ident_file: 'ident.conf', client_tls_sslmode: 'require',
      client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert, client_tls_ca_file: certs.caCert,
    },
    databases: dbs(),
    userlist: { [pgi.user]: pgi.password, [u().user]: u().password },
    files: {
      'hba.conf': 'hostssl all all 127.0.0.1/32 cert map=certs\n',
      'ident.conf': '# MAPNAME SYSTEM-USERNAME PG-USERNAME\ncerts /^(.*)@example\\.com$ \\1\n',
    },
  })
  const login = (user: string) => runPsql({ port: tp.port, user, db: `dbname=app sslmode=require sslcert=${certs.clientCert} sslkey=${certs.clientKey}`, sql: 'SELECT current_user' })
  const ok = await login(pgi.user)
  assert.equal(ok.code, 0, ok.stderr)
  assert.equal(ok.stdout.trim(), pgi.user)
  const other = await login(u().user)
  assert.notEqual(other.code, 0)
  assert.match(other.stderr, new RegExp(`certificate authentication failed for user "${u().user}"`))

  // A map name that the ident file lacks is refused at RELOAD, and the old files stay in force.
  fs.writeFileSync(`${tp.dir}/hba.conf`, 'hostssl all all 127.0.0.1/32 cert map=nosuch\n')
  const bad = await tp.rt.reload()
  assert.equal(bad.ok, false)
  assert.match(bad.errors.join('\n'), /hba\.conf:1: map "nosuch" is not defined/)
  assert.equal((await login(pgi.user)).code, 0)
  // A new ident file takes effect on RELOAD.
  fs.writeFileSync(`${tp.dir}/hba.conf`, 'hostssl all all 127.0.0.1/32 cert map=certs\n')
  fs.writeFileSync(`${tp.dir}/ident.conf`, `certs ${pgi.user}@example.com ${u().user}\n`)
  assert.equal((await tp.rt.reload()).ok, true)
  assert.equal((await login(u().user)).code, 0, 'now mapped to the other user')
  assert.notEqual((await login(pgi.user)).code, 0, 'and no longer to the first')
})
