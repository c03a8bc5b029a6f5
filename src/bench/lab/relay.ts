// The floor for any Node.js proxy: a bare TCP relay, one server connection per client, bytes passed
// through with no parsing and no pooling. cpu-per-tx.ts measures it beside tidepool to show
// how much of tidepool's CPU per transaction is Node's own socket cost.
//   npx tsx src/bench/lab/relay.ts <listen-port> <server-port> [data|onread]
// `data`: stream 'data' events (a new Buffer per read); `onread`: both sides read into a buffer of
// their own, reused while no write still holds a slice of it (as tidepool reads).
import net from 'node:net'
import { readIntoOwnBuffer } from '../../net/own-buffer-reads.ts'

const [listenPort, serverPort] = process.argv.slice(2, 4).map(Number)
const isOnread = process.argv[4] === 'onread'

function reader(peer: () => net.Socket): { buffer: () => Buffer; callback: (n: number, buf: Uint8Array) => boolean } {
  let buf = Buffer.allocUnsafe(64 * 1024)
  let isLent = false
  return {
    buffer: () => {
      if (isLent) {
        buf = Buffer.allocUnsafe(64 * 1024)
        isLent = false
      }
      return buf
    },
    callback: (n, b) => {
      const sock = peer()
      sock.write((b as Buffer).subarray(0, n))
      if (sock.writableLength > 0) isLent = true
      return true
    },
  }
}

net.createServer({ noDelay: true, pauseOnConnect: isOnread }, (client) => {
  const server = isOnread
    ? net.connect({ host: '127.0.0.1', port: serverPort, noDelay: true, onread: reader(() => client) })
    : net.connect({ host: '127.0.0.1', port: serverPort, noDelay: true })
  if (isOnread) {
    if (!readIntoOwnBuffer(client, reader(() => server))) throw new Error('this Node.js cannot read an accepted socket into a buffer of its own')
    client.resume()
  } else {
    client.on('data', (d) => server.write(d))
    server.on('data', (d) => client.write(d))
  }
  client.on('close', () => server.destroy())
  server.on('close', () => client.destroy())
  client.on('error', () => server.destroy())
  server.on('error', () => client.destroy())
}).listen(listenPort, '127.0.0.1')
