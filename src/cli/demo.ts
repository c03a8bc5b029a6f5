// `tidepool demo`: the whole thing on one machine with nothing installed by hand. Starts an embedded
// PostgreSQL (src/embedded/postgres.ts) on a free port, creates the role and database `app` with a
// sample table, writes tidepool.ini + userlist.txt next to the cluster, runs tidepool on
// 127.0.0.1:6432 (--port; 0 picks a free one) and prints commands to try.
// SIGINT/SIGTERM/SIGHUP stop tidepool and PostgreSQL, remove the temp dir and exit 0; a second
// signal while stopping exits at once, the embedded runner's 'exit' hook still stopping PostgreSQL.
// Must not: install the runner's signal hooks (this file handles the signals), or leave PostgreSQL
// or the temp dir behind on any exit path.

import fs from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { loadConfig } from '../config/load.ts'
import { startEmbeddedPostgres, type EmbeddedPg } from '../embedded/postgres.ts'
import { Runtime } from '../runtime.ts'
import { Logger } from '../observe/log.ts'

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

export async function runDemo(args: string[]): Promise<number> {
  let values
  try {
    values = parseArgs({ args, options: { port: { type: 'string', default: '6432' }, 'pool-mode': { type: 'string', default: 'transaction' } } }).values
  } catch (err) {
    process.stderr.write(`tidepool demo: ${(err as Error).message}\n`)
    return 2
  }
  const port = Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`tidepool demo: --port must be 0..65535, got ${values.port}\n`)
    return 2
  }
  // Listening from the start: a signal during setup is kept and honoured once setup is done. The
  // listeners stay until we return, so a second signal while stopping does not fall back to Node's
  // default (death without the 'exit' hook, leaving the temp dir behind) but exits at once.
  let signalled = false
  let onFirstSignal = (): void => {}
  const firstSignal = new Promise<void>((resolve) => { onFirstSignal = resolve })
  const onSignal = (): void => {
    if (signalled) process.exit(1)
    signalled = true
    onFirstSignal()
  }
  for (const s of SIGNALS) process.on(s, onSignal)
  try {
    return await demo(port, values['pool-mode'], firstSignal, () => signalled)
  } finally {
    for (const s of SIGNALS) process.removeListener(s, onSignal)
  }
}

async function demo(port: number, poolMode: string, firstSignal: Promise<void>, signalled: () => boolean): Promise<number> {
  process.stderr.write('starting embedded PostgreSQL ...\n')
  let db: EmbeddedPg
  try {
    db = await startEmbeddedPostgres({ password: 'demo-super', tempDirPrefix: 'tidepool-demo-', maxConnections: 200 })
  } catch (err) {
    process.stderr.write(`tidepool demo failed: ${(err as Error).message}\n`)
    return 1
  }
  const dir = db.dir
  const pgPort = db.port
  let rt: Runtime | null = null
  const cleanup = async () => {
    if (rt !== null) await rt.shutdown('immediate')
    await db.stop().catch(() => {})
  }
  try {
    await db.exec('postgres', [`CREATE ROLE app LOGIN PASSWORD 'app'`, `CREATE DATABASE app OWNER app`])
    // As app, so that app owns the table and its sequence.
    await db.exec('app', [
      `SET ROLE app`,
      `CREATE TABLE greetings (id serial PRIMARY KEY, text text NOT NULL)`,
      `INSERT INTO greetings (text) VALUES ('hello from tidepool'), ('pooled through transaction mode')`,
    ])

    fs.writeFileSync(join(dir, 'userlist.txt'), `"app" "app"\n`)
    fs.writeFileSync(join(dir, 'tidepool.ini'), [
      '[databases]',
      `app = host=127.0.0.1 port=${pgPort} dbname=app`,
      '',
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = md5',
      'auth_file = userlist.txt',
      `pool_mode = ${poolMode}`,
      'default_pool_size = 20',
      'max_client_conn = 1000',
      'ignore_startup_parameters = extra_float_digits',
      'admin_users = app',
      '',
    ].join('\n'))
    const r = await loadConfig(join(dir, 'tidepool.ini'))
    if (!r.ok) throw new Error(r.errors.join('\n'))
    rt = await Runtime.start(r.config, { log: new Logger() })
  } catch (err) {
    process.stderr.write(`tidepool demo failed: ${(err as Error).message}\n`)
    await cleanup()
    return 1
  }
  if (signalled()) {
    await cleanup()
    return 0
  }
  const p = rt.port
  process.stdout.write(`
tidepool demo is running.
  PostgreSQL (embedded): 127.0.0.1:${pgPort}   tidepool: 127.0.0.1:${p}   config: ${join(dir, 'tidepool.ini')}

Try it (password: app):
  PGPASSWORD=app psql -h 127.0.0.1 -p ${p} -U app app -c 'SELECT * FROM greetings'
  PGPASSWORD=app pgbench -i -h 127.0.0.1 -p ${p} -U app app
  PGPASSWORD=app pgbench -h 127.0.0.1 -p ${p} -U app -c 50 -j 2 -T 10 -S app
  PGPASSWORD=app psql -h 127.0.0.1 -p ${p} -U app pgbouncer -c 'SHOW POOLS'     # the admin console

Ctrl-C stops tidepool and PostgreSQL.
`)
  await firstSignal
  process.stderr.write('stopping ...\n')
  await cleanup()
  return 0
}
