// A server handed back to the pool owes its last client nothing: bytes that follow the releasing
// ReadyForQuery in the same read (a dying backend's FATAL, say) must never reach that client. A
// small stand-in server writes the answer and the FATAL in one write, which real PostgreSQL does
// only by chance (the HA tests met it under kill -9).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import type { PgInstance } from '../harness/postgres.ts'
import * as build from '../../src/protocol/build.ts'
import { TxStatus } from '../../src/protocol/codes.ts'

/** Accepts logins without a password; answers every Query with one row, then FATAL in the same write once `isDying`. */
async function standIn(): Promise<{ port: number; isDying: boolean; logins: number; close(): void }> {
  const sockets = new Set<net.Socket>()
  const state = { port: 0, isDying: false, logins: 0, close: () => {} }
  const srv = net.createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
    let buf = Buffer.alloc(0)
    let isStarted = false
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        if (!isStarted) {
          if (buf.length < 4 || buf.length < buf.readInt32BE(0)) return
          buf = buf.subarray(buf.readInt32BE(0))
          isStarted = true
          state.logins++
          s.write(Buffer.concat([build.authenticationOk(), build.parameterStatus('server_version', '17.0'),
            build.parameterStatus('client_encoding', 'UTF8'), build.backendKeyData(4242, 1), build.readyForQuery(TxStatus.Idle)]))
          continue
        }
        if (buf.length < 5 || buf.length < 1 + buf.readInt32BE(1)) return
        const code = buf[0]
        buf = buf.subarray(1 + buf.readInt32BE(1))
        if (code !== 0x51) continue // only Query; Terminate and the rest need no answer
        const answer = [build.rowDescription([{ name: 'n', typeOid: 23 }]), build.dataRow(['1']), build.commandComplete('SELECT 1'), build.readyForQuery(TxStatus.Idle)]
        if (state.isDying) answer.push(build.errorResponse({ severity: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command' }))
        s.write(Buffer.concat(answer))
        if (state.isDying) s.end()
      }
    })
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  state.port = (srv.address() as net.AddressInfo).port
  state.close = () => {
    for (const s of sockets) s.destroy()
    srv.close()
  }
  return state
}

test("a FATAL in the same read as a released server's ReadyForQuery never reaches the client that just finished", { timeout: 30_000 }, async (t) => {
  const server = await standIn()
  t.after(() => server.close())
  const pgi = { host: '127.0.0.1', port: server.port, user: 'app', password: '', dataDir: '', url: () => '', logs: () => '', query: async () => [], stop: async () => {} } as PgInstance
  const tp = await startTidepool(t, pgi, { settings: { pool_mode: 'transaction', default_pool_size: 1, server_tls_sslmode: 'disable' }, databases: { app: `host=127.0.0.1 port=${server.port} dbname=app user=app` }, userlist: { app: 'x' } })
  const c = await tp.connect(t, { user: 'app' })
  const errors: Error[] = []
  c.on('error', (e) => errors.push(e))
  assert.equal((await c.query('SELECT 1')).rows[0].n, 1)
  server.isDying = true
  assert.equal((await c.query('SELECT 1')).rows[0].n, 1)
  // The server is gone (tidepool closed it on the FATAL); the client is not, and goes on.
  await waitFor(() => tp.logs.some((l) => l.includes('terminating connection due to administrator command')), { timeoutMs: 5_000, what: 'the server to be closed on its FATAL' })
  server.isDying = false
  assert.equal((await c.query('SELECT 1')).rows[0].n, 1)
  assert.deepEqual(errors, [])
  assert.equal(server.logins, 2, 'a new server connection replaced the closed one')
})
