// pgbouncer.ini syntax: comments, sections, quoted names, %include (relative paths, section
// carry-over, cycles, depth), and located errors instead of exceptions.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { MAX_INCLUDE_DEPTH, parseIniFile, parseIniText, type IniResult } from '../../src/config/ini.ts'

const FILE = '/etc/tidepool/main.ini'

function entries(r: IniResult): Array<[string, string, string, number]> {
  return r.entries.map((e) => [e.section, e.key, e.value, e.pos.line])
}

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-ini-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

const lineCases: Array<{ name: string; text: string; want: Array<[string, string, string, number]> }> = [
  { name: 'key = value, trimmed', text: '[pgbouncer]\n  listen_port   =   6432  \n', want: [['pgbouncer', 'listen_port', '6432', 2]] },
  { name: 'no blanks around =', text: '[pgbouncer]\nlisten_port=6432', want: [['pgbouncer', 'listen_port', '6432', 2]] },
  { name: '; and # comment lines', text: '; top\n[pgbouncer]\n# note\n  ; indented\nverbose = 1', want: [['pgbouncer', 'verbose', '1', 5]] },
  { name: '; and # later in a line are data', text: '[pgbouncer]\nauth_query = SELECT 1 ; # not a comment', want: [['pgbouncer', 'auth_query', 'SELECT 1 ; # not a comment', 2]] },
  { name: 'value may contain =', text: '[databases]\napp = host=db port=5432', want: [['databases', 'app', 'host=db port=5432', 2]] },
  { name: 'empty value', text: '[pgbouncer]\nunix_socket_dir =', want: [['pgbouncer', 'unix_socket_dir', '', 2]] },
  { name: 'section names lowercased, keys keep case', text: '[DataBases]\nMyDb = host=x', want: [['databases', 'MyDb', 'host=x', 2]] },
  { name: 'section header with trailing comment', text: '[pgbouncer] ; main\nverbose=2', want: [['pgbouncer', 'verbose', '2', 2]] },
  { name: 'double-quoted name with doubled quote', text: '[databases]\n"my ""odd"" db" = host=x', want: [['databases', 'my "odd" db', 'host=x', 2]] },
  { name: 'single-quoted name', text: "[databases]\n'a b' = host=x", want: [['databases', 'a b', 'host=x', 2]] },
  { name: 'the * fallback name', text: '[databases]\n* = host=x', want: [['databases', '*', 'host=x', 2]] },
  { name: 'CRLF line ends and a BOM', text: '\uFEFF[pgbouncer]\r\nverbose = 1\r\n', want: [['pgbouncer', 'verbose', '1', 2]] },
  { name: 'repeated section continues it', text: '[pgbouncer]\na=1\n[databases]\nx=\n[pgbouncer]\nb=2', want: [['pgbouncer', 'a', '1', 2], ['databases', 'x', '', 4], ['pgbouncer', 'b', '2', 6]] },
]

for (const c of lineCases) {
  test(`ini: ${c.name}`, async () => {
    const r = await parseIniText(c.text, FILE)
    assert.deepEqual(r.errors, [])
    assert.deepEqual(entries(r), c.want)
    assert.ok(r.entries.every((e) => e.pos.file === FILE))
  })
}

const errorCases: Array<{ name: string; text: string; want: string }> = [
  { name: 'line without =', text: '[pgbouncer]\nlisten_port 6432', want: `${FILE}:2: expected "key = value": no '=' on the line` },
  { name: 'key before any section', text: 'listen_port = 1', want: `${FILE}:1: 'listen_port' comes before any [section]` },
  { name: 'unclosed section header', text: '[pgbouncer\n', want: `${FILE}:1: malformed section header: expected "[name]" alone on the line` },
  { name: 'text after a section header', text: '[pgbouncer] x = 1', want: `${FILE}:1: malformed section header: expected "[name]" alone on the line` },
  { name: 'unknown directive', text: '%includ x.ini', want: `${FILE}:1: unknown directive "%includ"; only %include is known` },
  { name: '%include without a name', text: '%include', want: `${FILE}:1: %include needs a file name` },
  { name: 'unquoted name with blanks', text: '[databases]\nmy db = host=x', want: `${FILE}:2: a name with spaces must be quoted: "my db"` },
  { name: 'unterminated quoted name', text: '[databases]\n"my db = host=x', want: `${FILE}:2: unterminated quoted name: no closing " on the line` },
  { name: 'missing name', text: '[pgbouncer]\n= hunter2', want: `${FILE}:2: missing name before '='` },
]

// A bad line may hold a password: its error names file:line and the problem, never the text.
const secretLines = [
  '"app = host=db password=hunter2',
  "'app = host=db password=hunter2",
  'app host=db password=hunter2',
  '= host=db password=hunter2',
  '[databases] app = host=db password=hunter2',
]
for (const line of secretLines) {
  test(`ini: the error for ${JSON.stringify(line.slice(0, 12))}... does not echo the line`, async () => {
    const r = await parseIniText(`[databases]\n${line}\n`, FILE)
    assert.equal(r.errors.length, 1)
    assert.ok(r.errors[0].startsWith(`${FILE}:2: `), r.errors[0])
    assert.ok(!r.errors[0].includes('hunter2') && !r.errors[0].includes('host=db'), r.errors[0])
  })
}

for (const c of errorCases) {
  test(`ini: error for ${c.name}`, async () => {
    const r = await parseIniText(c.text, FILE)
    assert.deepEqual(r.errors, [c.want])
  })
}

test('ini: a bad line is reported and the lines after it still read', async () => {
  const r = await parseIniText('[pgbouncer]\noops\nverbose = 1\n', FILE)
  assert.equal(r.errors.length, 1)
  assert.deepEqual(entries(r), [['pgbouncer', 'verbose', '1', 3]])
})

