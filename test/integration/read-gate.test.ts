// The read gate: a held socket stays unread whatever its connection asks, and on release reads
// again only if its connection's last wish was to read.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { once } from 'node:events'
import { ReadGate } from '../../src/net/read-gate.ts'

async function socketPair(t: import('node:test').TestContext): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const accepted = once(server, 'connection')
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  const [peer] = (await accepted) as [net.Socket]
  t.after(() => { client.destroy(); peer.destroy(); server.close() })
  return [client, peer]
}

test('a held socket is not read, even when its connection asks to read; release applies the last wish', async (t) => {
  const gate = new ReadGate()
  const [a, b] = await socketPair(t)
  const [c, d] = await socketPair(t)
  const got: string[] = []
  a.on('data', (x) => got.push(`a:${x}`))
  c.on('data', (x) => got.push(`c:${x}`))
  gate.hold(a)
  gate.hold(c)
  assert.equal(gate.isHolding, true)
  gate.setReading(a, false)
  gate.setReading(a, true) // a wants to read: remembered, not applied
  gate.setReading(c, false) // c does not
  b.write('1')
  d.write('2')
  await new Promise((r) => setTimeout(r, 100))
  assert.deepEqual(got, [], 'nothing read while held')
  gate.releaseAll()
  assert.equal(gate.isHolding, false)
  await new Promise((r) => setTimeout(r, 100))
  assert.deepEqual(got, ['a:1'], 'a reads after release; c stays paused as its connection asked')
  gate.setReading(c, true)
  await new Promise((r) => setTimeout(r, 100))
  assert.deepEqual(got, ['a:1', 'c:2'])
})

test('sockets not held follow their connection directly', async (t) => {
  const gate = new ReadGate()
  const [a, b] = await socketPair(t)
  const [other] = await socketPair(t)
  gate.hold(other)
  gate.setReading(a, false)
  assert.equal(a.isPaused(), true)
  gate.setReading(a, true)
  assert.equal(a.isPaused(), false)
  b.write('x')
  await once(a, 'data')
  gate.releaseAll()
})
