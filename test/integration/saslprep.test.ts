// SASLprep end to end: a PostgreSQL role whose password has a non-ASCII space and accented
// letters, stored by PostgreSQL as a SCRAM verifier of the composed (NFC) form, logs in through
// tidepool with the password written in other normalisation forms and with other spaces, from pg
// and psql. tidepool prepares the password on both sides of the pool: when it checks the client
// against auth_file (a plain password or PostgreSQL's verifier) and when it logs in to PostgreSQL.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { runPsql } from '../harness/clients.ts'

const NFC = 'p\u00E4ss\u00A0w\u00F6rd'            // ä and ö composed, NO-BREAK SPACE
const NFD = 'pa\u0308ss\u00A0wo\u0308rd'          // the same letters decomposed
const ASCII_SPACE = 'p\u00E4ss w\u00F6rd'         // a plain space
const FIGURE_SPACE_NFD = 'pa\u0308ss\u2007wo\u0308rd'
const NO_SPACE = 'p\u00E4ssw\u00F6rd'

let pgi: PgInstance
const role = `tp_saslprep_${randomBytes(3).toString('hex')}`
before(async () => {
  pgi = await sharedPostgres()
  await pgi.query(`CREATE ROLE ${role} LOGIN PASSWORD '${NFC}'`)
})
after(async () => {
  await pgi.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {})
})

async function login(port: number, password: string): Promise<string> {
  const c = new pg.Client({ host: '127.0.0.1', port, database: 'app', user: role, password })
  c.on('error', () => {})
  try {
    await c.connect()
    return `ok:${(await c.query('SELECT current_user AS u')).rows[0].u}`
  } catch (e: any) {
    return `${e.code}:${e.message}`
  } finally {
    await c.end().catch(() => {})
  }
}

const databases = () => ({ app: `host=127.0.0.1 port=${pgi.port} dbname=app` })

test('PostgreSQL stored a SCRAM verifier and takes the password in any normalisation form', { timeout: 30_000 }, async () => {
  const rows = await pgi.query('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [role])
  assert.match(rows[0].rolpassword, /^SCRAM-SHA-256\$/)
  assert.equal(await login(pgi.port, FIGURE_SPACE_NFD), `ok:${role}`, 'the premise: PostgreSQL itself applies SASLprep')
})

test('auth_type scram-sha-256 with a plain password in auth_file: other forms log in, via pg and psql', { timeout: 60_000 }, async (t) => {
  // auth_file holds yet another form; the server login derives its keys from it too.
  const tp = await startTidepool(t, pgi, { settings: { auth_type: 'scram-sha-256' }, databases: databases(), userlist: { [role]: NFD } })
  assert.equal(await login(tp.port, ASCII_SPACE), `ok:${role}`)
  assert.equal(await login(tp.port, NFC), `ok:${role}`)
  const psql = await runPsql({ port: tp.port, user: role, password: FIGURE_SPACE_NFD, db: 'dbname=app sslmode=disable', sql: 'SELECT current_user' })
  assert.equal(psql.code, 0, psql.stderr)
  assert.equal(psql.stdout.trim(), role)
  assert.equal((await login(tp.port, NO_SPACE)).split(':')[0], '28P01', 'a different password is still refused')
})

test('auth_type plain with PostgreSQL\'s own verifier in auth_file: a cleartext password in another form matches it', { timeout: 60_000 }, async (t) => {
  const verifier = (await pgi.query('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [role]))[0].rolpassword as string
  const tp = await startTidepool(t, pgi, { settings: { auth_type: 'plain' }, databases: databases(), userlist: { [role]: verifier } })
  assert.equal(await login(tp.port, NFD), `ok:${role}`, 'and the ClientKey it proves logs tidepool in to PostgreSQL')
  const psql = await runPsql({ port: tp.port, user: role, password: FIGURE_SPACE_NFD, db: 'dbname=app sslmode=disable', sql: 'SELECT current_user' })
  assert.equal(psql.code, 0, psql.stderr)
  assert.equal((await login(tp.port, NO_SPACE)).split(':')[0], '28P01')
})
