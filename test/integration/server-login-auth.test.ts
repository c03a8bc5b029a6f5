// tidepool's own login to a server, against servers that try to pass as PostgreSQL without
// knowing the password: a small net.Server per case speaks just enough of the protocol. Each
// must end in an error for the waiting client and a log line, never in a session; the real
// PostgreSQL still logs in under the same require_auth. And a legal but large SCRAM iteration
// count is computed off the event loop: other clients' queries answer meanwhile.
import { test, before, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import pg from 'pg'
import { sharedPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import * as build from '../../src/protocol/build.ts'
import { TxStatus } from '../../src/protocol/codes.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

type Scenario = 'ok-after-initial' | 'ok-no-exchange' | 'cleartext' | 'scram-iterations'

interface FakeServer {
  port: number
  /** Every message type byte and body received after the StartupMessage, in order. */
  received: Array<{ code: string; body: Buffer }>
  /** When the SASLInitialResponse and the SASLResponse arrived (performance.now()). */
  times: { initial: number; response: number }
}

const WELCOME = () => Buffer.concat([build.authenticationOk(), build.backendKeyData(1, 2), build.readyForQuery(TxStatus.Idle)])

/** A server that plays `scenario` with whoever logs in; `iterations` for scram-iterations. */
async function fakeServer(t: TestContext, scenario: Scenario, iterations = 4096): Promise<FakeServer> {
  const fake: FakeServer = { port: 0, received: [], times: { initial: 0, response: 0 } }
  const sockets = new Set<net.Socket>()
  const server = net.createServer((sock) => {
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
    sock.on('error', () => {})
    let buf = Buffer.alloc(0)
    let isStarted = false
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d])
      for (;;) {
        if (!isStarted) {
          if (buf.length < 8 || buf.length < buf.readInt32BE(0)) return
          const isSslRequest = buf.readInt32BE(0) === 8 && buf.readInt32BE(4) === 80877103
          buf = buf.subarray(buf.readInt32BE(0))
          if (isSslRequest) {
            sock.write('N')
            continue
          }
          isStarted = true
          if (scenario === 'ok-no-exchange') sock.write(WELCOME())
          else if (scenario === 'cleartext') sock.write(build.authenticationCleartextPassword())
          else sock.write(build.authenticationSasl(['SCRAM-SHA-256']))
          continue
        }
        if (buf.length < 5 || buf.length < 1 + buf.readInt32BE(1)) return
        const len = buf.readInt32BE(1)
        const msg = { code: String.fromCharCode(buf[0]), body: buf.subarray(5, 1 + len) }
        buf = buf.subarray(1 + len)
        fake.received.push(msg)
        if (msg.code !== 'p') continue
        if (scenario === 'ok-after-initial') sock.write(WELCOME())
        if (scenario === 'cleartext') sock.write(WELCOME())
        if (scenario === 'scram-iterations') {
          if (fake.times.initial === 0) {
            fake.times.initial = performance.now()
            const clientFirst = msg.body.toString('utf8', msg.body.indexOf(0) + 5)
            const nonce = /r=([^,]*)/.exec(clientFirst)?.[1] ?? ''
            sock.write(build.authenticationSaslContinue(Buffer.from(`r=${nonce}server,s=${Buffer.alloc(16, 9).toString('base64')},i=${iterations}`)))
          } else {
            fake.times.response = performance.now()
            sock.end(build.errorResponse({ severity: 'FATAL', code: '28P01', message: 'fake server: the end' }))
          }
        }
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  t.after(() => new Promise<void>((r) => {
    server.close(() => r())
    for (const sock of sockets) sock.destroy()
  }))
  fake.port = (server.address() as net.AddressInfo).port
  return fake
}

/** A client of the entry `db` through tidepool: it must be refused with `message`, not get a session. */
async function refused(port: number, db: string, message: RegExp): Promise<void> {
  // A user the harness's default auth_file knows (trust admits no other); the entry's user= logs in to the server.
  const c = new pg.Client({ host: '127.0.0.1', port, database: db, user: TEST_USERS.scram.user })
  c.on('error', () => {})
  try {
    await assert.rejects(c.connect(), (e: any) => message.test(e.message), db)
  } finally {
    // A session that should not exist must not keep tidepool's shutdown waiting either.
    c.end().catch(() => {})
  }
}

test('the server login refuses AuthenticationOk right after SASLInitialResponse', { timeout: 30_000 }, async (t) => {
  const fake = await fakeServer(t, 'ok-after-initial')
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'trust' },
    databases: { fake: `host=127.0.0.1 port=${fake.port} dbname=x user=u password=secret-pw` },
  })
  await refused(tp.port, 'fake', /server login failed: server sent AuthenticationOk without completing SCRAM/)
  assert.ok(tp.logs.some((l) => l.includes('without completing SCRAM')), 'a log line names the cause')
})

