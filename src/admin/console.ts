// The admin console: the virtual database `pgbouncer`, simple query protocol only. One query text in,
// the complete reply out (RowDescription/DataRow*/CommandComplete or ErrorResponse, then
// ReadyForQuery), as PgBouncer 1.25 sends it: same commands, columns in the same order with the same
// type OIDs, same CommandComplete tags, same error texts and SQLSTATEs (src/admin.c, doc/usage.md).
// This file is the grammar and the dispatch tables; each SHOW lives in show/, each command in
// commands/, what they read in view.ts, the wire encoding in result-set.ts.
// Invariants: every reply ends with ReadyForQuery('I'), except immediate SHUTDOWN, which, as in
// PgBouncer, answers nothing (the connection ends with the process); errors are ERROR, never FATAL.
// Must not: touch sockets or the clock beyond Date.now() as a default; it reads through ConsoleView
// and acts only through it (the runtime implements it).

import { SqlState } from '../protocol/pg-error.ts'
import { runFleet, runFleetSwitchover } from './commands/fleet.ts'
import { runKill, runKillClient } from './commands/kill.ts'
import { runPause, runResume, runSuspend } from './commands/pause-resume.ts'
import { runDisable, runEnable, runReconnect, runWaitClose } from './commands/reconnect.ts'
import { runReload, runShutdown } from './commands/reload-shutdown.ts'
import { runSet } from './commands/set.ts'
import { runSwitchover } from './commands/switchover.ts'
import { ConsoleError, adminError, syntaxError, type ConsoleRequest } from './request.ts'
import { errorReply, resultReply, type ResultSet } from './result-set.ts'
import { showClients } from './show/clients.ts'
import { showConfig } from './show/config.ts'
import { showDatabases } from './show/databases.ts'
import { showDnsHosts, showDnsZones } from './show/dns.ts'
import { showFakeParam, showHelp } from './show/help.ts'
import { showFleet } from './show/fleet.ts'
import { showHosts } from './show/hosts.ts'
import { showLists } from './show/lists.ts'
import { showPools } from './show/pools.ts'
import { showServers } from './show/servers.ts'
import { showFds, showMem, showSockets } from './show/sockets.ts'
import { showStats, showTotals } from './show/stats.ts'
import { showUsers } from './show/users.ts'
import { showPeerPools, showPeers, showState, showVersion } from './show/state.ts'
import { showSwitchovers } from './show/switchover.ts'
import type { ConsoleView } from './view.ts'

export type { ClientInfo, ConsoleView, ServerInfo, SetOutcome, ShutdownMode, SocketFacts } from './view.ts'

/** The asking connection and the time, so replies are reproducible in tests. */
export interface ConsoleOptions {
  /** Listed in admin_users (or the console's own user); stats_users may only SHOW. Default true. */
  isAdmin?: boolean
  nowMs?: number
}

// ---- the dispatch tables ----

/** A command word's handler, given the argument word ('' when none), unquoted. */
type Command = (req: ConsoleRequest, arg: string) => Buffer | Promise<Buffer>

const COMMANDS: ReadonlyMap<string, Command> = new Map<string, Command>([
  ['show', runShow],
  ['select', runShow],
  ['pause', runPause],
  ['resume', runResume],
  ['suspend', runSuspend],
  ['reload', runReload],
  ['shutdown', runShutdown],
  ['reconnect', runReconnect],
  ['wait_close', runWaitClose],
  ['disable', runDisable],
  ['enable', runEnable],
  ['kill', runKill],
  ['kill_client', runKillClient],
])

