// A stand-in for Patroni's REST API, for tests that need a role source and a switchover without a
// real Patroni (test/ha has the real one): the ha-routing tests and the dashboard's.
import http from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A stand-in for Patroni's REST API: GET /primary answers 200 on the leader only, GET /patroni
 * names the member, POST /switchover calls `onSwitchover` with the body Patroni would get.
 */
export async function fakePatroni(isLeader: () => boolean, name = 'member', onSwitchover?: (body: { leader: string; candidate?: string }) => Promise<number>): Promise<{ url: string; close(): Promise<void> }> {
  const srv = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/switchover') {
      const parts: Buffer[] = []
      req.on('data', (c: Buffer) => parts.push(c))
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(parts).toString('utf8'))
        void (onSwitchover?.(body) ?? Promise.resolve(503)).then((status) => {
          res.statusCode = status
          res.end(status === 200 ? 'Successfully switched over' : 'refused')
        })
      })
      return
    }
    if (req.url === '/patroni') {
      res.end(JSON.stringify({ patroni: { name, scope: 'test' }, role: isLeader() ? 'primary' : 'replica' }))
      return
    }
    res.statusCode = req.url === '/primary' && isLeader() ? 200 : 503
    res.end(JSON.stringify({ role: isLeader() ? 'primary' : 'replica' }))
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => {
      srv.closeAllConnections()
      srv.close(() => r())
    }),
  }
}
