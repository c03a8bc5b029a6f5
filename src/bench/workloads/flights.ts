// flights: an airline's operational data under constant small updates. Each cycle takes a batch of
// random flights and, each with its own probability, moves their schedule, sets their status, sells
// seats in one cabin and reprices one cabin: four independent autocommit UPDATEs, with an optional
// pause between them. Rows are locked in id order (the batch is sorted), so concurrent batches
// queue rather than deadlock.

import type pg from 'pg'
import { fillInChunks, maxOf, type CycleContext, type Params, type Workload } from '../workload.ts'

const STATUSES = ['scheduled', 'boarding', 'departed', 'delayed', 'landed', 'cancelled']
const CABINS = ['economy', 'business', 'first']
const byNumber = (a: number, b: number): number => a - b

export const flights: Workload = {
  name: 'flights',
  description: 'schedule, status, seat inventory and price updates on batches of flights',
  ops: ['schedule', 'status', 'inventory', 'price'],
  params: [
    { name: 'flights', default: 10_000, doc: 'flights created by init', integer: true, min: 1, size: true },
    { name: 'schedule', default: 10, doc: '% of cycles that move the batch\'s departure and arrival times', min: 0, max: 100 },
    { name: 'status', default: 90, doc: '% of cycles that set the batch\'s status', min: 0, max: 100 },
    { name: 'inventory', default: 75, doc: '% of cycles that sell seats on the batch', min: 0, max: 100 },
    { name: 'price', default: 25, doc: '% of cycles that reprice a cabin of the batch', min: 0, max: 100 },
    { name: 'batch-size', default: 10, doc: 'flights updated by each statement', integer: true, min: 1, max: 10_000 },
    { name: 'delay', default: 0, doc: 'pause between the updates of one cycle, in ms', min: 0 },
  ],

  async init(client: pg.Client, p: Params) {
    await client.query('DROP TABLE IF EXISTS bench_flight_prices, bench_flight_seats, bench_flights')
    await client.query(`CREATE TABLE bench_flights (
      id INT8 PRIMARY KEY, flight_no TEXT NOT NULL, origin TEXT NOT NULL, destination TEXT NOT NULL,
      departs_at TIMESTAMPTZ NOT NULL, arrives_at TIMESTAMPTZ NOT NULL, status TEXT NOT NULL,
      updated_at TIMESTAMPTZ NOT NULL DEFAULT now())`)
    await client.query(`CREATE TABLE bench_flight_seats (
      flight_id INT8 NOT NULL, cabin TEXT NOT NULL, seats_total INT4 NOT NULL, seats_sold INT4 NOT NULL,
      PRIMARY KEY (flight_id, cabin))`)
    await client.query(`CREATE TABLE bench_flight_prices (
      flight_id INT8 NOT NULL, cabin TEXT NOT NULL, price NUMERIC(10, 2) NOT NULL,
      updated_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (flight_id, cabin))`)
    // Deterministic data (no random()), so every init of one size gives the same tables.
    await fillInChunks(client, `INSERT INTO bench_flights (id, flight_no, origin, destination, departs_at, arrives_at, status)
      SELECT g, 'TP' || g::TEXT,
        (ARRAY['AMS','ATL','CDG','DXB','FRA','HND','JFK','LAX','LHR','MAD','ORD','PEK','SFO','SIN','SYD'])[1 + g % 15],
        (ARRAY['AMS','ATL','CDG','DXB','FRA','HND','JFK','LAX','LHR','MAD','ORD','PEK','SFO','SIN','SYD'])[1 + (g * 7 + 3) % 15],
        now() + (g % 720) * INTERVAL '1 hour', now() + (g % 720 + 2 + g % 11) * INTERVAL '1 hour', 'scheduled'
      FROM generate_series($1::INT8, $2::INT8) AS g`, p.flights)
    await fillInChunks(client, `INSERT INTO bench_flight_seats (flight_id, cabin, seats_total, seats_sold)
      SELECT g, c.cabin, c.seats, 0 FROM generate_series($1::INT8, $2::INT8) AS g,
        (VALUES ('economy', 150), ('business', 30), ('first', 8)) AS c (cabin, seats)`, p.flights)
    await fillInChunks(client, `INSERT INTO bench_flight_prices (flight_id, cabin, price)
      SELECT g, c.cabin, c.base + (g % 50) FROM generate_series($1::INT8, $2::INT8) AS g,
        (VALUES ('economy', 120), ('business', 900), ('first', 2500)) AS c (cabin, base)`, p.flights)
  },

  async probe(client, p) {
    return { ...p, flights: await maxOf(client, 'flights', 'bench_flights', 'id') }
  },

  cycle(ctx: CycleContext) {
    const { rng, params: p } = ctx
    const n = p.flights
    const ids: number[] = new Array<number>(Math.min(p['batch-size'], n)).fill(1)
    const schedule = ctx.query('schedule', `UPDATE bench_flights SET departs_at = departs_at + $2::INT8 * INTERVAL '1 minute',
      arrives_at = arrives_at + $2::INT8 * INTERVAL '1 minute', updated_at = now() WHERE id = ANY($1::INT8[])`, [ids, 0])
    const status = ctx.query('status', 'UPDATE bench_flights SET status = $2, updated_at = now() WHERE id = ANY($1::INT8[])', [ids, ''])
    const inventory = ctx.query('inventory', `UPDATE bench_flight_seats SET seats_sold = LEAST(seats_total, seats_sold + $2::INT4)
      WHERE flight_id = ANY($1::INT8[]) AND cabin = $3`, [ids, 0, ''])
    const price = ctx.query('price', `UPDATE bench_flight_prices SET price = GREATEST(10, LEAST(10000, price * $2::NUMERIC)), updated_at = now()
      WHERE flight_id = ANY($1::INT8[]) AND cabin = $3`, [ids, 1, ''])
    const runSchedule = () => ctx.client.query(schedule)
    const runStatus = () => ctx.client.query(status)
    const runInventory = () => ctx.client.query(inventory)
    const runPrice = () => ctx.client.query(price)
    const delay = p.delay
    let first = true
    const pause = async () => {
      if (!first && delay > 0) await ctx.sleep(delay)
      first = false
    }
    return async () => {
      for (let i = 0; i < ids.length; i++) ids[i] = rng.int(1, n)
      ids.sort(byNumber)
      first = true
      if (rng.chance(p.schedule)) {
        await pause()
        schedule.values![1] = rng.int(-30, 60)
        await ctx.op.run(0, runSchedule)
      }
      if (rng.chance(p.status)) {
        await pause()
        status.values![1] = rng.pick(STATUSES)
        await ctx.op.run(1, runStatus)
      }
      if (rng.chance(p.inventory)) {
        await pause()
        inventory.values![1] = rng.int(1, 4)
        inventory.values![2] = rng.pick(CABINS)
        await ctx.op.run(2, runInventory)
      }
      if (rng.chance(p.price)) {
        await pause()
        price.values![1] = (95 + rng.int(0, 10)) / 100
        price.values![2] = rng.pick(CABINS)
        await ctx.op.run(3, runPrice)
      }
    }
  },
}
