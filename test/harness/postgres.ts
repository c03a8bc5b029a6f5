// A real PostgreSQL for tests and benches: a fresh cluster in a temp dir on a free loopback port,
// with the database `app` and one login role per password method (TEST_USERS), so auth tests meet
// the server's own scram-sha-256, md5 and cleartext exchanges.
//
// A thin layer over src/embedded/postgres.ts, which runs the server (binaries, root, locale, ports,
// logs, stop) and guarantees that no postgres process outlives the node process that started it.
// What this file adds: the test users and their pg_hba lines, the database `app`, the per-run dir
// names and signal cleanup:
//   - dirs are `<tmpdir>/tidepool-pg-<TIDEPOOL_TEST_RUN_ID>-<pid>-XXXXXX`; scripts/run-tests.mjs
//     sweeps by run id what a SIGKILLed test file left, and any startPostgres removes dirs of dead
//     processes of any run;
//   - SIGINT/SIGTERM/SIGHUP stop every running server too (installCleanupHooks({ signals: true })),
//     then the process dies by the signal as it would have.
// Must not: touch a cluster whose creating process is alive (other engineers run tests on the same
// machine).

import { installCleanupHooks, startEmbeddedPostgres, type EmbeddedPg } from '../../src/embedded/postgres.ts'

export interface PgInstance {
  host: string
  port: number
  /** the superuser, 'postgres' */
  user: string
  password: string
  dataDir: string
  url(db?: string, user?: string, password?: string): string
  /** server log lines collected so far, newline-joined */
  logs(): string
  /** runs as the superuser in database `postgres`, one pg.Client per call */
  query(sql: string, params?: unknown[]): Promise<any[]>
  stop(): Promise<void>
}

export interface StartPostgresOptions {
  maxConnections?: number
  /** extra `-c name=value` settings; they override the harness defaults */
  settings?: Record<string, string>
  /** extra pg_hba.conf lines, placed before the harness's own so they win */
  hba?: string
}

export type PgAuthMethod = 'scram-sha-256' | 'md5' | 'password'

export interface TestUser {
  user: string
  password: string
  /** the pg_hba method that PostgreSQL demands of this user on 127.0.0.1 */
  auth: PgAuthMethod
}

export const TEST_DATABASE = 'app'

export const TEST_USERS = {
  superuser: { user: 'postgres', password: 'postgres-pw', auth: 'scram-sha-256' },
  scram: { user: 'app_scram', password: 'scram-pw', auth: 'scram-sha-256' },
  md5: { user: 'app_md5', password: 'md5-pw', auth: 'md5' },
  plain: { user: 'app_plain', password: 'plain-pw', auth: 'password' },
} as const satisfies Record<string, TestUser>

/** Cluster dirs are `<tmpdir>/tidepool-pg-<run id>-<pid>-XXXXXX`; the runner sweeps by run id. */
export const PG_DIR_PREFIX = 'tidepool-pg-'

// Any run id: a dead process's dir is stale whichever run it belonged to.
export const STALE_DIR = /^tidepool-pg-[A-Za-z0-9]+-(\d+)-/

export function runId(): string {
  const id = process.env.TIDEPOOL_TEST_RUN_ID ?? 'solo'
  return /^[A-Za-z0-9]+$/.test(id) ? id : 'solo'
}

function hbaLines(extra: string | undefined): string {
  const { superuser, scram, md5, plain } = TEST_USERS
  return [
    ...(extra ? [extra.trimEnd()] : []),
    ...[superuser, scram, md5, plain].map((u) => `host all ${u.user} 127.0.0.1/32 ${u.auth}`),
    // Roles that tests create themselves get the runner's default line: scram, PostgreSQL's since 14.
  ].join('\n')
}

function instance(server: EmbeddedPg): PgInstance {
  return {
    host: server.host,
    port: server.port,
    user: server.user,
    password: server.password,
    dataDir: server.dataDir,
    url: (db = 'postgres', user = server.user, password?: string) =>
      server.url(db, user, password ?? Object.values(TEST_USERS).find((u) => u.user === user)?.password),
    logs: () => server.logs(),
    query: (sql, params) => server.query(sql, params),
    stop: () => server.stop(),
  }
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PgInstance> {
  installCleanupHooks({ signals: true })
  const server = await startEmbeddedPostgres({
    password: TEST_USERS.superuser.password,
    tempDirPrefix: `${PG_DIR_PREFIX}${runId()}-`,
    staleDirPattern: STALE_DIR,
    maxConnections: opts.maxConnections,
    settings: opts.settings,
    hba: hbaLines(opts.hba),
  })
  try {
    const { scram, md5, plain } = TEST_USERS
    await server.exec('postgres', [
      `CREATE DATABASE ${TEST_DATABASE}`,
      `SET password_encryption = 'scram-sha-256'`,
      `CREATE ROLE ${scram.user} LOGIN PASSWORD '${scram.password}'`,
      `CREATE ROLE ${plain.user} LOGIN PASSWORD '${plain.password}'`,
      // Stored as an md5 hash, so PostgreSQL can run the md5 exchange its pg_hba line asks for.
      `SET password_encryption = 'md5'`,
      `CREATE ROLE ${md5.user} LOGIN PASSWORD '${md5.password}'`,
      `GRANT ALL ON DATABASE ${TEST_DATABASE} TO ${scram.user}, ${md5.user}, ${plain.user}`,
    ])
    // Since PostgreSQL 15 only the owner may create in schema public.
    await server.exec(TEST_DATABASE, [`GRANT ALL ON SCHEMA public TO ${scram.user}, ${md5.user}, ${plain.user}`])
  } catch (err) {
    await server.stop().catch(() => {})
    throw err
  }
  return instance(server)
}

let shared: Promise<PgInstance> | null = null
let sharedStopped = false

/** One PostgreSQL per test process, stopped by the exit listener when the process ends. Should a
 *  test stop it anyway, the next call starts a new one rather than hand out a dead server. */
export function sharedPostgres(): Promise<PgInstance> {
  if (shared === null || sharedStopped) {
    sharedStopped = false
    const starting = startPostgres().then((pgi) => {
      const stop = pgi.stop.bind(pgi)
      pgi.stop = () => { sharedStopped = true; return stop() }
      return pgi
    })
    starting.catch(() => { if (shared === starting) shared = null })
    shared = starting
  }
  return shared
}