/** SHOW <name>, by lower-case name. */
const SHOWS: ReadonlyMap<string, (req: ConsoleRequest) => ResultSet> = new Map<string, (req: ConsoleRequest) => ResultSet>([
  ['pools', showPools],
  ['databases', showDatabases],
  ['clients', showClients],
  ['servers', showServers],
  ['users', showUsers],
  ['lists', showLists],
  ['config', showConfig],
  ['version', showVersion],
  ['state', showState],
  ['peers', showPeers],
  ['peer_pools', showPeerPools],
  ['stats', (req) => showStats(req, 'both')],
  ['stats_totals', (req) => showStats(req, 'totals')],
  ['stats_averages', (req) => showStats(req, 'averages')],
  ['totals', showTotals],
  ['fds', showFds],
  ['sockets', (req) => showSockets(req, false)],
  ['active_sockets', (req) => showSockets(req, true)],
  ['mem', showMem],
  ['dns_hosts', showDnsHosts],
  ['dns_zones', showDnsZones],
  ['hosts', showHosts],
  ['switchover', showSwitchovers],
  ['fleet', showFleet],
])

/** The SHOW views the HTTP API serves as JSON, by the name after /api/. */
const JSON_VIEWS: ReadonlySet<string> = new Set(['pools', 'stats', 'databases', 'clients', 'servers', 'users', 'lists', 'config', 'hosts', 'switchover', 'fleet'])

// ---- parsing: PgBouncer's `CMD [arg] [;]` (cmd_normal_rx), case-insensitive, words or "quoted" ----

const WORD = '("(?:[^"]|"")*"|[0-9a-z_]+)'
const COMMAND_RX = new RegExp(`^[ \\t\\n\\r]*${WORD}(?:[ \\t\\n\\r]+${WORD})?[ \\t\\n\\r]*(?:;[ \\t\\n\\r]*)?$`, 'i')
// PgBouncer copies the command word and its argument into buffers of 16 and 64 bytes.
const MAX_COMMAND = 15
const MAX_ARG = 63

// tidepool's own: SWITCHOVER db [TO host] [TIMEOUT seconds]; a host:port or dotted name goes in quotes or bare.
const HOST_WORD = `('(?:[^']|'')*'|"(?:[^"]|"")*"|[0-9a-z_.:\\[\\]-]+)`
const SWITCHOVER_RX = new RegExp(`^[ \\t\\n\\r]*switchover[ \\t\\n\\r]+${WORD}(?:[ \\t\\n\\r]+to[ \\t\\n\\r]+${HOST_WORD})?(?:[ \\t\\n\\r]+timeout[ \\t\\n\\r]+([0-9]+(?:\\.[0-9]+)?))?[ \\t\\n\\r]*(?:;[ \\t\\n\\r]*)?$`, 'i')

// tidepool's own: FLEET SWITCHOVER db [TO host] [TIMEOUT seconds], as SWITCHOVER's.
const FLEET_SWITCHOVER_RX = new RegExp(`^[ \\t\\n\\r]*fleet[ \\t\\n\\r]+${SWITCHOVER_RX.source.slice(SWITCHOVER_RX.source.indexOf('switchover'))}`, 'i')

// tidepool's own: FLEET <command> [db].
const FLEET_RX = new RegExp(`^[ \\t\\n\\r]*fleet[ \\t\\n\\r]+${WORD}(?:[ \\t\\n\\r]+${WORD})?[ \\t\\n\\r]*(?:;[ \\t\\n\\r]*)?$`, 'i')

// SET key = value | SET key TO value. PgBouncer tries the quoted-string form first, then a word
// (cmd_set_str_rx, cmd_set_word_rx).
const SET_RX = /^[ \t\n\r]*set[ \t\n\r]+/i
const SET_HEAD = `^[ \\t\\n\\r]*set[ \\t\\n\\r]+${WORD}[ \\t\\n\\r]*(?:=|to)[ \\t\\n\\r]*`
const SET_TAIL = '[ \\t\\n\\r]*(?:;[ \\t\\n\\r]*)?$'
const SET_STRING_RX = new RegExp(`${SET_HEAD}('(?:[^']|'')*')${SET_TAIL}`, 'i')
const SET_WORD_RX = new RegExp(`${SET_HEAD}${WORD}${SET_TAIL}`, 'i')
// PgBouncer copies the key and the value, quotes included, into buffers of 64 and 256 bytes.
const MAX_SET_KEY = 63
const MAX_SET_VALUE = 255

