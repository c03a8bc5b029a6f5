// event-logs: an append-mostly log shared by many sources. A cycle is one of: insert a batch of
// events in one multi-row INSERT, or read a source's latest events through its (source, time) index.

import { fillInChunks, maxOf, weightsOf, type CycleContext, type Workload } from '../workload.ts'
import { WeightedChoice } from '../rng.ts'

const KINDS = ['login', 'logout', 'click', 'purchase', 'error', 'heartbeat']
const OPS = ['insert', 'read'] as const

export const eventLogs: Workload = {
  name: 'event-logs',
  description: 'batched event inserts and recent-event reads per source',
  ops: OPS,
  params: [
    { name: 'sources', default: 1000, doc: 'event sources (devices, services) created by init', integer: true, min: 1, size: true },
    { name: 'events', default: 20_000, doc: 'events created by init', integer: true, min: 0, size: true },
    { name: 'insert', default: 50, doc: 'weight of the insert cycle', min: 0 },
    { name: 'read', default: 50, doc: 'weight of the read cycle', min: 0 },
    { name: 'batch-size', default: 20, doc: 'events per INSERT', integer: true, min: 1, max: 1000 },
    { name: 'read-limit', default: 20, doc: 'events returned by a read', integer: true, min: 1 },
  ],

  async init(client, p) {
    await client.query('DROP TABLE IF EXISTS bench_event_sources, bench_event_logs')
    await client.query('CREATE TABLE bench_event_sources (id INT8 PRIMARY KEY, name TEXT NOT NULL)')
    // BIGSERIAL is a sequence on PostgreSQL and unique_rowid() on CockroachDB: no hot spot there.
    await client.query(`CREATE TABLE bench_event_logs (
      id BIGSERIAL PRIMARY KEY, source_id INT8 NOT NULL, kind TEXT NOT NULL, severity INT4 NOT NULL,
      message TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())`)
    await client.query('CREATE INDEX bench_event_logs_source_time ON bench_event_logs (source_id, created_at DESC)')
    await fillInChunks(client, `INSERT INTO bench_event_sources (id, name) SELECT g, 'source-' || g::TEXT FROM generate_series($1::INT8, $2::INT8) AS g`, p.sources)
    await fillInChunks(client, `INSERT INTO bench_event_logs (source_id, kind, severity, message, created_at)
      SELECT 1 + g % $3::INT8, (ARRAY['login','logout','click','purchase','error','heartbeat'])[1 + g % 6], g % 5,
        'initial event ' || g::TEXT, now() - (g % 86400) * INTERVAL '1 second'
      FROM generate_series($1::INT8, $2::INT8) AS g`, p.events, [p.sources])
  },

  async probe(client, p) {
    return { ...p, sources: await maxOf(client, 'event-logs', 'bench_event_sources', 'id') }
  },

  cycle(ctx: CycleContext) {
    const { rng, params: p } = ctx
    const batch = p['batch-size']
    const rows: string[] = []
    for (let i = 0; i < batch; i++) rows.push(`($${4 * i + 1}::INT8, $${4 * i + 2}, $${4 * i + 3}::INT4, $${4 * i + 4})`)
    const insert = ctx.query(`insert_${batch}`, `INSERT INTO bench_event_logs (source_id, kind, severity, message) VALUES ${rows.join(', ')}`, new Array<unknown>(4 * batch).fill(0))
    const read = ctx.query('read', `SELECT id, kind, severity, message, created_at FROM bench_event_logs
      WHERE source_id = $1 ORDER BY created_at DESC LIMIT $2`, [1, p['read-limit']])
    const iv = insert.values!
    const runInsert = () => ctx.client.query(insert)
    const runRead = () => ctx.client.query(read)
    const choice = new WeightedChoice(weightsOf(p, OPS))
    return async () => {
      if (choice.pick(rng) === 0) {
        for (let i = 0; i < iv.length; i += 4) {
          iv[i] = rng.int(1, p.sources)
          iv[i + 1] = rng.pick(KINDS)
          iv[i + 2] = rng.int(0, 4)
          iv[i + 3] = `event ${rng.next().toString(36)}`
        }
        await ctx.op.run(0, runInsert)
      } else {
        read.values![0] = rng.int(1, p.sources)
        await ctx.op.run(1, runRead)
      }
    }
  },
}
