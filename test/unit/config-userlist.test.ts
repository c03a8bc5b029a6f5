// userlist.txt as PgBouncer reads it: "user" "secret" per line, "" for a quote inside a field,
// ; comments, trailing fields ignored, errors with file:line that never echo a secret.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseUserlist } from '../../src/config/userlist.ts'

const FILE = '/etc/tidepool/userlist.txt'

const okCases: Array<{ name: string; text: string; want: Array<[string, string]> }> = [
  { name: 'plain, md5 and SCRAM secrets', text: '"alice" "secret"\n"bob" "md545f2603610af569b6155c45067268c6b"\n"carol" "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"\n',
    want: [['alice', 'secret'], ['bob', 'md545f2603610af569b6155c45067268c6b'], ['carol', 'SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy']] },
  { name: 'doubled quotes inside fields', text: '"o""brien" "pa""ss"', want: [['o"brien', 'pa"ss']] },
  { name: 'blanks inside quotes kept', text: '"a b" " p w "', want: [['a b', ' p w ']] },
  { name: 'empty password allowed', text: '"nopass" ""', want: [['nopass', '']] },
  { name: 'fields after the second are ignored', text: '"alice" "secret" "extra" whatever', want: [['alice', 'secret']] },
  { name: '; comments, blank lines and indentation', text: '; users\n\n   "alice" "x"\n  ; "bob" "y"\n', want: [['alice', 'x']] },
  { name: 'tab between fields and CRLF', text: '"alice"\t"x"\r\n"bob"  "y"\r\n', want: [['alice', 'x'], ['bob', 'y']] },
  { name: 'later line for a user wins', text: '"alice" "old"\n"alice" "new"\n', want: [['alice', 'new']] },
  { name: 'empty file', text: '', want: [] },
]

for (const c of okCases) {
  test(`userlist: ${c.name}`, () => {
    const r = parseUserlist(c.text, FILE)
    assert.deepEqual(r.errors, [])
    assert.deepEqual([...r.users.values()].map((u) => [u.name, u.password]), c.want)
    for (const [name, u] of r.users) assert.equal(u.name, name)
  })
}

const badCases: Array<{ name: string; text: string; line: number; message: RegExp }> = [
  { name: 'unquoted user', text: 'alice "x"', line: 1, message: /user name in double quotes/ },
  { name: 'unquoted password', text: '"alice" hunter2', line: 1, message: /password in double quotes after user "alice"/ },
  { name: 'missing password', text: '"ok" "1"\n"alice"', line: 2, message: /password in double quotes/ },
  { name: 'unterminated user', text: '"alice "x"', line: 1, message: /password in double quotes/ },
  { name: 'unterminated password', text: '"alice" "hunter2', line: 1, message: /password in double quotes/ },
  { name: 'empty user name', text: '"" "x"', line: 1, message: /empty user name/ },
  { name: '# is not a comment here', text: '# "alice" "x"', line: 1, message: /user name in double quotes/ },
]

for (const c of badCases) {
  test(`userlist: error for ${c.name}`, () => {
    const r = parseUserlist(c.text, FILE)
    assert.equal(r.errors.length, 1)
    assert.ok(r.errors[0].startsWith(`${FILE}:${c.line}: `), r.errors[0])
    assert.match(r.errors[0], c.message)
    assert.doesNotMatch(r.errors[0], /hunter2/, 'a secret must never appear in a message')
  })
}

test('userlist: good lines around a bad one still load', () => {
  const r = parseUserlist('"alice" "a"\nbroken\n"bob" "b"\n', FILE)
  assert.equal(r.errors.length, 1)
  assert.deepEqual([...r.users.keys()], ['alice', 'bob'])
})
