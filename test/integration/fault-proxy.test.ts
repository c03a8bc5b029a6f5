// The fault proxy against a tiny echo server: each fault does what tests will rely on it for,
// and set({}) heals it.

import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createConnection, createServer, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { startFaultProxy, type FaultProxy } from '../harness/fault-proxy.ts'
import { waitFor } from '../harness/clients.ts'
import { freePort } from '../harness/ports.ts'

interface Echo { port: number; received: () => number }

// Echoes every byte back; a line `send N\n` instead answers with N bytes of 'x'.
async function startEcho(t: TestContext): Promise<Echo> {
  let received = 0
  const sockets = new Set<Socket>()
  const server = createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    s.on('data', (b: Buffer) => {
      received += b.length
      const m = /^send (\d+)\n$/.exec(b.toString())
      s.write(m ? Buffer.alloc(Number(m[1]), 'x') : b)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    for (const s of sockets) s.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const address = server.address()
  assert.ok(address !== null && typeof address !== 'string')
  return { port: address.port, received: () => received }
}

interface Client { socket: Socket; data: () => Buffer; closed: () => boolean; error: () => string | null }

async function connect(t: TestContext, port: number): Promise<Client> {
  const socket = createConnection({ host: '127.0.0.1', port })
  const chunks: Buffer[] = []
  let closed = false
  let error: string | null = null
  socket.on('data', (b: Buffer) => chunks.push(b))
  socket.on('error', (e: NodeJS.ErrnoException) => { error = e.code ?? e.message })
  socket.on('close', () => { closed = true })
  t.after(() => { socket.destroy() })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('close', () => reject(new Error('closed before connect')))
  })
  return { socket, data: () => Buffer.concat(chunks), closed: () => closed, error: () => error }
}

async function setup(t: TestContext): Promise<{ echo: Echo; proxy: FaultProxy }> {
  const echo = await startEcho(t)
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: echo.port })
  t.after(() => proxy.close())
  return { echo, proxy }
}

async function roundTrip(c: Client, text: string): Promise<number> {
  const before = c.data().length
  const started = performance.now()
  c.socket.write(text)
  await waitFor(() => c.data().length >= before + text.length, { timeoutMs: 5_000, what: `echo of ${text}` })
  return performance.now() - started
}

test('forwards both ways unchanged and counts open connections', { timeout: 10_000 }, async (t) => {
  const { proxy } = await setup(t)
  const a = await connect(t, proxy.port)
  const b = await connect(t, proxy.port)
  await roundTrip(a, 'hello')
  await roundTrip(b, 'world')
  assert.equal(a.data().toString(), 'hello')
  assert.equal(b.data().toString(), 'world')
  assert.equal(proxy.connections(), 2)
  a.socket.end()
  await waitFor(() => proxy.connections() === 1 && a.closed(), { timeoutMs: 5_000, what: 'a to close through the proxy' })
  await roundTrip(b, '!')
  assert.equal(b.data().toString(), 'world!')
})

test('delayMs adds latency to each direction and keeps byte order', { timeout: 10_000 }, async (t) => {
  const { proxy } = await setup(t)
  const c = await connect(t, proxy.port)
  await roundTrip(c, 'warm')
  proxy.set({ delayMs: 100 })
  const rttMs = await roundTrip(c, 'slow')
  assert.ok(rttMs >= 195, `round trip took ${rttMs} ms, expected >= 200`)
  const parts = Array.from({ length: 50 }, (_, i) => `<${i}>`)
  for (const p of parts) c.socket.write(p)
  const expected = 'warmslow' + parts.join('')
  await waitFor(() => c.data().length >= expected.length, { timeoutMs: 5_000, what: 'all delayed parts' })
  assert.equal(c.data().toString(), expected)
  proxy.set({})
  const healedMs = await roundTrip(c, 'fast')
  assert.ok(healedMs < 150, `round trip after set({}) took ${healedMs} ms`)
})

