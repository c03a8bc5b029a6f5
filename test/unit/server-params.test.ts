// Tracked parameters (proxy/server-params.ts): the SQL that brings a server in line with a client,
// and which of a client's values the pool's servers never report (they follow it as GUCs).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { paramSyncQuery, unreportedParams } from '../../src/proxy/server-params.ts'
import { trackedLowerNames } from '../../src/proxy/session-pin.ts'

test('a search_path goes through set_config, which reads it as a list; other parameters through SET', () => {
  const sql = paramSyncQuery(new Map([['TimeZone', 'UTC'], ['search_path', 'a, "B c", public']]), new Map([['TimeZone', 'Europe/Lisbon']]))
  assert.equal(sql, `SET "TimeZone" = 'UTC';SELECT pg_catalog.set_config('search_path', 'a, "B c", public', false);`)
  assert.equal(paramSyncQuery(new Map([['search_path', 'x']]), new Map([['search_path', 'x']])), null)
})

test('tracked values the servers do not report are told apart by the pool\'s welcome set', () => {
  const welcome = new Map([['TimeZone', 'UTC'], ['application_name', ''], ['IntervalStyle', 'postgres']])
  assert.equal(unreportedParams(new Map([['TimeZone', 'Asia/Tokyo']]), welcome), null)
  assert.deepEqual(unreportedParams(new Map([['TimeZone', 'Asia/Tokyo'], ['Search_Path', 'a,b']]), welcome), new Map([['search_path', 'a,b']]))
  // The probe leaves out only the reported ones: search_path is read back like any GUC.
  const extra = ['IntervalStyle', 'search_path']
  const names = trackedLowerNames(extra, welcome)
  assert.ok(names.includes('intervalstyle') && names.includes('timezone'))
  assert.equal(names.includes('search_path'), false)
  assert.equal(trackedLowerNames(extra, new Map([...welcome, ['search_path', 'public']])).includes('search_path'), true)
  assert.equal(trackedLowerNames(extra, welcome), names, 'computed once per pool')
})
