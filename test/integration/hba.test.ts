// auth_type hba and cert as PgBouncer operators configure them: the first matching line of
// auth_hba_file decides (PostgreSQL's error texts), RELOAD picks up a new file, and certificate
// logins need a verified client certificate whose CN is the user.
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
    userlist: { [u().user]: u().password, alice: 'a' },
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
  })
  const ok = await runPsql({ port: tp.port, user: pgi.user, db: `dbname=app sslmode=require sslcert=${certs.clientCert} sslkey=${certs.clientKey}`, sql: 'SELECT current_user' })
  assert.equal(ok.code, 0, ok.stderr)
  assert.equal(ok.stdout.trim(), pgi.user)
  const other = await runPsql({ port: tp.port, user: 'someone_else', db: `dbname=app sslmode=require sslcert=${certs.clientCert} sslkey=${certs.clientKey}`, sql: 'SELECT 1' })
  assert.notEqual(other.code, 0)
  assert.match(other.stderr, /certificate authentication failed for user "someone_else"/)
})
