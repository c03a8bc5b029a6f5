// The floor for any Node.js proxy: a bare TCP relay, one server connection per client, bytes passed
// through with no parsing and no pooling. cpu-per-tx.ts measures it beside tidepool to show
// how much of tidepool's CPU per transaction is Node's own socket cost.
//   npx tsx src/bench/lab/relay.ts <listen-port> <server-port>
import net from 'node:net'

const [listenPort, serverPort] = process.argv.slice(2).map(Number)
net.createServer({ noDelay: true }, (client) => {
  const server = net.connect({ host: '127.0.0.1', port: serverPort, noDelay: true })
  client.on('data', (d) => server.write(d))
  server.on('data', (d) => client.write(d))
  client.on('close', () => server.destroy())
  server.on('close', () => client.destroy())
  client.on('error', () => server.destroy())
  server.on('error', () => client.destroy())
}).listen(listenPort, '127.0.0.1')
