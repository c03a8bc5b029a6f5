// The janitor owns time: one sweep a few times a second applies every timeout and keeps
// min_pool_size, instead of a timer per connection or per query. Ages are measured as PgBouncer
// measures them (janitor.c): query_timeout from the client's last request, idle_transaction_timeout
// from the server's last ReadyForQuery, server_idle_timeout from when the server went idle.
// Must not: move connections between lists itself; it asks the pool, or closes the connection,
// whose close path does the bookkeeping.

import type { Pool } from './pool.ts'
import { ClientErrors } from '../protocol/client-errors.ts'
import type { PooledClient } from './states.ts'
import type { IntrusiveList } from '../util/intrusive-list.ts'
import { nowUs } from './stats.ts'

/**
 * The global timeouts the sweep applies, in seconds as pgbouncer.ini has them; 0 disables. Those
 * that can differ per pool (per user or per database) are read from pool.settings instead.
 */
export interface JanitorSettings {
  query_wait_timeout: number
  client_login_timeout: number
  server_connect_timeout: number
  query_wait_notify: number
  server_fast_close: boolean
}

/** PgBouncer's text, so clients that show notices tell the same story. */
export const QUEUED_NOTICE = 'No server connection available in postgres backend, client being queued'

/** Clients that have not reached a pool yet (still sending startup or authenticating). */
export function sweepLoginClients(list: IntrusiveList<PooledClient>, st: JanitorSettings, nowMs: number): void {
  if (st.client_login_timeout <= 0) return
  const limit = st.client_login_timeout * 1000
  for (const c of list) {
    if (nowMs - c.connectedAtMs > limit) c.fail(ClientErrors.clientLoginTimeout)
  }
}

export function sweepPool(pool: Pool, global: JanitorSettings, nowMs: number): void {
  const l = pool.lists
  const ps = pool.settings
  const st = { ...global, query_timeout: ps.query_timeout, idle_transaction_timeout: ps.idle_transaction_timeout, transaction_timeout: ps.transaction_timeout, client_idle_timeout: ps.client_idle_timeout }

  if (st.client_idle_timeout > 0) {
    const limit = st.client_idle_timeout * 1000
    for (const c of l.activeClients) {
      if (c.server === null && nowMs - c.requestAtMs > limit) c.fail(ClientErrors.clientIdleTimeout)
    }
  }

  // Waiters queue in arrival order, so the scan stops at the first one still in time.
  if (st.query_wait_timeout > 0 || st.query_timeout > 0) {
    for (let c = l.waitingClients.first; c !== null; c = l.waitingClients.first) {
      const age = nowMs - c.waitSinceMs
      if (st.query_timeout > 0 && age > st.query_timeout * 1000) c.fail(ClientErrors.queryTimeout)
      else if (st.query_wait_timeout > 0 && age > st.query_wait_timeout * 1000) c.fail(ClientErrors.queryWaitTimeout)
      else break
    }
  }

  if (st.query_wait_notify > 0) {
    const limit = st.query_wait_notify * 1000
    for (const c of l.waitingClients) {
      if (nowMs - c.waitSinceMs <= limit) break
      if (!c.isWaitNoticeSent) {
        c.isWaitNoticeSent = true
        c.notice(QUEUED_NOTICE)
      }
    }
  }

  // A client waiting for the pool's first server login waits for a server too (PgBouncer keeps
  // both on its waiting list): query_timeout and query_wait_timeout count from its last request,
  // which for a client still logging in is its connect.
  if (st.query_wait_timeout > 0 || st.query_timeout > 0) {
    for (const c of l.loginClients) {
      const age = nowMs - c.requestAtMs
      if (st.query_timeout > 0 && age > st.query_timeout * 1000) c.fail(ClientErrors.queryTimeout)
      else if (st.query_wait_timeout > 0 && age > st.query_wait_timeout * 1000) c.fail(ClientErrors.queryWaitTimeout)
    }
  }

  if (st.client_login_timeout > 0 && pool.welcome === null) {
    const limit = st.client_login_timeout * 1000
    for (const c of l.loginClients) {
      if (nowMs - c.connectedAtMs > limit) c.fail(ClientErrors.clientLoginTimeoutServerDown)
    }
  }

  if (st.query_timeout > 0 || st.idle_transaction_timeout > 0 || st.transaction_timeout > 0 || st.server_fast_close) {
    const now = st.transaction_timeout > 0 ? nowUs() : 0
    for (const s of l.activeServers) {
      const c = s.client
      if (c === null) continue
      if (s.isReady) {
        // server_fast_close: a session-mode client between transactions lets go of a server that
        // RECONNECT or RELOAD marked, instead of keeping it until the session ends.
        if (st.server_fast_close && s.closeOnRelease) c.fail(ClientErrors.databaseConfigChanged)
        continue
      }
      if (st.query_timeout > 0 && !s.isIdleInTransaction && nowMs - c.requestAtMs > st.query_timeout * 1000) {
        c.fail(ClientErrors.serverQueryTimeout)
      } else if (st.idle_transaction_timeout > 0 && s.isIdleInTransaction && nowMs - s.readyAtMs > st.idle_transaction_timeout * 1000) {
        c.fail(ClientErrors.idleTransactionTimeout)
      } else if (st.transaction_timeout > 0 && s.transactionStartUs > 0 && now - s.transactionStartUs > st.transaction_timeout * 1_000_000) {
        c.fail(ClientErrors.transactionTimeout)
      }
    }
  }

  if (st.server_connect_timeout > 0) {
    const limit = st.server_connect_timeout * 1000
    for (const s of l.loginServers) {
      if (nowMs - s.connectedAtMs > limit) s.close('connect timeout')
    }
  }

  for (const list of [l.usedServers, l.idleServers]) {
    for (const s of list) {
      const retire = pool.retireReason(s, nowMs, true)
      if (retire !== null) s.close(retire)
      else if (list === l.idleServers && ps.server_check_query !== null && nowMs - s.idleSinceMs > ps.server_check_delay * 1000) pool.markUsed(s)
    }
  }

  // A smaller pool_size after RELOAD: close spare servers rather than wait for them to age out.
  let extra = l.serverCount - (ps.pool_size + ps.reserve_pool_size)
  while (extra > 0) {
    const s = l.usedServers.first ?? l.idleServers.first
    if (s === null) break
    s.close('too many servers in the pool')
    extra--
  }

  pool.fillMinimum(nowMs)
  pool.kick(nowMs)
}
