// The custom workload file of `tidepool bench`: what it accepts, what a statement becomes (text,
// bind parameters, one transaction for several statements), and that every mistake is reported
// with its file:line.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseWorkloadFile } from '../../src/bench/workloads/custom-format.ts'
import { customWorkload } from '../../src/bench/workloads/custom.ts'
import { Rng, WeightedChoice } from '../../src/bench/rng.ts'
import type { CycleContext, OpRunner } from '../../src/bench/workload.ts'

const GOOD = `# comment
[params]
rows = 100
width = 8

[init]
CREATE TABLE kv (k INT8 PRIMARY KEY,
  v TEXT);
INSERT INTO kv SELECT g, 'x' FROM generate_series(1, \${rows}) AS g;

[op read weight=3]
-- a comment inside an op
SELECT v FROM kv WHERE k = \${int(1, rows)}

[op write weight=1]
UPDATE kv SET v = \${text(width)} WHERE k = \${int(1, rows)};
INSERT INTO log (kind, at) VALUES (\${pick('a', 'it''s')}, now());
`

test('a workload file: params, init statements, ops with weights', () => {
  const wf = parseWorkloadFile(GOOD, 'kv.workload')
  assert.deepEqual(wf.params.map((p) => [p.name, p.value, p.line]), [['rows', 100, 3], ['width', 8, 4]])
  assert.equal(wf.init.length, 2)
  assert.equal(wf.init[0].line, 7)
  assert.deepEqual(wf.ops.map((o) => [o.name, o.weight, o.statements.length]), [['read', 3, 1], ['write', 1, 2]])
})

function fakeContext(params: Record<string, number>) {
  const sent: Array<{ text: string; values: unknown[] }> = []
  const client = { query: async (q: string | { text: string; values?: unknown[] }) => { sent.push(typeof q === 'string' ? { text: q, values: [] } : { text: q.text, values: [...(q.values ?? [])] }) } }
  const op: OpRunner = { run: async (_i, fn) => { await fn(); return true } }
  const ctx = {
    client, rng: new Rng(1), params, op,
    query: (_id: string, text: string, values: unknown[]) => ({ text, values, rowMode: 'array' as const }),
    sleep: async () => {},
  } as unknown as CycleContext
  return { ctx, sent }
}

test('ops become bind parameters; several statements run as one transaction', async () => {
  const w = customWorkload(parseWorkloadFile(GOOD, 'kv.workload'))
  assert.deepEqual(w.ops, ['read', 'write'])
  const params = { rows: 100, width: 8, 'weight-read': 0, 'weight-write': 1 }
  const { ctx, sent } = fakeContext(params)
  await w.cycle(ctx)()
  assert.deepEqual(sent.map((s) => s.text), [
    'BEGIN',
    'UPDATE kv SET v = $1 WHERE k = $2',
    'INSERT INTO log (kind, at) VALUES ($1, now())',
    'COMMIT',
  ])
  const [text, k] = sent[1].values as [string, number]
  assert.match(text, /^[A-Za-z0-9]{8}$/)
  assert.ok(Number.isInteger(k) && k >= 1 && k <= 100)
  assert.ok(['a', "it's"].includes(sent[2].values[0] as string))
})

test('init statements get params written in', async () => {
  const w = customWorkload(parseWorkloadFile(GOOD, 'kv.workload'))
  const { ctx, sent } = fakeContext({})
  await w.init(ctx.client, { rows: 42, width: 8 })
  assert.equal(sent[1].text, "INSERT INTO kv SELECT g, 'x' FROM generate_series(1, 42) AS g")
})

const BAD: Array<[string, string, RegExp]> = [
  ['text outside sections', 'SELECT 1;\n', /^f:1: text before the first section/],
  ['unknown section', '[op a]\nSELECT 1;\n[nope]\n', /^f:3: unknown section \[nope\]/],
  ['bad weight', '[params]\nn = 1\n[op a weight=x]\nSELECT 1;\n', /^f:3: op a: weight must be a number >= 0, got x/],
  ['bad param', '[params]\nn = many\n[op a]\nSELECT 1;\n', /^f:2: param n: many is not a number/],
  ['unknown param', '[op a]\nSELECT 1\n  + ${m};\n', /^f:3: unknown param m/],
  ['unclosed generator', '[op a]\nSELECT ${int(1, 2;\n', /^f:2: '\$\{' without its closing '\}'/],
  ['unknown function', '[op a]\n\nSELECT ${rand(1, 2)};\n', /^f:3: unknown function rand\(\)/],
  ['wrong arity', '[op a]\nSELECT ${int(1)};\n', /^f:2: int\(\) takes 2 argument\(s\), got 1/],
  ['generator in init', '[init]\nSELECT ${int(1, 2)};\n[op a]\nSELECT 1;\n', /^f:2: int\(\) draws random values for ops/],
  ['own placeholders', '[op a]\nSELECT 1\nWHERE x = $1;\n', /^f:3: bind placeholders like \$1/],
  ['duplicate op', '[op a]\nSELECT 1;\n[op a]\nSELECT 2;\n', /^f:3: op a is defined twice/],
  ['empty op', '[op a]\n[op b]\nSELECT 1;\n', /^f:1: op a has no statement/],
  ['no ops', '[params]\nn = 1\n', /^f:2: no \[op NAME weight=N\] section/],
  ['all weights zero', '[op a weight=0]\nSELECT 1;\n', /^f:1: every op has weight 0/],
  ['trailing comma', '[op a]\nSELECT ${pick(1,)};\n', /^f:2: an argument is missing/],
]

for (const [what, text, message] of BAD) {
  test(`a workload file with ${what} is refused with its line`, () => {
    assert.throws(() => parseWorkloadFile(text, 'f'), { message })
  })
}

test('the random streams are the same for the same seed, worker and connection', () => {
  const a = new Rng(7, 1, 2)
  const b = new Rng(7, 1, 2)
  const c = new Rng(7, 2, 1)
  const seq = (r: Rng) => Array.from({ length: 5 }, () => r.next())
  const sa = seq(a)
  assert.deepEqual(sa, seq(b))
  assert.notDeepEqual(sa, seq(c))
  const r = new Rng(3)
  const choice = new WeightedChoice([1, 0, 3])
  const counts = [0, 0, 0]
  for (let i = 0; i < 4000; i++) counts[choice.pick(r)]++
  assert.equal(counts[1], 0)
  assert.ok(counts[2] > 2 * counts[0], JSON.stringify(counts))
  for (let i = 0; i < 1000; i++) {
    const v = r.int(-3, 3)
    assert.ok(Number.isInteger(v) && v >= -3 && v <= 3)
  }
})
