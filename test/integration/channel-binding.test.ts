// SCRAM-SHA-256-PLUS (channel binding, tls-server-end-point) on both sides of tidepool, with real
// clients and a real PostgreSQL: psql's channel_binding=require and node-postgres's
// enableChannelBinding log in through tidepool over TLS and are refused without it; tidepool's own
// login to a PostgreSQL with ssl=on binds to the server's certificate. A fake server that offers
// only -PLUS shows tidepool choosing it and binding to the certificate it was shown.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import pg from 'pg'
import { sharedPostgres, startPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { makeCerts, makeServerCert } from '../harness/certs.ts'
import { runPsql, waitFor } from '../harness/clients.ts'
import * as build from '../../src/protocol/build.ts'
import { ScramServerExchange, type ScramStep } from '../../src/auth/scram-server.ts'
import { localEndPoint } from '../../src/net/channel-binding.ts'
import { SqlState } from '../../src/protocol/pg-error.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const u = () => TEST_USERS.scram

test('client side: psql channel_binding=require and pg enableChannelBinding log in over TLS; without TLS psql refuses clearly', { timeout: 60_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'scram-sha-256', client_tls_sslmode: 'prefer', client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert },
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
    userlist: { [u().user]: u().password },
  })
  const bound = await runPsql({ port: tp.port, user: u().user, password: u().password, db: 'dbname=app sslmode=require channel_binding=require', sql: `SELECT 'bound ' || current_user` })
  assert.equal(bound.code, 0, bound.stderr)
  assert.equal(bound.stdout.trim(), `bound ${u().user}`)
  const plain = await runPsql({ port: tp.port, user: u().user, password: u().password, db: 'dbname=app sslmode=disable channel_binding=require', sql: 'SELECT 1' })
  assert.notEqual(plain.code, 0, 'no TLS, no channel binding')
  assert.match(plain.stderr, /channel binding/)
  const wrong = await runPsql({ port: tp.port, user: u().user, password: 'not-it', db: 'dbname=app sslmode=require channel_binding=require', sql: 'SELECT 1' })
  assert.match(wrong.stderr, /password authentication failed/, 'binding does not stand in for the password')

  const c = new pg.Client({ host: 'localhost', port: tp.port, database: 'app', user: u().user, password: u().password, ssl: { ca: fs.readFileSync(certs.caCert) }, enableChannelBinding: true } as pg.ClientConfig)
  c.on('error', () => {})
  await c.connect()
  t.after(() => c.end())
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1)
})

test('server side: tidepool logs in to a PostgreSQL with ssl=on using SCRAM-SHA-256-PLUS', { timeout: 90_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const pgCert = makeServerCert(certs, 'pg', 'localhost', 'DNS:localhost,IP:127.0.0.1')
  const tlsPg = await startPostgres({ settings: { ssl: 'on', ssl_cert_file: pgCert.cert, ssl_key_file: pgCert.key } })
  t.after(() => tlsPg.stop())
  const tp = await startTidepool(t, tlsPg, {
    settings: { server_tls_sslmode: 'require' },
    databases: { app: `host=127.0.0.1 port=${tlsPg.port} dbname=app user=${u().user} password=${u().password}` },
  })
  const c = await tp.connect(t, { user: u().user })
  // PostgreSQL offers -PLUS over TLS and checks the binding data: a login that got in bound correctly.
  assert.equal((await c.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0].ssl, true)
})

test('server side: a server offering only SCRAM-SHA-256-PLUS gets it, bound to the certificate it presented', { timeout: 30_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const seen: { mechanism?: string; step?: ScramStep['kind']; error?: string } = {}
  const server = net.createServer((raw) => fakePlusServer(raw, certs, seen))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  t.after(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  const tp = await startTidepool(t, pgi, {
    settings: { server_tls_sslmode: 'require' },
    databases: { app: `host=127.0.0.1 port=${port} dbname=app user=${u().user} password=${u().password}` },
  })
  await assert.rejects(tp.connect(t, { user: u().user }), /fake server: SCRAM-SHA-256-PLUS login checked/)
  await waitFor(() => seen.step !== undefined || seen.error !== undefined, { timeoutMs: 5_000, what: 'the exchange' })
  assert.equal(seen.error, undefined)
  assert.equal(seen.mechanism, 'SCRAM-SHA-256-PLUS')
  assert.equal(seen.step, 'ok', 'proof and binding data checked by the same code that checks clients')
})

/** SSLRequest → 'S' → TLS → startup → SCRAM with -PLUS only; ends with an ErrorResponse naming the outcome. */
function fakePlusServer(raw: net.Socket, certs: ReturnType<typeof makeCerts>, seen: { mechanism?: string; step?: ScramStep['kind']; error?: string }): void {
  raw.on('error', () => {})
  raw.once('data', (req) => {
    if (req.length !== 8) return raw.destroy()
    raw.write('S')
    const s = new tls.TLSSocket(raw, { isServer: true, key: fs.readFileSync(certs.serverKey), cert: fs.readFileSync(certs.serverCert) })
    s.on('error', () => {})
    const scram = new ScramServerExchange(u().user, u().password, 4096)
    let buf = Buffer.alloc(0)
    let isStarted = false
    // PBKDF2 of a plain password runs on the threadpool: handle one read at a time.
    let queue: Promise<void> = Promise.resolve()
    s.on('data', (d: Buffer) => { queue = queue.then(() => onData(d)) })
    const onData = async (d: Buffer): Promise<void> => {
      buf = Buffer.concat([buf, d])
      try {
        for (;;) {
          const head = isStarted ? 5 : 4
          if (buf.length < head) return
          const len = buf.readInt32BE(head - 4) + head - 4
          if (buf.length < len) return
          const msg = buf.subarray(0, len)
          buf = buf.subarray(len)
          if (!isStarted) {
            isStarted = true
            // The exchange binds to our certificate; the offer on the wire is -PLUS alone.
            scram.start(localEndPoint(s))
            s.write(build.authenticationSasl(['SCRAM-SHA-256-PLUS']))
            continue
          }
          if (seen.mechanism === undefined) seen.mechanism = msg.toString('utf8', 5, msg.indexOf(0, 5))
          const step = await scram.onMessage(msg, 5, msg.length)
          if (step.kind === 'continue') { s.write(step.send); continue }
          seen.step = step.kind
          if (step.kind === 'ok') s.write(step.send)
          s.end(build.errorResponse({ severity: 'FATAL', code: SqlState.InvalidAuthorizationSpecification, message: `fake server: SCRAM-SHA-256-PLUS login checked (${step.kind})` }))
          return
        }
      } catch (err) {
        seen.error = (err as Error).message
        s.destroy()
      }
    }
  })
}
