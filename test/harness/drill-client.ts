// The clients of a tier drill, run as their own process inside the drill's client namespace
// (test/harness/tier-drill.ts starts it with `ip netns exec`): node-postgres clients that write
// one row per transaction through the floating address, reconnecting after any error, and keep a
// log of what they were told. Each attempt writes (client, seq) with a seq never used before, so the
// table can be checked against the log afterwards: an acknowledged row that is missing was lost, a
// (client, seq) found twice was applied twice, a row whose COMMIT failed was committed unacknowledged.
//
// argv[2]: JSON DrillClientOptions. stdout: `progress <committed> <failed>` every 100 ms; on
// SIGINT, one line `result <json>` (DrillClientResult), then exit.
// Must not: retry a transaction (a retry would hide what the pooler lost or applied twice).

import pg from 'pg'
import { startPgbenchDrill } from './drill-pgbench.ts'
import { startLoad } from './load.ts'
import type { DrillAttemptFailure, DrillClientOptions, DrillClientResult } from './tier-drill.ts'

async function main(): Promise<void> {
  const o = JSON.parse(process.argv[2] ?? '{}') as DrillClientOptions
  const acked: number[] = []
  const connects: number[] = []
  const failures: DrillAttemptFailure[] = []
  let refusedConnects = 0
  let failedTx = 0

  const load = startLoad({
    clients: o.clients,
    thinkMs: o.thinkMs,
    backoffMs: 50,
    connect: async (client) => {
      const started = Date.now()
      const c = new pg.Client({
        host: o.host, port: o.port, user: o.user, password: o.password, database: o.database,
        connectionTimeoutMillis: 3_000, query_timeout: 15_000,
      })
      c.on('error', () => { /* the awaited call reports it */ })
      try {
        await c.connect()
        connects.push(started, Date.now() - started, 1)
        return c
      } catch (err) {
        connects.push(started, Date.now() - started, 0)
        refusedConnects++
        failures.push({ client, seq: -1, phase: 'connect', startedMs: started, endedMs: Date.now(), error: (err as Error).message })
        await c.end().catch(() => {})
        throw err
      }
    },
    tx: async (c, client, seq) => {
      const started = Date.now()
      let phase = 'begin'
      try {
        await c.query('BEGIN')
        phase = 'insert'
        await c.query('INSERT INTO drill_tx (client, seq) VALUES ($1, $2)', [client, seq])
        phase = 'commit'
        await c.query('COMMIT')
      } catch (err) {
        failedTx++
        failures.push({ client, seq, phase, startedMs: started, endedMs: Date.now(), error: (err as Error).message })
        throw err
      }
      acked.push(client, seq)
      return 0
    },
  })

  let pgbenchCommitted = 0
  const bench = o.pgbench === undefined ? null : startPgbenchDrill({
    host: o.host, port: o.port, user: o.user, password: o.password, database: o.database,
    clients: o.pgbench.clients, runSeconds: o.pgbench.runSeconds, clientBase: 1000,
  }, (n) => { pgbenchCommitted += n })

  const ticker = setInterval(() => process.stdout.write(`progress ${load.stats.ok + pgbenchCommitted} ${load.stats.failed}\n`), 100)
  process.once('SIGINT', () => {
    clearInterval(ticker)
    void Promise.all([load.stop(), bench?.stop()]).then(([stats, pgbench]) => {
      const result: DrillClientResult = {
        acked, connects, failures, committed: stats.ok, failedTx, refusedConnects, longestStallMs: stats.longestStallMs, pgbench,
      }
      process.stdout.write(`result ${JSON.stringify(result)}\n`, () => process.exit(0))
    })
  })
}

void main()
