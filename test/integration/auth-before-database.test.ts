// Authentication comes before "no such database", as in PgBouncer: a client that cannot prove who
// it is gets the same 28P01 for a database that exists and one that does not, with users from
// auth_file, users looked up by auth_user/auth_query (global or per entry), and '*' databases whose
// lookup runs in a database of the client's naming. Only an authenticated client hears
// "no such database".
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import pg from 'pg'
import { sharedPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const scram = () => TEST_USERS.scram
const md5 = () => TEST_USERS.md5
const server = () => `host=127.0.0.1 port=${pgi.port}`

async function loginError(tp: TestTidepool, user: string, password: string, database: string): Promise<{ code: string; message: string }> {
  const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database, user, password })
  c.on('error', () => {})
  try {
    await c.connect()
  } catch (e: any) {
    return { code: e.code, message: e.message }
  }
  await c.end()
  return { code: 'none', message: `login of ${user} to ${database} worked` }
}

const wrongPassword = (user: string) => ({ code: '28P01', message: `password authentication failed for user "${user}"` })

test('auth_file users: a wrong password or an unknown user gets 28P01 whether the database exists or not; "no such database" only after authentication', { timeout: 60_000 }, async (t) => {
  for (const authType of ['md5', 'scram-sha-256', 'plain']) {
    const tp = await startTidepool(t, pgi, {
      settings: { auth_type: authType },
      databases: { app: `${server()} dbname=app` },
      userlist: { [scram().user]: scram().password },
    })
    for (const database of ['app', 'tp_no_such_db']) {
      assert.deepEqual(await loginError(tp, scram().user, 'wrong', database), wrongPassword(scram().user), `${authType}, wrong password, ${database}`)
      assert.deepEqual(await loginError(tp, 'tp_nobody', 'x', database), wrongPassword('tp_nobody'), `${authType}, unknown user, ${database}`)
    }
    assert.deepEqual(await loginError(tp, scram().user, scram().password, 'tp_no_such_db'), { code: '3D000', message: 'no such database: tp_no_such_db' }, authType)
    const c = await tp.connect(t, { user: scram().user, password: scram().password })
    assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, scram().user)
  }
})

test('auth_user (global or per entry): a missing database is not looked up and answers like a wrong password', { timeout: 60_000 }, async (t) => {
  const global = await startTidepool(t, pgi, {
    settings: { auth_type: 'md5', auth_user: pgi.user },
    databases: { app: `${server()} dbname=app` },
    userlist: { [pgi.user]: pgi.password },
  })
  const perEntry = await startTidepool(t, pgi, {
    settings: { auth_type: 'md5' },
    databases: { app: `${server()} dbname=app auth_user=${pgi.user}` },
    userlist: { [pgi.user]: pgi.password },
  })
  for (const tp of [global, perEntry]) {
    for (const database of ['app', 'tp_no_such_db']) {
      assert.deepEqual(await loginError(tp, md5().user, 'wrong', database), wrongPassword(md5().user), database)
      assert.deepEqual(await loginError(tp, 'tp_nobody', 'x', database), wrongPassword('tp_nobody'), database)
    }
    const c = await tp.connect(t, { user: md5().user, password: md5().password })
    assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, md5().user, 'the looked-up user still logs in')
    assert.ok(!tp.logs.some((l) => l.includes('[auth_query.config_error]')), tp.logs.join('\n'))
  }
})

test('auto-database "*" with auth_user: a database the server lacks answers like a wrong password, not "bouncer config error"', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'md5', auth_user: pgi.user },
    databases: { '*': server() },
    userlist: { [pgi.user]: pgi.password },
  })
  for (const database of ['app', 'tp_no_such_db']) {
    assert.deepEqual(await loginError(tp, md5().user, 'wrong', database), wrongPassword(md5().user), database)
    assert.deepEqual(await loginError(tp, 'tp_nobody', 'x', database), wrongPassword('tp_nobody'), database)
  }
  const c = await tp.connect(t, { user: md5().user, password: md5().password })
  assert.equal((await c.query('SELECT current_database() AS d')).rows[0].d, 'app')
  // An auth_file user who proved the password hears what the server says of the database.
  assert.equal((await loginError(tp, pgi.user, pgi.password, 'tp_no_such_db')).code, '3D000')
  assert.ok(tp.logs.some((l) => l.includes('[auth_query.failed]') && l.includes('tp_no_such_db')), 'the log names the cause')
})
