// The floating-IP tier of examples/keepalived/ under load, in network namespaces the test makes
// (test/harness/tier-drill.ts): three tidepool nodes in transaction mode, each in its namespace with
// Debian's keepalived running the example's file and check script; PostgreSQL in the root namespace;
// eight node-postgres clients in a namespace of their own, writing one numbered row per transaction
// through the floating address and reconnecting after any error, never retrying a transaction;
// four pgbench clients besides, in 2 s runs restarted as each ends (their log of commits checked too).
// The clients' log of acknowledged commits is checked against the table: nothing acknowledged may
// be missing, nothing may be there twice.
//   - kill -9 of the tidepool holding the address: the address moves, new connections succeed
//     again within seconds (goal 3 s), a client loses at most the transaction it was in;
//   - SIGTERM of the tidepool holding the address, with shutdown_close_between_transactions: the
//     clients leave between transactions before the address moves, so no transaction fails
//     (pgbench's clients fail at their next BEGIN: libpq sees the close only then).
// Figures go to the diagnostics; docs/deploy.md quotes one run. Needs root (namespaces); CI runs as root.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { describeDrill, runDrill, summaryLine, Tier } from '../harness/tier-drill.ts'

const CLIENTS = 8
// pgbench runs of 2 s each beside them, restarted as each ends (test/harness/drill-pgbench.ts).
const PGBENCH = { clients: 4, runSeconds: 2 }
const NOT_ROOT = process.getuid?.() !== 0 ? 'needs root to create network namespaces (CI runs as root)' : false

async function tier(t: TestContext, tidepool: Record<string, string | number> = {}): Promise<Tier> {
  const lines: string[] = []
  const tr = await Tier.start({ pooler: 'tidepool', nodes: 3, tidepool, say: (l) => lines.push(l) })
  t.after(() => tr.destroy())
  t.after(() => t.diagnostic(`[log] tier:\n${lines.join('\n')}\n${tr.logs()}`))
  return tr
}

test('kill -9 of the tidepool holding the floating address: the address moves within seconds, no acknowledged commit lost or applied twice', { skip: NOT_ROOT, timeout: 120_000 }, async (t) => {
  const tr = await tier(t)
  const f = await runDrill(tr, 'kill', { clients: CLIENTS, thinkMs: 5, pgbench: PGBENCH })
  t.diagnostic(describeDrill(f))
  t.diagnostic(summaryLine(f))
  const txFailures = f.failures.filter((x) => x.phase !== 'connect')
  assert.notEqual(f.to, f.from)
  assert.equal(f.count.lost, 0, 'acknowledged commits missing from the table')
  assert.equal(f.count.duplicated, 0, 'transactions applied twice')
  // Each client loses at most the transaction it was in when its connection died.
  assert.ok(f.failedTx <= CLIENTS + PGBENCH.clients, `${f.failedTx} failed transactions: ${JSON.stringify(txFailures.slice(0, 5))}`)
  // A commit the client did not see acknowledged can only be one whose COMMIT failed.
  assert.ok(f.count.committedUnacknowledged <= txFailures.filter((x) => x.phase === 'commit').length,
    `${f.count.committedUnacknowledged} rows committed without acknowledgement`)
  // The goal is 3 s; the margin is for a loaded machine.
  assert.ok(f.recoveryMs <= 8_000, `new connections succeeded only ${f.recoveryMs} ms after the kill`)
  assert.equal(f.count.rows, f.count.acked + f.count.committedUnacknowledged)
  assert.ok(f.pgbench !== null && f.pgbench.committed > 0, 'pgbench committed nothing')
})

test('SIGTERM of the tidepool holding the floating address, with shutdown_close_between_transactions: no transaction fails', { skip: NOT_ROOT, timeout: 120_000 }, async (t) => {
  const tr = await tier(t, { shutdown_close_between_transactions: 1 })
  const from = tr.holder()!
  const mark = from.pooler.mark()
  const f = await runDrill(tr, 'stop', { clients: CLIENTS, thinkMs: 5, pgbench: PGBENCH })
  t.diagnostic(describeDrill(f))
  t.diagnostic(summaryLine(f))
  assert.match(from.pooler.since(mark), /\[runtime\.stopped\]/, `${f.from} was killed at the deadline, not stopped by SIGTERM`)
  // A pgbench client (libpq) learns that its connection was closed between transactions only when
  // it sends its next BEGIN, and aborts; no transaction that had begun may fail.
  const atBegin = f.failures.filter((x) => x.phase === 'begin' && x.error.startsWith('pgbench: '))
  const failed = f.failures.filter((x) => x.phase !== 'connect' && !atBegin.includes(x))
  assert.equal(failed.length, 0, `failed transactions: ${JSON.stringify(failed.slice(0, 5))}`)
  assert.ok(atBegin.length <= PGBENCH.clients, `${atBegin.length} pgbench clients aborted at BEGIN`)
  assert.ok(f.pgbench !== null && f.pgbench.committed > 0, 'pgbench committed nothing')
  assert.equal(f.count.lost, 0)
  assert.equal(f.count.duplicated, 0)
  assert.equal(f.count.rows, f.count.acked)
  assert.ok(f.recoveryMs <= 8_000, `new connections succeeded only ${f.recoveryMs} ms after SIGTERM`)
})
