// A raw client socket for tests that send bytes no driver would: it collects everything it
// receives, notes when it closes, and parses the first ErrorResponse.
// Must not: outlive its test (destroyed in t.after).

import net from 'node:net'
import type { TestContext } from 'node:test'
import * as build from '../../src/protocol/build.ts'
import { parseErrorFields } from '../../src/protocol/reader.ts'

export interface RawClient {
  readonly sock: net.Socket
  readonly received: Buffer
  readonly isClosed: boolean
  /** The first ErrorResponse after `from` (past one-byte SSL/GSS answers, say), parsed. */
  error(from?: number): ReturnType<typeof parseErrorFields> | null
  /** A ReadyForQuery was received after `from`. */
  hasReadyForQuery(from?: number): boolean
}

/** Connects to 127.0.0.1:`target`, or to the unix socket at path `target`. */
export async function rawClient(t: TestContext, target: number | string): Promise<RawClient> {
  const sock = typeof target === 'number' ? net.connect({ host: '127.0.0.1', port: target }) : net.connect({ path: target })
  let received = Buffer.alloc(0)
  let isClosed = false
  sock.on('data', (d) => { received = Buffer.concat([received, d]) })
  sock.on('error', () => {})
  sock.on('close', () => { isClosed = true })
  await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject) })
  t.after(() => sock.destroy())
  const find = (code: number, from: number): number => {
    for (let at = from; at + 5 <= received.length; at += 1 + received.readInt32BE(at + 1)) {
      if (received[at] === code) return at
    }
    return -1
  }
  return {
    sock,
    get received() { return received },
    get isClosed() { return isClosed },
    error(from = 0) {
      const at = find(0x45, from)
      return at < 0 ? null : parseErrorFields(received, at + 5, at + 1 + received.readInt32BE(at + 1))
    },
    hasReadyForQuery(from = 0) {
      return find(0x5a, from) >= 0
    },
  }
}

/** An 8-byte SSLRequest (80877103) or GSSENCRequest (80877104). */
export function encryptionRequest(code: 80877103 | 80877104): Buffer {
  const b = Buffer.alloc(8)
  b.writeInt32BE(8, 0)
  b.writeInt32BE(code, 4)
  return b
}

export const startupPacket = build.startupMessage