test('ini: %include splices a file relative to the including one, and the section carries both ways', async (t) => {
  const dir = tempDir(t)
  fs.mkdirSync(join(dir, 'conf.d'))
  fs.writeFileSync(join(dir, 'conf.d', 'dbs.ini'), 'app = host=a\n%include more.ini\n')
  fs.writeFileSync(join(dir, 'conf.d', 'more.ini'), 'other = host=b\n[pgbouncer]\nverbose = 2\n')
  const main = join(dir, 'main.ini')
  fs.writeFileSync(main, '[databases]\n%include conf.d/dbs.ini\nlisten_port = 7000\n')
  const r = await parseIniFile(main)
  assert.deepEqual(r.errors, [])
  assert.deepEqual(r.entries.map((e) => [e.section, e.key, e.pos.file, e.pos.line]), [
    ['databases', 'app', join(dir, 'conf.d', 'dbs.ini'), 1],
    ['databases', 'other', join(dir, 'conf.d', 'more.ini'), 1],
    ['pgbouncer', 'verbose', join(dir, 'conf.d', 'more.ini'), 3],
    // The included file switched to [pgbouncer]; the rest of main.ini stays there.
    ['pgbouncer', 'listen_port', main, 3],
  ])
  assert.deepEqual(r.files, [main, join(dir, 'conf.d', 'dbs.ini'), join(dir, 'conf.d', 'more.ini')])
})

test('ini: %include with an absolute path', async (t) => {
  const dir = tempDir(t)
  fs.writeFileSync(join(dir, 'x.ini'), '[pgbouncer]\nverbose = 3\n')
  const r = await parseIniText(`%include ${join(dir, 'x.ini')}\n`, '/nowhere/main.ini')
  assert.deepEqual(r.errors, [])
  assert.deepEqual(entries(r), [['pgbouncer', 'verbose', '3', 2]])
})

test('ini: an %include cycle is an error at the include line, not a hang', async (t) => {
  const dir = tempDir(t)
  fs.writeFileSync(join(dir, 'a.ini'), '[pgbouncer]\n%include b.ini\n')
  fs.writeFileSync(join(dir, 'b.ini'), 'verbose = 1\n%include a.ini\n')
  const r = await parseIniFile(join(dir, 'a.ini'))
  assert.equal(r.errors.length, 1)
  assert.match(r.errors[0], new RegExp(`^${join(dir, 'b.ini')}:2: %include cycle: .*a\\.ini -> .*b\\.ini -> .*a\\.ini$`))
  assert.deepEqual(entries(r), [['pgbouncer', 'verbose', '1', 1]])
})

test('ini: a file including itself is a cycle', async (t) => {
  const dir = tempDir(t)
  fs.writeFileSync(join(dir, 'self.ini'), '%include self.ini\n')
  const r = await parseIniFile(join(dir, 'self.ini'))
  assert.equal(r.errors.length, 1)
  assert.match(r.errors[0], /:1: %include cycle: /)
})

test('ini: the same file included twice side by side is not a cycle', async (t) => {
  const dir = tempDir(t)
  fs.writeFileSync(join(dir, 'common.ini'), 'verbose = 1\n')
  const r = await parseIniText('[pgbouncer]\n%include common.ini\n%include common.ini\n', join(dir, 'main.ini'))
  assert.deepEqual(r.errors, [])
  assert.equal(r.entries.length, 2)
})

test(`ini: includes nest at most ${MAX_INCLUDE_DEPTH} deep`, async (t) => {
  const dir = tempDir(t)
  const depth = MAX_INCLUDE_DEPTH + 2
  for (let i = 0; i < depth; i++) fs.writeFileSync(join(dir, `f${i}.ini`), `%include f${i + 1}.ini\n`)
  fs.writeFileSync(join(dir, `f${depth}.ini`), '[pgbouncer]\n')
  const r = await parseIniFile(join(dir, 'f0.ini'))
  assert.equal(r.errors.length, 1)
  assert.equal(r.errors[0], `${join(dir, `f${MAX_INCLUDE_DEPTH}.ini`)}:1: %include nested deeper than ${MAX_INCLUDE_DEPTH} files`)
})

test('ini: a missing include file is an error at the include line', async (t) => {
  const dir = tempDir(t)
  const r = await parseIniText('[pgbouncer]\n%include nope.ini\n', join(dir, 'main.ini'))
  assert.deepEqual(r.errors, [`${join(dir, 'main.ini')}:2: cannot read %include file ${join(dir, 'nope.ini')}: no such file`])
})

test('ini: a missing main file is an error, not an exception', async (t) => {
  const dir = tempDir(t)
  const r = await parseIniFile(join(dir, 'absent.ini'))
  assert.deepEqual(r.errors, [`${join(dir, 'absent.ini')}: cannot read config file: no such file`])
  assert.deepEqual(r.files, [])
})

test('ini: never throws, whatever the text', async () => {
  const refuse = () => Promise.reject(Object.assign(new Error('no'), { code: 'ENOENT' }))
  const line = fc.oneof(
    fc.string(),
    fc.constantFrom('[pgbouncer]', '[', ']', '=', '"', "'", '%include x', '%include', '; c', '# c', '""=', "''=''"),
  )
  await fc.assert(fc.asyncProperty(fc.array(line, { maxLength: 12 }), async (lines) => {
    const r = await parseIniText(lines.join('\n'), FILE, refuse)
    assert.ok(Array.isArray(r.errors))
    for (const e of r.errors) assert.ok(e.startsWith(`${FILE}:`), e)
  }), { numRuns: 300 })
})