function unquote(word: string | undefined): string {
  if (word === undefined) return ''
  return word.startsWith('"') ? word.slice(1, -1).replaceAll('""', '"') : word
}

function unquoteString(word: string): string {
  if (word.startsWith("'")) return word.slice(1, -1).replaceAll("''", "'")
  return unquote(word)
}

// ---- running a query ----

/**
 * Runs one console query (the text of a simple Query message); returns the complete reply:
 * RowDescription, DataRows and CommandComplete, or an ErrorResponse, then ReadyForQuery('I'),
 * as ONE Buffer. An immediate SHUTDOWN returns an empty Buffer: PgBouncer sends nothing then.
 */
export async function runConsoleQuery(sql: string, view: ConsoleView, opts: ConsoleOptions = {}): Promise<Buffer> {
  const req: ConsoleRequest = { sql, view, isAdmin: opts.isAdmin ?? true, nowMs: opts.nowMs ?? Date.now() }
  try {
    return await execute(req)
  } catch (err) {
    if (err instanceof ConsoleError) return errorReply(err.code, err.message, err.detail)
    return errorReply(SqlState.InternalError, `admin command failed: ${(err as Error).message}`)
  }
}

/** What a SHOW command shows, as objects keyed by column name; null for an unknown view. */
export function consoleRows(what: string, view: ConsoleView): Array<Record<string, string | number | null>> | null {
  const make = JSON_VIEWS.has(what) ? SHOWS.get(what) : undefined
  if (make === undefined) return null
  const rs = make({ sql: '', view, isAdmin: false, nowMs: Date.now() })
  return rs.rows.map((row) => Object.fromEntries(rs.columns.map((c, i) => [c.name, row[i] ?? null])))
}

function execute(req: ConsoleRequest): Buffer | Promise<Buffer> {
  const sw = SWITCHOVER_RX.exec(req.sql)
  if (sw !== null) return runSwitchover(req, unquote(sw[1]), sw[2] === undefined ? null : unquoteString(sw[2]), sw[3] === undefined ? null : Number(sw[3]))
  const fs = FLEET_SWITCHOVER_RX.exec(req.sql)
  if (fs !== null) return runFleetSwitchover(req, unquote(fs[1]), fs[2] === undefined ? null : unquoteString(fs[2]), fs[3] === undefined ? null : Number(fs[3]))
  const fl = FLEET_RX.exec(req.sql)
  if (fl !== null) {
    const arg = unquote(fl[2])
    if (arg.length > MAX_ARG) throw adminError('bad arguments')
    return runFleet(req, unquote(fl[1]), arg)
  }
  const m = COMMAND_RX.exec(req.sql)
  if (m === null) {
    if (SET_RX.test(req.sql)) return parseSet(req)
    throw syntaxError(req)
  }
  const cmd = unquote(m[1])
  const arg = unquote(m[2])
  if (cmd.length > MAX_COMMAND || arg.length > MAX_ARG) throw adminError('bad arguments')
  const run = COMMANDS.get(cmd.toLowerCase())
  if (run === undefined) throw syntaxError(req)
  return run(req, arg)
}

function parseSet(req: ConsoleRequest): Promise<Buffer> {
  const m = SET_STRING_RX.exec(req.sql) ?? SET_WORD_RX.exec(req.sql)
  if (m === null) throw syntaxError(req)
  const key = unquote(m[1])
  const rawValue = m[2]
  if (key === '' || m[1].length > MAX_SET_KEY || rawValue.length > MAX_SET_VALUE) throw adminError('bad arguments')
  return runSet(req, key, unquoteString(rawValue))
}

function runShow(req: ConsoleRequest, arg: string): Buffer {
  const what = arg.toLowerCase()
  if (what === 'help') return showHelp()
  const rs = showFakeParam(what) ?? SHOWS.get(what)?.(req)
  if (rs === undefined) throw syntaxError(req)
  return resultReply(rs)
}
