// trust (and cert) check no secret, but as in PgBouncer they admit only users tidepool knows: a
// line of auth_file, or a row auth_query returns (auth_user global or per entry). Anyone else gets
// PgBouncer's `"trust" authentication failed`, a forced user= in the entry notwithstanding, and
// that before "no such database". The admin console follows the same rule.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import pg from 'pg'
import { sharedPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { makeCerts } from '../harness/certs.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const md5 = () => TEST_USERS.md5
const scram = () => TEST_USERS.scram
const server = () => `host=127.0.0.1 port=${pgi.port}`
/** Every pool logs in to the server as the superuser: what the client's name is worth is up to tidepool. */
const forced = () => `${server()} dbname=app user=${pgi.user} password=${pgi.password}`
const TRUST_FAILED = '08P01:"trust" authentication failed'

async function login(tp: TestTidepool, user: string, database = 'app', opts: { ssl?: pg.ClientConfig['ssl'] } = {}): Promise<string> {
  const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database, user, password: 'not-asked-for', ssl: opts.ssl })
  c.on('error', () => {})
  try {
    await c.connect()
    const r = await c.query(database === 'pgbouncer' ? 'SHOW VERSION' : 'SELECT current_user AS u')
    return database === 'pgbouncer' ? 'ok:console' : `ok:${r.rows[0].u}`
  } catch (e: any) {
    return `${e.code}:${e.message}`
  } finally {
    await c.end().catch(() => {})
  }
}

test('trust admits users of auth_file only, with a forced user too; an unknown name is refused before "no such database"', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'trust' },
    databases: { app: forced() },
    userlist: { tp_listed: 'x' },
  })
  assert.equal(await login(tp, 'tp_listed'), `ok:${pgi.user}`)
  assert.equal(await login(tp, 'nosuchuser'), TRUST_FAILED)
  assert.equal(await login(tp, pgi.user), TRUST_FAILED, 'a server role is not enough: auth_file decides')
  assert.equal(await login(tp, 'nosuchuser', 'tp_no_such_db'), TRUST_FAILED)
  assert.equal(await login(tp, 'tp_listed', 'tp_no_such_db'), '3D000:no such database: tp_no_such_db')
  assert.ok(tp.logs.some((l) => l.includes('no such user: nosuchuser')), 'the log says why')
  // A user added to auth_file is let in after RELOAD.
  fs.appendFileSync(`${tp.dir}/userlist.txt`, '"nosuchuser" "x"\n')
  assert.equal((await tp.rt.reload()).ok, true)
  assert.equal(await login(tp, 'nosuchuser'), `ok:${pgi.user}`)
})

test('trust with auth_user (global or per entry): a user auth_query finds is let in, one it does not find is refused', { timeout: 60_000 }, async (t) => {
  const global = await startTidepool(t, pgi, {
    settings: { auth_type: 'trust', auth_user: pgi.user },
    databases: { app: `${server()} dbname=app` },
    userlist: { [pgi.user]: pgi.password },
  })
  const perEntry = await startTidepool(t, pgi, {
    settings: { auth_type: 'trust' },
    databases: { app: `${server()} dbname=app auth_user=${pgi.user}`, plain: forced() },
    userlist: { [pgi.user]: pgi.password },
  })
  for (const tp of [global, perEntry]) {
    // Found by the lookup; its secret (the md5 hash) also logs the pool's servers in.
    assert.equal(await login(tp, md5().user), `ok:${md5().user}`)
    assert.equal(await login(tp, 'nosuchuser'), TRUST_FAILED)
  }
  assert.equal(await login(perEntry, md5().user, 'plain'), TRUST_FAILED, 'an entry without auth_user looks nothing up')
  assert.equal(global.rt.authQuery.stats.lookups, 2)
})

test('hba trust lines and the admin console follow the same rule', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'hba', auth_hba_file: 'hba.conf', admin_users: `${scram().user},tp_admin_unlisted` },
    databases: { app: forced() },
    userlist: { [scram().user]: scram().password },
    files: { 'hba.conf': 'host all all 127.0.0.1/32 trust\n' },
  })
  assert.equal(await login(tp, scram().user), `ok:${pgi.user}`)
  assert.equal(await login(tp, 'nosuchuser'), TRUST_FAILED)
  assert.equal(await login(tp, scram().user, 'pgbouncer'), 'ok:console')
  assert.equal(await login(tp, 'tp_admin_unlisted', 'pgbouncer'), TRUST_FAILED, 'admin_users alone does not make a user known')

  const plain = await startTidepool(t, pgi, {
    settings: { auth_type: 'trust', stats_users: md5().user },
    databases: { app: forced() },
    userlist: { [scram().user]: 'x', [md5().user]: 'x' },
  })
  assert.equal(await login(plain, md5().user, 'pgbouncer'), 'ok:console')
  assert.equal(await login(plain, scram().user, 'pgbouncer'), '08P01:not allowed', 'known, but not a console user')
  assert.equal(await login(plain, 'nosuchuser', 'pgbouncer'), TRUST_FAILED)
})

test('auth_type cert: a verified certificate for a user auth_file does not know is refused', { timeout: 90_000 }, async (t) => {
  const certs = makeCerts(t, 'tp_cert_user')
  const tp = await startTidepool(t, pgi, {
    settings: {
      auth_type: 'cert', client_tls_sslmode: 'verify-ca',
      client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert, client_tls_ca_file: certs.caCert,
    },
    databases: { app: forced() },
    userlist: { tp_other: 'x' },
  })
  const ssl = { ca: fs.readFileSync(certs.caCert), cert: fs.readFileSync(certs.clientCert), key: fs.readFileSync(certs.clientKey), rejectUnauthorized: false }
  assert.equal(await login(tp, 'tp_cert_user', 'app', { ssl }), '28000:certificate authentication failed for user "tp_cert_user"')
  fs.appendFileSync(`${tp.dir}/userlist.txt`, '"tp_cert_user" "x"\n')
  assert.equal((await tp.rt.reload()).ok, true)
  assert.equal(await login(tp, 'tp_cert_user', 'app', { ssl }), `ok:${pgi.user}`)
})