test('server_require_auth = scram-sha-256: AuthenticationOk with no exchange is refused; the real PostgreSQL still logs in', { timeout: 30_000 }, async (t) => {
  const fake = await fakeServer(t, 'ok-no-exchange')
  const s = TEST_USERS.scram
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'trust' },
    tidepool: { server_require_auth: 'scram-sha-256' },
    databases: {
      fake: `host=127.0.0.1 port=${fake.port} dbname=x user=u password=secret-pw`,
      app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${s.user} password=${s.password}`,
    },
  })
  await refused(tp.port, 'fake', /authentication method requirement "scram-sha-256" failed: server did not complete authentication/)
  assert.ok(tp.logs.some((l) => l.includes('server did not complete authentication')), 'a log line names the cause')
  const c = await tp.connect(t, { database: 'app', user: s.user })
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, s.user)
})

test('require_auth=scram-sha-256 on the entry: a cleartext request gets no password', { timeout: 30_000 }, async (t) => {
  const fake = await fakeServer(t, 'cleartext')
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'trust' },
    databases: { fake: `host=127.0.0.1 port=${fake.port} dbname=x user=u password=secret-pw require_auth=scram-sha-256` },
  })
  await refused(tp.port, 'fake', /authentication method requirement "scram-sha-256" failed: server requested a cleartext password/)
  assert.ok(!fake.received.some((m) => m.body.includes('secret-pw')), 'the password never left tidepool')
  assert.ok(tp.logs.some((l) => l.includes('server requested a cleartext password')))
})

test('a SCRAM iteration count above server_scram_max_iterations is refused', { timeout: 30_000 }, async (t) => {
  const fake = await fakeServer(t, 'scram-iterations', 15_000_000)
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'trust' },
    databases: { fake: `host=127.0.0.1 port=${fake.port} dbname=x user=u password=secret-pw` },
  })
  const started = performance.now()
  await refused(tp.port, 'fake', /server asked for 15000000 SCRAM iterations, more than server_scram_max_iterations \(100000\)/)
  assert.ok(performance.now() - started < 2_000, 'refused without computing')
  assert.equal(fake.times.response, 0, 'no SASLResponse was sent')
  assert.ok(tp.logs.some((l) => l.includes('server_scram_max_iterations')))
})

test('a large legal SCRAM iteration count is computed off the event loop: other clients\' queries answer meanwhile', { timeout: 60_000 }, async (t) => {
  const iterations = 1_000_000
  const fake = await fakeServer(t, 'scram-iterations', iterations)
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'trust' },
    tidepool: { server_scram_max_iterations: iterations },
    databases: {
      fake: `host=127.0.0.1 port=${fake.port} dbname=x user=u password=secret-pw`,
      app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password}`,
    },
  })
  const other = await tp.connect(t, { database: 'app', user: pgi.user })
  const login = refused(tp.port, 'fake', /fake server: the end/)
  await waitFor(() => fake.times.initial > 0, { timeoutMs: 10_000, what: 'SASLInitialResponse' })
  const answered: number[] = []
  // Queries and timers keep going while PBKDF2 runs; before the fix nothing ran until it was done.
  let maxGap = 0
  let last = performance.now()
  const tick = setInterval(() => {
    const now = performance.now()
    maxGap = Math.max(maxGap, now - last)
    last = now
  }, 5)
  try {
    while (fake.times.response === 0) {
      await other.query('SELECT 1')
      answered.push(performance.now())
    }
  } finally {
    clearInterval(tick)
  }
  await login
  const during = answered.filter((at) => at < fake.times.response).length
  t.diagnostic(`PBKDF2 window ${(fake.times.response - fake.times.initial).toFixed(0)} ms, ${during} queries answered in it, longest timer gap ${maxGap.toFixed(0)} ms`)
  assert.ok(during >= 5, `queries answered while PBKDF2 ran (${during})`)
  assert.ok(maxGap < (fake.times.response - fake.times.initial) / 2, `the event loop stayed free (longest gap ${maxGap.toFixed(0)} ms)`)
})
