// The session-state scanner: what it notices in SQL text, what it must ignore (strings, quoted
// identifiers, comments, dollar quotes), and that a text cut into parts at any points reads the same.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { ScanFlag, SqlScanner } from '../../src/proxy/session-state.ts'

interface Read { flags: number; creator: string; names: string[] }

function scan(sql: string): Read {
  const s = new SqlScanner()
  const b = Buffer.from(sql, 'utf8')
  s.scan(b, 0, b.length)
  return { flags: s.flags, creator: s.creator, names: s.names === null ? [] : [...s.names] }
}

function scanInParts(sql: string, cuts: number[]): Read {
  const s = new SqlScanner()
  const b = Buffer.from(sql, 'utf8')
  const at = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y)
  s.begin()
  let from = 0
  for (const c of [...at, b.length]) {
    s.feed(b, from, c)
    from = c
  }
  s.finish()
  return { flags: s.flags, creator: s.creator, names: s.names === null ? [] : [...s.names] }
}

const { Probe, Listen, DropStatements } = ScanFlag

test('statements that touch no session state are not flagged', () => {
  for (const sql of [
    'SELECT 1', 'select * from settings', 'INSERT INTO t VALUES (1)', 'UPDATE pgbench_accounts SET abalance = 1',
    'SELECT abalance FROM pgbench_accounts WHERE aid = $1', 'BEGIN', 'COMMIT', 'WITH x AS (SELECT 1) SELECT * FROM x',
    'SELECT pg_advisory_xact_lock(1)', 'CREATE TABLE t (x int)', 'SELECT $1::text',
  ]) assert.deepEqual(scan(sql), { flags: 0, creator: '', names: [] }, sql)
})

test('statements that may change session state are flagged, and session-bound ones named', () => {
  const cases: Array<[string, number, string, string[]]> = [
    ['SET search_path = a', Probe, '', []],
    ['set session statement_timeout = 5', Probe, '', []],
    ["SET myapp.who = 'x'", Probe, '', ['myapp.who']],
    ['SET ROLE bob', Probe, '', ['role']],
    ['SET SESSION AUTHORIZATION bob', Probe, 'SET SESSION AUTHORIZATION', []],
    ['RESET ALL', Probe, '', []],
    ["SELECT set_config('Myapp.X', 'v', false)", Probe, '', ['myapp.x']],
    ['DISCARD ALL', Probe | DropStatements, '', []],
    ['DEALLOCATE ALL', Probe | DropStatements, '', []],
    ['LISTEN ch', Probe | Listen, 'LISTEN', []],
    ['UNLISTEN *', Probe, '', []],
    ['SELECT pg_advisory_lock(1)', Probe, 'pg_advisory_lock', []],
    ['SELECT pg_catalog.pg_try_advisory_lock_shared(1)', Probe, 'pg_catalog.pg_try_advisory_lock_shared', []],
    ['SELECT pg_advisory_unlock(1)', Probe, '', []],
    ['CREATE TEMP TABLE t (x int)', Probe, 'CREATE TEMPORARY', []],
    ['SELECT 1 INTO TEMPORARY t', Probe, 'SELECT INTO TEMPORARY', []],
    ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', Probe, 'DECLARE ... WITH HOLD', []],
    ['PREPARE p AS SELECT 1', Probe, 'PREPARE', []],
    ["PREPARE TRANSACTION 'x'", Probe, '', []],
    ['DO $$ BEGIN END $$', Probe, '', []],
    ['SELECT 1; LISTEN late', Probe | Listen, 'LISTEN', []],
  ]
  for (const [sql, flags, creator, names] of cases) assert.deepEqual(scan(sql), { flags, creator, names }, sql)
})

test('keywords inside strings, quoted identifiers, comments and dollar quotes do not count', () => {
  for (const sql of [
    "SELECT 'LISTEN x; SET a = 1'", 'SELECT "listen" FROM t', 'SELECT 1 -- ; LISTEN x', 'SELECT 1 /* ; LISTEN x /* nested */ ; SET a=1 */',
    "SELECT $$; LISTEN x$$", "SELECT $tag$ ; SET x = 1; $ $tag$", "SELECT E'\\'; LISTEN x'", "SELECT 'it''s; LISTEN x'",
    "SELECT 'pg_advisory_lock(1)'",
  ]) assert.deepEqual(scan(sql), { flags: 0, creator: '', names: [] }, sql)
})

test('a text cut into parts at any points scans the same as the whole text', () => {
  const pieces = fc.constantFrom(
    'SELECT 1', ';', ' ', 'LISTEN ch', "'str;LISTEN'", '"Quoted ident"', '-- comment\n', '/* block /* in */ */', '$$ body; SET x=1 $$',
    '$t$ tagged $t$', "E'esc\\'aped'", 'SET myapp.k = 1', "set_config('a.b', 'v', false)", 'pg_advisory_lock(1)', 'CREATE TEMP TABLE t()',
    'DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'DISCARD ALL', 'SET SESSION AUTHORIZATION x', 'é', '$1',
  )
  fc.assert(fc.property(fc.array(pieces, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 8 }), (parts, cuts) => {
    const sql = parts.join('')
    assert.deepEqual(scanInParts(sql, cuts), scan(sql))
  }), { numRuns: 500 })
})
