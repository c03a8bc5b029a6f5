// SHOW HELP (a NOTICE listing the commands), and SHOW of the parameters clients ask a server for,
// which PgBouncer answers with a fixed value (SET of them is acknowledged and ignored).

import { columns, doneReply, type ResultSet } from '../result-set.ts'

/** PgBouncer answers SHOW of these with a fixed value, for clients that ask a server for them. */
export const FAKE_PARAMS: ReadonlyMap<string, string> = new Map([
  ['client_encoding', 'UTF-8'], ['default_transaction_isolation', 'read committed'],
  ['standard_conforming_strings', 'on'], ['datestyle', 'ISO'], ['timezone', 'GMT'],
])

/** SHOW <param> of a FAKE_PARAMS name: one column named as asked, its fixed value; null for another name. */
export function showFakeParam(name: string): ResultSet | null {
  const value = FAKE_PARAMS.get(name)
  return value === undefined ? null : { columns: columns('s', [name]), rows: [[value]] }
}

// PgBouncer 1.25's list, word for word: scripts grep it.
const HELP_DETAIL =
  '\n' +
  '\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n' +
  '\tSHOW PEERS|PEER_POOLS\n' +
  '\tSHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE\n' +
  '\tSHOW DNS_HOSTS|DNS_ZONES\n' +
  '\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n' +
  '\tSET key = arg\n' +
  '\tRELOAD\n' +
  '\tPAUSE [<db>]\n' +
  '\tRESUME [<db>]\n' +
  '\tDISABLE <db>\n' +
  '\tENABLE <db>\n' +
  '\tRECONNECT [<db>]\n' +
  '\tKILL [<db>]\n' +
  '\tKILL_CLIENT <client_id>\n' +
  '\tSUSPEND\n' +
  '\tSHUTDOWN\n' +
  '\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n' +
  '\tWAIT_CLOSE [<db>]'
// tidepool's own commands, listed after PgBouncer's so scripts that match its list still do.
const HELP_TIDEPOOL =
  '\n' +
  '\tSHOW HOSTS|SWITCHOVER|FLEET\n' +
  '\tSWITCHOVER <db> [TO <host>] [TIMEOUT <seconds>]\n' +
  '\tFLEET PAUSE|RESUME|RECONNECT|KILL [<db>]\n' +
  '\tFLEET ENABLE|DISABLE <db>\n' +
  '\tFLEET RELOAD'

export function showHelp(): Buffer {
  return doneReply('SHOW', [{ message: 'Console usage', detail: HELP_DETAIL + HELP_TIDEPOOL }])
}
