// Session state that cannot move between servers, after the fact: when a transaction may have left
// some (session-state.ts's scanner says so, or session_state_probe = always), tidepool asks the
// server what is left before it goes back to the pool. The client keeps its server (is pinned)
// while LISTEN, advisory locks, temp tables, held cursors or SQL prepared statements remain; a
// server its client left with such state is closed, never handed to another client.
// Must not: run on the message path; a probe is one internal query at a transaction's end.

import type { Pool } from '../pool/pool.ts'
import type { ServerConn } from './server-conn.ts'
import { trackedNames } from './server-params.ts'
import { newProbeResult, probeSql, readProbeRow, type ProbeResult } from './session-state.ts'

const NO_NAME_SET: ReadonlySet<string> = new Set()
export const NO_NAMES: readonly string[] = []
const trackedLowerCache = new WeakMap<ReadonlyMap<string, string>, { from: readonly string[]; names: readonly string[] }>()

/**
 * The lower-case names of the tracked parameters a pool's servers report (`welcome`, the pool's
 * ParameterStatus set), which the probe leaves out: ParameterStatus keeps them. A tracked name the
 * server does not report (search_path before PostgreSQL 18) is read by the probe like any GUC.
 * Computed once per pool (track_extra_parameters needs a restart).
 */
export function trackedLowerNames(extra: readonly string[], welcome: ReadonlyMap<string, string>): readonly string[] {
  let hit = trackedLowerCache.get(welcome)
  if (hit === undefined || hit.from !== extra) {
    hit = { from: extra, names: trackedNames(extra).filter((n) => welcome.has(n)).map((n) => n.toLowerCase()) }
    trackedLowerCache.set(welcome, hit)
  }
  return hit.names
}

/**
 * The probe for a client's session on `server`: the GUCs it named (`gucNames`, besides what
 * pg_settings lists; tracked parameters left out) and the server's login user.
 */
export function sessionProbeSql(trackedLower: readonly string[], gucNames: ReadonlySet<string> | null, server: ServerConn): string {
  return probeSql(trackedLower, gucNames ?? NO_NAME_SET, server.target.user)
}

/** Runs the probe on `server`; `done` gets what it read, or null when it failed. */
export function probeSession(server: ServerConn, sql: string, done: (r: ProbeResult | null) => void): void {
  const result = newProbeResult()
  server.runInternal(sql, (ok) => done(ok ? result : null), (buf, start, end) => readProbeRow(result, buf, start, end))
}

/**
 * The client leaves a ready server that has (or may have) session state: probe it unlinked and
 * put it back in the pool only if nothing session-bound is left; its GUCs are then what the
 * next client's link resets or replaces.
 */
function retireServer(server: ServerConn, pool: Pool, sql: string): void {
  probeSession(server, sql, (r) => {
    if (server.isClosed) return
    if (r === null || r.bound !== '') {
      server.close(r !== null ? `client left session state behind (${r.bound})` : 'session state probe failed')
      return
    }
    server.adoptProbe(r)
    releaseServer(pool, server)
  })
}

/**
 * A closing client leaves its linked server (already unlinked): a ready server (`isClean`: the
 * client had nothing queued or syncing) goes back to the pool, after a probe when the client may
 * have left session state (`mayHoldState`); any other is closed, never reused in an unknown state.
 */
export function leaveServer(pool: Pool, server: ServerConn, isClean: boolean, mayHoldState: boolean,
  trackedLower: readonly string[], gucNames: ReadonlySet<string> | null): void {
  if (!server.isReady || !isClean) server.close('client disconnected while server was not ready')
  else if (mayHoldState) retireServer(server, pool, sessionProbeSql(trackedLower, gucNames, server))
  else releaseServer(pool, server)
}

/**
 * Back to the pool. With server_reset_query_always the pool runs server_reset_query on it first:
 * what that query wipes is no longer on the server.
 */
export function releaseServer(pool: Pool, server: ServerConn): void {
  const st = pool.settings
  if (st.server_reset_query_always && st.server_reset_query !== '' && st.pool_mode !== 'session') {
    server.session.wipedBy(st.server_reset_query)
  }
  pool.release(server, Date.now())
}
