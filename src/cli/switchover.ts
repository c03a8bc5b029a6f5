// `tidepool switchover <db> [--to host] [--timeout s]`: runs the admin console's SWITCHOVER on a
// running tidepool, the way an operator's script would (the same as psql -d pgbouncer), and
// prints each phase. Connection settings follow libpq's: --host/--port/--user or PGHOST, PGPORT,
// PGUSER, PGPASSWORD. Exit 0 when the switchover finished, 1 when it failed (traffic was
// released anyway), 2 for bad usage.

import { parseArgs } from 'node:util'
import pg from 'pg'

const USAGE = 'usage: tidepool switchover <database> [--to <host[:port]|patroni member>] [--timeout <seconds>] [--host <h>] [--port <p>] [--user <u>]'

export async function runSwitchover(args: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args, allowPositionals: true,
      options: { to: { type: 'string' }, timeout: { type: 'string' }, ...CONSOLE_OPTIONS },
    })
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`)
    return 2
  }
  const sql = switchoverSql(parsed.positionals, parsed.values)
  if (sql === null) {
    process.stderr.write(`${USAGE}\n`)
    return 2
  }
  const client = consoleClient(parsed.values)
  try {
    await client.connect()
    printRows((await client.query(sql)).rows as Array<Record<string, unknown>>)
    return 0
  } catch (err) {
    process.stderr.write(`tidepool switchover: ${(err as Error).message}\n`)
    return 1
  } finally {
    await client.end().catch(() => {})
  }
}

/** SWITCHOVER db [TO host] [TIMEOUT s] from the CLI's words (FLEET SWITCHOVER's too); null for bad usage. */
export function switchoverSql(positionals: string[], v: { to?: string; timeout?: string }): string | null {
  const timeout = v.timeout === undefined ? null : Number(v.timeout)
  if (positionals.length !== 1 || (timeout !== null && !(timeout > 0))) return null
  let sql = `SWITCHOVER ${quoteWord(positionals[0])}`
  if (v.to !== undefined) sql += ` TO ${quoteWord(v.to)}`
  if (timeout !== null) sql += ` TIMEOUT ${timeout}`
  return sql
}

/** How the CLI reaches a running tidepool's console: libpq's flags and environment. */
export const CONSOLE_OPTIONS = { host: { type: 'string', short: 'h' }, port: { type: 'string', short: 'p' }, user: { type: 'string', short: 'U' } } as const

export function consoleClient(v: { host?: string; port?: string; user?: string }): pg.Client {
  return new pg.Client({
    host: v.host ?? process.env.PGHOST ?? '127.0.0.1',
    port: Number(v.port ?? process.env.PGPORT ?? 6432),
    user: v.user ?? process.env.PGUSER ?? 'pgbouncer',
    password: process.env.PGPASSWORD,
    database: 'pgbouncer',
  })
}

/** One line a row: column=value, two spaces apart. */
export function printRows(rows: Array<Record<string, unknown>>): void {
  for (const row of rows) process.stdout.write(`${Object.entries(row).map(([k, v]) => `${k}=${String(v)}`).join('  ')}\n`)
}

/** The console takes bare words; a host:port or a name with other characters goes in single quotes. */
export function quoteWord(w: string): string {
  return /^[A-Za-z0-9_]+$/.test(w) ? w : `'${w.replaceAll("'", "''")}'`
}
