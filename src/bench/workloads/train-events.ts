// train-events: a railway's live feed. A movement cycle records a train arriving at, leaving or
// passing a station and moves the train there, in one transaction; look-up cycles read a station's
// latest events or a train's position.

import { fillInChunks, inTransaction, maxOf, weightsOf, type CycleContext, type Workload } from '../workload.ts'
import { WeightedChoice } from '../rng.ts'

const KINDS = ['arrival', 'departure', 'passing']
const OPS = ['movement', 'station', 'train'] as const

export const trainEvents: Workload = {
  name: 'train-events',
  description: 'train movement events (a transaction of two writes) and station and train look-ups',
  ops: OPS,
  params: [
    { name: 'stations', default: 500, doc: 'stations created by init', integer: true, min: 1, size: true },
    { name: 'trains', default: 200, doc: 'trains created by init', integer: true, min: 1, size: true },
    { name: 'events', default: 20_000, doc: 'movement events created by init', integer: true, min: 0, size: true },
    { name: 'movement', default: 60, doc: 'weight of the movement cycle', min: 0 },
    { name: 'station', default: 30, doc: 'weight of the station look-up cycle', min: 0 },
    { name: 'train', default: 10, doc: 'weight of the train look-up cycle', min: 0 },
  ],

  async init(client, p) {
    await client.query('DROP TABLE IF EXISTS bench_train_events, bench_trains, bench_stations')
    await client.query('CREATE TABLE bench_stations (id INT8 PRIMARY KEY, code TEXT NOT NULL, name TEXT NOT NULL, city TEXT NOT NULL)')
    await client.query(`CREATE TABLE bench_trains (id INT8 PRIMARY KEY, name TEXT NOT NULL, station_id INT8 NOT NULL,
      delay_s INT4 NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())`)
    await client.query(`CREATE TABLE bench_train_events (id BIGSERIAL PRIMARY KEY, train_id INT8 NOT NULL,
      station_id INT8 NOT NULL, kind TEXT NOT NULL, delay_s INT4 NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT now())`)
    await client.query('CREATE INDEX bench_train_events_station_at ON bench_train_events (station_id, at DESC)')
    await fillInChunks(client, `INSERT INTO bench_stations (id, code, name, city)
      SELECT g, 'S' || g::TEXT, 'Station ' || g::TEXT, 'City ' || (1 + g % 97)::TEXT FROM generate_series($1::INT8, $2::INT8) AS g`, p.stations)
    await fillInChunks(client, `INSERT INTO bench_trains (id, name, station_id, delay_s)
      SELECT g, 'IC ' || (100 + g)::TEXT, 1 + (g * 13) % $3::INT8, 0 FROM generate_series($1::INT8, $2::INT8) AS g`, p.trains, [p.stations])
    await fillInChunks(client, `INSERT INTO bench_train_events (train_id, station_id, kind, delay_s, at)
      SELECT 1 + g % $3::INT8, 1 + (g * 7) % $4::INT8, (ARRAY['arrival','departure','passing'])[1 + g % 3], (g * 37) % 600,
        now() - (g % 86400) * INTERVAL '1 second'
      FROM generate_series($1::INT8, $2::INT8) AS g`, p.events, [p.trains, p.stations])
  },

  async probe(client, p) {
    const stations = await maxOf(client, 'train-events', 'bench_stations', 'id')
    return { ...p, stations, trains: await maxOf(client, 'train-events', 'bench_trains', 'id') }
  },

  cycle(ctx: CycleContext) {
    const { rng, params: p } = ctx
    const insert = ctx.query('movement_insert', 'INSERT INTO bench_train_events (train_id, station_id, kind, delay_s) VALUES ($1, $2, $3, $4)', [1, 1, '', 0])
    const move = ctx.query('movement_update', 'UPDATE bench_trains SET station_id = $2, delay_s = $3, updated_at = now() WHERE id = $1', [1, 1, 0])
    const station = ctx.query('station', `SELECT e.train_id, t.name, e.kind, e.delay_s, e.at, s.name
      FROM bench_train_events e JOIN bench_stations s ON s.id = e.station_id JOIN bench_trains t ON t.id = e.train_id
      WHERE e.station_id = $1 ORDER BY e.at DESC LIMIT 20`, [1])
    const train = ctx.query('train', `SELECT t.name, t.delay_s, t.updated_at, s.code, s.name, s.city
      FROM bench_trains t JOIN bench_stations s ON s.id = t.station_id WHERE t.id = $1`, [1])
    const iv = insert.values!
    const mv = move.values!
    const writeBoth = async () => {
      await ctx.client.query(insert)
      await ctx.client.query(move)
    }
    const runMovement = () => inTransaction(ctx, writeBoth)
    const runStation = () => ctx.client.query(station)
    const runTrain = () => ctx.client.query(train)
    const choice = new WeightedChoice(weightsOf(p, OPS))
    return async () => {
      const which = choice.pick(rng)
      if (which === 0) {
        iv[0] = mv[0] = rng.int(1, p.trains)
        iv[1] = mv[1] = rng.int(1, p.stations)
        iv[2] = rng.pick(KINDS)
        iv[3] = mv[2] = rng.int(0, 900)
        await ctx.op.run(0, runMovement)
      } else if (which === 1) {
        station.values![0] = rng.int(1, p.stations)
        await ctx.op.run(1, runStation)
      } else {
        train.values![0] = rng.int(1, p.trains)
        await ctx.op.run(2, runTrain)
      }
    }
  },
}
