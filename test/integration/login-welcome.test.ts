// The end of a login and of a short connection, as connection churn exercises them: the welcome
// (AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery) is partly reused between logins
// of a pool (client-login.ts), so each client must still get its own parameter values and its own
// cancel key; and a client that says Terminate is closed at once, its server kept for the next.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import { rawClient, startupPacket, type RawClient } from '../harness/raw-client.ts'
import * as build from '../../src/protocol/build.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

interface Welcome { params: Map<string, string>; names: string[]; key: string }

/** The welcome a raw client got: its ParameterStatus values (and their names in order, repeats included) and its cancel key. */
function welcomeOf(c: RawClient): Welcome {
  const b = c.received
  const params = new Map<string, string>()
  const names: string[] = []
  let key = ''
  for (let at = 0; at + 5 <= b.length; at += 1 + b.readInt32BE(at + 1)) {
    const end = at + 1 + b.readInt32BE(at + 1)
    if (b[at] === 0x53) {
      const [name, value] = b.subarray(at + 5, end - 1).toString('utf8').split('\0')
      params.set(name, value)
      names.push(name)
    } else if (b[at] === 0x4b) {
      key = b.subarray(at + 5, end).toString('hex')
    }
  }
  return { params, names, key }
}

async function login(t: import('node:test').TestContext, port: number, extra: Record<string, string>): Promise<RawClient> {
  const c = await rawClient(t, port)
  c.sock.write(startupPacket({ user: pgi.user, database: 'app', ...extra }))
  await waitFor(() => c.hasReadyForQuery() || c.isClosed, { timeoutMs: 10_000, what: 'ReadyForQuery' })
  assert.equal(c.error(), null)
  return c
}

test('logins one after another with different parameters each get their own values and their own cancel key', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2 } })
  const order: Array<{ application_name?: string; DateStyle?: string }> = [
    { application_name: 'churn-one' },
    { application_name: 'churn-two', DateStyle: 'German, DMY' },
    { application_name: 'churn-one' },
    {},
    { application_name: 'churn-two', DateStyle: 'German, DMY' },
    { DateStyle: 'SQL, MDY' },
  ]
  const welcomes: Welcome[] = []
  for (const extra of order) welcomes.push(welcomeOf(await login(t, tp.port, extra as Record<string, string>)))
  const poolDefault = welcomes[3].params.get('application_name')
  assert.notEqual(poolDefault, 'churn-one', 'a client that names none gets the pool\'s value, not the previous login\'s')
  assert.notEqual(poolDefault, 'churn-two')
  order.forEach((extra, i) => {
    const w = welcomes[i]
    assert.equal(w.params.get('application_name'), extra.application_name ?? poolDefault, `login ${i}: application_name`)
    assert.equal(w.params.get('DateStyle'), extra.DateStyle ?? welcomes[0].params.get('DateStyle'), `login ${i}: DateStyle`)
    assert.equal(new Set(w.names).size, w.names.length, `login ${i}: each parameter once`)
    assert.ok(w.names.includes('server_version') && w.names.includes('client_encoding'), `login ${i}: the server's parameters too`)
  })
  assert.equal(new Set(welcomes.map((w) => w.key)).size, welcomes.length, 'every client its own BackendKeyData')
})

test('a client that sends Terminate is closed with a FIN, not a reset, and its server serves the next client', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  for (let i = 0; i < 5; i++) {
    const c = await login(t, tp.port, {})
    const from = c.received.length
    c.sock.write(build.query(`SELECT ${i} AS n`))
    await waitFor(() => c.hasReadyForQuery(from), { timeoutMs: 10_000, what: 'the query\'s ReadyForQuery' })
    let isEnded = false
    let resetError: Error | null = null
    c.sock.on('end', () => { isEnded = true })
    c.sock.on('error', (e) => { resetError = e })
    c.sock.write(build.terminate())
    await waitFor(() => c.isClosed, { timeoutMs: 10_000, what: 'the close after Terminate' })
    assert.equal(resetError, null)
    assert.ok(isEnded, 'the client read an orderly end of stream')
  }
  const last = await tp.connect(t)
  assert.equal((await last.query('SELECT 42 AS n')).rows[0].n, 42)
  const counts = tp.poolCounts('app', pgi.user)
  assert.equal(counts.cl_active + counts.cl_waiting, 1, 'the terminated clients are gone')
  assert.equal(counts.sv_active + counts.sv_idle + counts.sv_used, 1, 'one server served them all')
})