test('stall holds traffic without closing, and set({}) lets it through', { timeout: 10_000 }, async (t) => {
  const { echo, proxy } = await setup(t)
  const c = await connect(t, proxy.port)
  await roundTrip(c, 'a')
  proxy.set({ stall: true })
  c.socket.write('held')
  // Absence cannot be awaited; give the bytes ample time to (wrongly) get through.
  await sleep(200)
  assert.equal(echo.received(), 1, 'the server saw nothing while stalled')
  assert.equal(c.data().toString(), 'a')
  assert.equal(c.closed(), false)
  assert.equal(proxy.connections(), 1)
  proxy.set({})
  await waitFor(() => c.data().toString() === 'aheld', { timeoutMs: 5_000, what: 'held bytes after the stall' })
})

test('holdNew holds connections opened meanwhile and lets older ones flow, until lifted', { timeout: 10_000 }, async (t) => {
  const { echo, proxy } = await setup(t)
  const old = await connect(t, proxy.port)
  await roundTrip(old, 'a')
  proxy.set({ holdNew: true })
  const late = await connect(t, proxy.port)
  late.socket.write('held')
  await roundTrip(old, 'b')
  // Absence cannot be awaited; give the bytes ample time to (wrongly) get through.
  await sleep(200)
  assert.equal(echo.received(), 2, 'the server saw only the older connection\'s bytes')
  assert.equal(late.data().length, 0)
  assert.equal(late.closed(), false)
  assert.equal(proxy.connections(), 2)
  proxy.set({})
  await waitFor(() => late.data().toString() === 'held', { timeoutMs: 5_000, what: 'held bytes once holdNew is lifted' })
})

test('cutAfterBytes delivers exactly N bytes from the server, then closes', { timeout: 10_000 }, async (t) => {
  const { proxy } = await setup(t)
  const c = await connect(t, proxy.port)
  proxy.set({ cutAfterBytes: 300 })
  c.socket.write('send 100000\n')
  await waitFor(() => c.closed(), { timeoutMs: 5_000, what: 'the cut' })
  assert.equal(c.data().length, 300)
  await waitFor(() => proxy.connections() === 0, { timeoutMs: 5_000, what: 'the cut link to go' })
  // New connections count from their own start.
  const d = await connect(t, proxy.port)
  d.socket.write('send 200\n')
  await waitFor(() => d.data().length === 200, { timeoutMs: 5_000, what: '200 bytes under the cut' })
  assert.equal(d.closed(), false)
})

test('refuse closes new connections at once and spares open ones', { timeout: 10_000 }, async (t) => {
  const { echo, proxy } = await setup(t)
  const open = await connect(t, proxy.port)
  proxy.set({ refuse: true })
  const refused = createConnection({ host: '127.0.0.1', port: proxy.port })
  refused.on('error', () => {})
  t.after(() => { refused.destroy() })
  const got: Buffer[] = []
  refused.on('data', (b: Buffer) => got.push(b))
  refused.write('anyone?')
  await new Promise<void>((resolve) => refused.once('close', () => resolve()))
  assert.equal(got.length, 0)
  assert.equal(proxy.connections(), 1)
  await roundTrip(open, 'still here')
  assert.equal(echo.received(), 'still here'.length, 'the refused bytes never reached the server')
  proxy.set({})
  await roundTrip(await connect(t, proxy.port), 'back')
})

test('resetAll resets every current connection; new ones work', { timeout: 10_000 }, async (t) => {
  const { proxy } = await setup(t)
  const a = await connect(t, proxy.port)
  const b = await connect(t, proxy.port)
  await roundTrip(a, 'a')
  await roundTrip(b, 'b')
  proxy.set({ resetAll: true })
  await waitFor(() => a.closed() && b.closed(), { timeoutMs: 5_000, what: 'both clients closed' })
  assert.equal(a.error(), 'ECONNRESET')
  assert.equal(b.error(), 'ECONNRESET')
  assert.equal(proxy.connections(), 0)
  await roundTrip(await connect(t, proxy.port), 'new')
})

test('a target that refuses connections closes the client', { timeout: 10_000 }, async (t) => {
  const nobody = await freePort()
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: nobody })
  t.after(() => proxy.close())
  const c = await connect(t, proxy.port)
  await waitFor(() => c.closed(), { timeoutMs: 5_000, what: 'client closed when the target refused' })
  assert.equal(proxy.connections(), 0)
})
