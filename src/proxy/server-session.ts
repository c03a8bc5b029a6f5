// The session a server connection carries between clients: the tracked parameters it reports, the
// client parameter map they were last made to match, the GUCs clients set on it, and its cache of
// prepared statements. ServerConn owns one; clients ask it what to run on link and tell it what a
// probe or a reset found, through methods named for what happened.
// Invariants: `params` holds what the server last reported; `agreedParams` is cleared by any
// ParameterStatus; `gucs` is what the next client must RESET or replace.
// Must not: touch the socket or send anything (ServerConn runs the SQL it returns).

import { paramSyncQuery } from './server-params.ts'
import type { ServerPrepared } from './prepared.ts'
import { NO_GUCS, gucSyncSql, type GucMap, type ProbeResult } from './session-state.ts'

export class ServerSession {
  /** Current values of the parameters the server reports (GUC_REPORT), by canonical name. */
  readonly params = new Map<string, string>()
  /**
   * A client's (shared, never mutated) parameter map that the values above were last made to match;
   * while it is the linked client's map, linking needs no comparison. Any ParameterStatus clears it.
   */
  private agreedParams: ReadonlyMap<string, string> | null = null
  /** GUC values a client set on this session (session-state.ts); what the next client must RESET or replace. */
  private gucs: GucMap = NO_GUCS

  /** `statements`: the server's prepared-statement cache (the same object ServerConn forwards with). */
  constructor(private readonly statements: ServerPrepared) {}

  /** The server reported a parameter (ParameterStatus). */
  reported(name: string, value: string): void {
    this.params.set(name, value)
    this.agreedParams = null
  }

  /**
   * What must run before a client with these tracked parameters (and, when `gucs` is not null, these
   * GUCs) may use the session: '' when nothing differs.
   */
  syncSqlFor(params: ReadonlyMap<string, string>, gucs: GucMap | null): string {
    const paramSql = this.agreedParams === params ? null : paramSyncQuery(params, this.params)
    return (paramSql ?? '') + (gucs !== null ? gucSyncSql(gucs, this.gucs) : '')
  }

  /** The session now matches a client's parameters (and its GUCs, when not null). */
  agreed(params: ReadonlyMap<string, string>, gucs: GucMap | null): void {
    this.agreedParams = params
    if (gucs !== null) this.gucs = gucs
  }

  /**
   * A session probe read what is left on the server. False when the server's protocol-level
   * statements no longer match the cache (`isTracking`: statements are mapped) in a way tidepool
   * cannot account for: the session is then in an unknown state.
   */
  adoptProbe(r: ProbeResult, isTracking: boolean): boolean {
    this.gucs = r.gucs
    if (!isTracking || r.protocolStatements === this.statements.cache.size) return true
    // DISCARD ALL / DEALLOCATE ALL took tidepool's statements too; any other mismatch is unknown state.
    if (r.protocolStatements === 0) {
      this.forgetStatements()
      return true
    }
    return false
  }

  /**
   * server_reset_query ran (or is about to run) on the session: what it wipes (DISCARD ALL,
   * DEALLOCATE ALL, RESET ALL) is no longer on the server.
   */
  wipedBy(resetQuery: string): void {
    const isDiscardAll = /\bdiscard\s+all\b/i.test(resetQuery)
    if (isDiscardAll || /\bdeallocate\s+(prepare\s+)?all\b/i.test(resetQuery)) this.forgetStatements()
    if (isDiscardAll || /\breset\s+all\b/i.test(resetQuery)) this.gucs = NO_GUCS
  }

  /** Every prepared statement the server held is gone (DISCARD ALL, or the connection closed). */
  forgetStatements(): void {
    this.statements.clearCache()
  }
}
