// auth_hba_file: pg_hba.conf syntax as tidepool supports it, and first-match selection of a rule
// for a login (no match means refuse).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { matchHba, parseHba, type HbaConnection, type HbaFile } from '../../src/auth/hba.ts'

const FILE = '/etc/tidepool/pg_hba.conf'

/** A readInclude over an in-memory set of files; records every path asked for. */
function fakeReader(files: Record<string, string> = {}): { read: (path: string) => string | null; asked: string[] } {
  const asked: string[] = []
  return { asked, read: (path) => { asked.push(path); return Object.hasOwn(files, path) ? files[path] : null } }
}

function mustParse(text: string, files: Record<string, string> = {}): { hba: HbaFile; warnings: string[] } {
  const r = parseHba(text, FILE, fakeReader(files).read)
  if (!r.ok) assert.fail(`expected ${JSON.stringify(text)} to parse, got: ${r.errors.join('; ')}`)
  return r
}

const tcp = (address: string, more: Partial<HbaConnection> = {}): HbaConnection =>
  ({ type: 'host', isTls: false, database: 'app', user: 'alice', address, ...more })
const unix = (more: Partial<HbaConnection> = {}): HbaConnection =>
  ({ type: 'local', isTls: false, database: 'app', user: 'alice', address: '', ...more })

// `want` is the line number of the rule that must be chosen, or null for refused.
const matchCases: Array<{ name: string; hba: string; conn: HbaConnection; want: number | null }> = [
  // rule order
  { name: 'first match wins over a later broader rule', hba: 'host app alice 10.0.0.0/8 reject\nhost all all 0.0.0.0/0 trust', conn: tcp('10.1.2.3'), want: 1 },
  { name: 'skips non-matching lines to a later one', hba: 'host other alice 10.0.0.0/8 reject\nhost app bob 10.0.0.0/8 reject\nhost app alice 10.0.0.0/8 md5', conn: tcp('10.1.2.3'), want: 3 },
  { name: 'no fall-through past a reject', hba: 'host all all all reject\nhost all all all trust', conn: tcp('10.1.2.3'), want: 1 },
  { name: 'no matching line refuses', hba: 'host app bob 10.0.0.0/8 trust', conn: tcp('10.1.2.3'), want: null },
  { name: 'empty file refuses', hba: '# nothing\n\n', conn: tcp('10.1.2.3'), want: null },
  // database keywords and names
  { name: 'database all', hba: 'host all alice all md5', conn: tcp('1.2.3.4', { database: 'whatever' }), want: 1 },
  { name: 'database sameuser matches db named as the user', hba: 'host sameuser all all md5', conn: tcp('1.2.3.4', { database: 'alice' }), want: 1 },
  { name: 'database sameuser rejects other db', hba: 'host sameuser all all md5', conn: tcp('1.2.3.4', { database: 'app' }), want: null },
  { name: 'database replication matches nothing', hba: 'host replication all all md5', conn: tcp('1.2.3.4', { database: 'replication' }), want: null },
  { name: 'quoted "replication" is a database name', hba: 'host "replication" all all md5', conn: tcp('1.2.3.4', { database: 'replication' }), want: 1 },
  { name: 'database list', hba: 'host a,app,b all all md5', conn: tcp('1.2.3.4'), want: 1 },
  { name: 'database list with blanks after commas', hba: 'host a,  app all all md5', conn: tcp('1.2.3.4'), want: 1 },
  { name: 'database list without the db', hba: 'host a,b all all md5', conn: tcp('1.2.3.4'), want: null },
  { name: 'database names are case-sensitive', hba: 'host App all all md5', conn: tcp('1.2.3.4'), want: null },
  { name: 'ALL in capitals is a name, not the keyword', hba: 'host ALL all all md5', conn: tcp('1.2.3.4'), want: null },
  // user keywords and names
  { name: 'user all', hba: 'host app all all md5', conn: tcp('1.2.3.4', { user: 'zed' }), want: 1 },
  { name: 'user list', hba: 'host app bob,alice all md5', conn: tcp('1.2.3.4'), want: 1 },
  { name: 'user not in list', hba: 'host app bob,carol all md5', conn: tcp('1.2.3.4'), want: null },
  // quoting
  { name: 'quoted "all" user is a literal name, not everyone', hba: 'host app "all" all md5', conn: tcp('1.2.3.4'), want: null },
  { name: 'quoted "all" user matches a user named all', hba: 'host app "all" all md5', conn: tcp('1.2.3.4', { user: 'all' }), want: 1 },
  { name: 'quoted "all" database matches only db named all', hba: 'host "all" all all md5', conn: tcp('1.2.3.4'), want: null },
  { name: 'quoted "sameuser" is a name', hba: 'host "sameuser" all all md5', conn: tcp('1.2.3.4', { database: 'alice' }), want: null },
  { name: 'quoted name with blanks and a comma', hba: 'host "my db, prod" all all md5', conn: tcp('1.2.3.4', { database: 'my db, prod' }), want: 1 },
  { name: 'quoted name with #', hba: 'host "a#b" all all md5 # trailing comment', conn: tcp('1.2.3.4', { database: 'a#b' }), want: 1 },
  { name: 'quote in the middle of a token', hba: 'host ap"p" all all md5', conn: tcp('1.2.3.4'), want: 1 },
  { name: 'quoted "+admins" is a user name', hba: 'host app "+admins" all md5', conn: tcp('1.2.3.4', { user: '+admins' }), want: 1 },
  { name: 'quoted "@list" is a database name', hba: 'host "@list" all all md5', conn: tcp('1.2.3.4', { database: '@list' }), want: 1 },
  // connection types
  { name: 'host matches non-TLS', hba: 'host all all all md5', conn: tcp('1.2.3.4'), want: 1 },
  { name: 'host matches TLS', hba: 'host all all all md5', conn: tcp('1.2.3.4', { isTls: true }), want: 1 },
  { name: 'hostssl skips non-TLS', hba: 'hostssl all all all md5', conn: tcp('1.2.3.4'), want: null },
  { name: 'hostssl matches TLS', hba: 'hostssl all all all md5', conn: tcp('1.2.3.4', { isTls: true }), want: 1 },
  { name: 'hostnossl skips TLS', hba: 'hostnossl all all all md5', conn: tcp('1.2.3.4', { isTls: true }), want: null },
  { name: 'hostnossl matches non-TLS', hba: 'hostnossl all all all md5', conn: tcp('1.2.3.4'), want: 1 },
  { name: 'TLS and plain clients get different lines', hba: 'hostnossl all all all reject\nhostssl all all all scram-sha-256', conn: tcp('1.2.3.4', { isTls: true }), want: 2 },
  { name: 'local matches a unix-socket login', hba: 'host all all all md5\nlocal all all trust', conn: unix(), want: 2 },
  { name: 'local does not match TCP', hba: 'local all all trust', conn: tcp('127.0.0.1'), want: null },
  { name: 'host does not match unix socket', hba: 'host all all all trust', conn: unix(), want: null },
  { name: 'local with database and user lists', hba: 'local other alice trust\nlocal app bob,alice md5', conn: unix(), want: 2 },
  // CIDR
  { name: '/0 matches every IPv4', hba: 'host all all 0.0.0.0/0 md5', conn: tcp('203.0.113.9'), want: 1 },
  { name: '/0 IPv4 does not match IPv6', hba: 'host all all 0.0.0.0/0 md5', conn: tcp('2001:db8::1'), want: null },
  { name: '/32 matches the one address', hba: 'host all all 192.168.1.10/32 md5', conn: tcp('192.168.1.10'), want: 1 },
  { name: '/32 rejects the neighbour', hba: 'host all all 192.168.1.10/32 md5', conn: tcp('192.168.1.11'), want: null },
  { name: '/8 inside', hba: 'host all all 10.0.0.0/8 md5', conn: tcp('10.255.255.255'), want: 1 },
  { name: '/8 outside', hba: 'host all all 10.0.0.0/8 md5', conn: tcp('11.0.0.0'), want: null },
  { name: '/20 odd prefix inside', hba: 'host all all 172.16.0.0/20 md5', conn: tcp('172.16.15.1'), want: 1 },
  { name: '/20 odd prefix outside', hba: 'host all all 172.16.0.0/20 md5', conn: tcp('172.16.16.1'), want: null },
  { name: 'host bits in the rule are ignored', hba: 'host all all 10.1.2.3/8 md5', conn: tcp('10.9.9.9'), want: 1 },
  { name: '::1/128 matches loopback', hba: 'host all all ::1/128 md5', conn: tcp('::1'), want: 1 },
  { name: '::1/128 matches uncompressed loopback', hba: 'host all all ::1/128 md5', conn: tcp('0:0:0:0:0:0:0:1'), want: 1 },
  { name: '::1/128 rejects ::2', hba: 'host all all ::1/128 md5', conn: tcp('::2'), want: null },
  { name: '::/0 matches every IPv6', hba: 'host all all ::/0 md5', conn: tcp('2001:db8:ffff::1'), want: 1 },
  { name: '::/0 does not match IPv4', hba: 'host all all ::/0 md5', conn: tcp('10.0.0.1'), want: null },
  { name: 'IPv6 compression in the rule', hba: 'host all all 2001:db8::/32 md5', conn: tcp('2001:0db8:0000:0000:0000:0000:0000:0001'), want: 1 },
  { name: 'IPv6 compression in the client, uppercase hex', hba: 'host all all 2001:db8:0:0:1::/80 md5', conn: tcp('2001:DB8::1:0:0:5'), want: 1 },
  { name: 'IPv6 /64 outside', hba: 'host all all fd00:1:2:3::/64 md5', conn: tcp('fd00:1:2:4::1'), want: null },
  { name: 'IPv6 /127 odd prefix', hba: 'host all all fe80::10/127 md5', conn: tcp('fe80::11'), want: 1 },
  { name: 'IPv6 client with a zone id', hba: 'host all all fe80::/10 md5', conn: tcp('fe80::1%eth0'), want: 1 },
  { name: 'mapped IPv4 client matches an IPv4 rule', hba: 'host all all 127.0.0.1/32 md5', conn: tcp('::ffff:127.0.0.1'), want: 1 },
  { name: 'mapped IPv4 client in hex form', hba: 'host all all 127.0.0.0/8 md5', conn: tcp('::ffff:7f00:1'), want: 1 },
  { name: 'mapped IPv4 client outside an IPv4 rule', hba: 'host all all 10.0.0.0/8 md5', conn: tcp('::ffff:127.0.0.1'), want: null },
  { name: 'mapped IPv4 client does not match ::/0', hba: 'host all all ::/0 md5', conn: tcp('::ffff:10.0.0.1'), want: null },
  { name: 'rule written as mapped IPv6 matches IPv4 client', hba: 'host all all ::ffff:10.0.0.0/104 md5', conn: tcp('10.20.30.40'), want: 1 },
  { name: 'rule written as mapped IPv6 matches mapped client', hba: 'host all all ::ffff:10.0.0.0/104 md5', conn: tcp('::ffff:10.20.30.40'), want: 1 },
  { name: 'address all matches IPv4', hba: 'host all all all md5', conn: tcp('8.8.8.8'), want: 1 },
  { name: 'address all matches IPv6', hba: 'host all all all md5', conn: tcp('2001:db8::8'), want: 1 },
  { name: 'unparseable client address matches only all', hba: 'host all all 0.0.0.0/0 reject\nhost all all ::/0 reject\nhost all all all md5', conn: tcp('not-an-ip'), want: 3 },
  // netmask field
  { name: 'netmask field inside', hba: 'host all all 192.168.0.0 255.255.0.0 md5', conn: tcp('192.168.7.7'), want: 1 },
  { name: 'netmask field outside', hba: 'host all all 192.168.0.0 255.255.0.0 md5', conn: tcp('192.169.0.1'), want: null },
  { name: 'netmask 0.0.0.0 matches all IPv4', hba: 'host all all 0.0.0.0 0.0.0.0 md5', conn: tcp('1.1.1.1'), want: 1 },
  { name: 'netmask 255.255.255.255', hba: 'host all all 10.0.0.5 255.255.255.255 md5', conn: tcp('10.0.0.5'), want: 1 },
  { name: 'odd netmask 255.255.240.0', hba: 'host all all 172.16.0.0 255.255.240.0 md5', conn: tcp('172.16.16.1'), want: null },
  { name: 'IPv6 netmask field', hba: 'host all all fd00:: ffff:ffff:: md5', conn: tcp('fd00:0:1::1'), want: 1 },
  // layout
  { name: 'tabs between fields, CRLF endings', hba: 'host\tapp\talice\t10.0.0.0/8\tmd5\r\n', conn: tcp('10.0.0.1'), want: 1 },
  { name: 'indented line and trailing comment', hba: '   # comment\n\n  host app alice all md5   # why\n', conn: tcp('10.0.0.1'), want: 3 },
  { name: 'backslash continues a line', hba: 'host app \\\n  alice all md5\nhost all all all reject', conn: tcp('10.0.0.1'), want: 1 },
]

for (const c of matchCases) {
  test(`hba match: ${c.name}`, () => {
    const { hba } = mustParse(c.hba)
    const rule = matchHba(hba, c.conn)
    assert.equal(rule === null ? null : rule.line, c.want)
  })
}

test('hba parse: rule fields as parsed, frozen', () => {
  const { hba, warnings } = mustParse([
    '# TYPE  DATABASE  USER   ADDRESS         METHOD',
    'local   all       all                    trust',
    'hostssl app,"all" alice  10.0.0.0/8      cert  clientcert=verify-full map=certmap',
    'host    sameuser  "all"  192.168.0.0 255.255.0.0  scram-sha-256',
    'host    all       all    ::1/128         password',
    'host    all       all    all             reject',
  ].join('\n'))
  assert.deepEqual(warnings, [])
  assert.equal(hba.rules.length, 5)
  const [local, ssl, mask, v6, any] = hba.rules
  assert.deepEqual({ ...local, databases: [...local.databases], users: [...local.users], options: { ...local.options } },
    { type: 'local', databases: ['all'], users: ['all'], address: null, method: 'trust', options: {}, file: FILE, line: 2 })
  assert.equal(ssl.type, 'hostssl')
  assert.deepEqual(ssl.databases, ['app', '"all"'])
  assert.deepEqual(ssl.users, ['alice'])
  assert.deepEqual(ssl.address, { kind: 'net', family: 4, bytes: [10, 0, 0, 0], prefixBits: 8, text: '10.0.0.0/8' })
  assert.equal(ssl.method, 'cert')
  assert.deepEqual({ ...ssl.options }, { clientcert: 'verify-full', map: 'certmap' })
  assert.equal(ssl.line, 3)
  assert.deepEqual(mask.databases, ['sameuser'])
  assert.deepEqual(mask.users, ['"all"'])
  assert.deepEqual(mask.address, { kind: 'net', family: 4, bytes: [192, 168, 0, 0], prefixBits: 16, text: '192.168.0.0 255.255.0.0' })
  assert.equal(mask.method, 'scram-sha-256')
  assert.deepEqual(v6.address, { kind: 'net', family: 6, bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], prefixBits: 128, text: '::1/128' })
  assert.equal(v6.method, 'password')
  assert.deepEqual(any.address, { kind: 'all', text: 'all' })
  assert.equal(any.method, 'reject')
  assert.ok(Object.isFrozen(hba) && Object.isFrozen(hba.rules) && Object.isFrozen(ssl) && Object.isFrozen(ssl.databases) && Object.isFrozen(ssl.options) && Object.isFrozen(ssl.address))
})

test('hba parse: a mapped-IPv6 rule is stored as the IPv4 network', () => {
  const { hba } = mustParse('host all all ::ffff:192.0.2.0/120 md5')
  assert.deepEqual(hba.rules[0].address, { kind: 'net', family: 4, bytes: [192, 0, 2, 0], prefixBits: 24, text: '::ffff:192.0.2.0/120' })
})

const warningCases: Array<{ name: string; hba: string; files?: Record<string, string>; want: RegExp[] }> = [
  { name: 'replication warns once, at its first line', hba: 'host replication all all md5\nhost replication,app all all md5', want: [/^\/etc\/tidepool\/pg_hba\.conf:1: .*"replication".*matches no connection/] },
  { name: 'quoted "replication" does not warn', hba: 'host "replication" all all md5', want: [] },
  { name: 'host bits past the prefix', hba: 'host all all 10.1.2.3/8 md5', want: [/pg_hba\.conf:1: address "10\.1\.2\.3\/8" has bits set past its \/8 prefix/] },
  { name: 'host bits past a netmask', hba: 'host all all 10.1.0.0 255.0.0.0 md5', want: [/pg_hba\.conf:1: address "10\.1\.0\.0 255\.0\.0\.0" has bits set past its \/8 prefix/] },
  { name: 'empty @file', hba: 'host @empty all all md5', files: { '/etc/tidepool/empty': '# none yet\n' }, want: [/pg_hba\.conf:1: @file \/etc\/tidepool\/empty lists no names/] },
]

for (const c of warningCases) {
  test(`hba warning: ${c.name}`, () => {
    const { warnings } = mustParse(c.hba, c.files)
    assert.equal(warnings.length, c.want.length, warnings.join('\n'))
    c.want.forEach((re, i) => assert.match(warnings[i], re))
  })
}

test('hba @file: relative paths resolve against the hba file directory, nested ones against theirs', () => {
  const files = {
    '/etc/tidepool/dbs.txt': '# databases\napp, reports\n"all"\n@sub/more.txt\n',
    '/etc/tidepool/sub/more.txt': 'archive',
    '/srv/users.txt': 'alice bob\n',
  }
  const reader = fakeReader(files)
  const r = parseHba('host @dbs.txt @/srv/users.txt all md5\n', FILE, reader.read)
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'))
  assert.deepEqual(reader.asked, ['/etc/tidepool/dbs.txt', '/etc/tidepool/sub/more.txt', '/srv/users.txt'])
  const rule = r.hba.rules[0]
  assert.deepEqual(rule.databases, ['app', 'reports', '"all"', 'archive'])
  assert.deepEqual(rule.users, ['alice', 'bob'])
  assert.equal(matchHba(r.hba, tcp('1.2.3.4', { database: 'archive', user: 'bob' }))?.line, 1)
  assert.equal(matchHba(r.hba, tcp('1.2.3.4', { database: 'other', user: 'bob' })), null)
  assert.equal(matchHba(r.hba, tcp('1.2.3.4', { database: 'app', user: 'carol' })), null)
})

test('hba @file: an unquoted all inside the file is the keyword', () => {
  const { hba } = mustParse('host app @users all md5', { '/etc/tidepool/users': 'all' })
  assert.deepEqual(hba.rules[0].users, ['all'])
  assert.equal(matchHba(hba, tcp('1.2.3.4', { user: 'anyone' }))?.line, 1)
})

test('hba @file: mixed with names in one list', () => {
  const { hba } = mustParse('host app bob,@users,carol all md5', { '/etc/tidepool/users': 'alice' })
  assert.deepEqual(hba.rules[0].users, ['bob', 'alice', 'carol'])
})

// `at` is the file:line the first error must name.
const errorCases: Array<{ name: string; hba: string; files?: Record<string, string>; at: string; message: RegExp }> = [
  // lexical
  { name: 'unterminated quote', hba: 'host "app all all md5', at: 'pg_hba.conf:1', message: /unterminated double quote/ },
  { name: 'trailing comma', hba: 'host app, \nhost all all all md5', at: 'pg_hba.conf:1', message: /ends with a comma/ },
  { name: 'empty list element', hba: 'host a,,b all all md5', at: 'pg_hba.conf:1', message: /empty element/ },
  { name: 'empty quoted name', hba: 'host "" all all md5', at: 'pg_hba.conf:1', message: /empty database name/ },
  // connection type
  { name: 'unknown type', hba: 'hots all all all md5', at: 'pg_hba.conf:1', message: /unknown connection type "hots"/ },
  { name: 'hostgssenc', hba: 'hostgssenc all all all md5', at: 'pg_hba.conf:1', message: /"hostgssenc" is not supported.*GSSAPI/ },
  { name: 'include directive', hba: 'include other.conf', at: 'pg_hba.conf:1', message: /"include" is not supported/ },
  { name: 'type as a list', hba: 'host,local all all all md5', at: 'pg_hba.conf:1', message: /connection type must be a single word/ },
  // missing fields
  { name: 'only a type', hba: 'host', at: 'pg_hba.conf:1', message: /missing the database field/ },
  { name: 'no user', hba: 'local all', at: 'pg_hba.conf:1', message: /missing the user field/ },
  { name: 'host without address', hba: 'host all all', at: 'pg_hba.conf:1', message: /missing the address field/ },
  { name: 'host without method', hba: 'host all all 10.0.0.0/8', at: 'pg_hba.conf:1', message: /missing the authentication method/ },
  { name: 'local without method', hba: 'local all all', at: 'pg_hba.conf:1', message: /missing the authentication method/ },
  { name: 'local given an address', hba: 'local all all 10.0.0.0/8 md5', at: 'pg_hba.conf:1', message: /unknown authentication method "10\.0\.0\.0\/8"/ },
  // keywords
  { name: '+group user', hba: 'host all +admins all md5', at: 'pg_hba.conf:1', message: /group membership "\+admins" is not supported/ },
  { name: '+group in a user list', hba: 'host all alice,+admins all md5', at: 'pg_hba.conf:1', message: /"\+admins" is not supported/ },
  { name: 'samerole database', hba: 'host samerole all all md5', at: 'pg_hba.conf:1', message: /"samerole" is not supported/ },
  { name: 'samegroup database', hba: 'host samegroup all all md5', at: 'pg_hba.conf:1', message: /"samegroup" is not supported/ },
  { name: 'bare @', hba: 'host @ all all md5', at: 'pg_hba.conf:1', message: /"@" must be followed by a file name/ },
  // @file
  { name: 'unreadable @file', hba: 'host all @missing all md5', at: 'pg_hba.conf:1', message: /could not read @file \/etc\/tidepool\/missing/ },
  { name: '+group inside an @file names that file', hba: 'host all @users all md5', files: { '/etc/tidepool/users': 'alice\n+admins\n' }, at: '/etc/tidepool/users:2', message: /"\+admins" is not supported/ },
  { name: 'bad quote inside an @file', hba: 'host @dbs all all md5', files: { '/etc/tidepool/dbs': 'app\n"oops\n' }, at: '/etc/tidepool/dbs:2', message: /unterminated double quote/ },
  { name: '@file cycle', hba: 'host @a all all md5', files: { '/etc/tidepool/a': '@b', '/etc/tidepool/b': '@a' }, at: '/etc/tidepool/', message: /nest deeper than 10 levels/ },
  // address
  { name: 'samehost', hba: 'host all all samehost md5', at: 'pg_hba.conf:1', message: /"samehost" is not supported/ },
  { name: 'samenet', hba: 'host all all samenet md5', at: 'pg_hba.conf:1', message: /"samenet" is not supported/ },
  { name: 'host name', hba: 'host all all db.example.com md5', at: 'pg_hba.conf:1', message: /host name "db\.example\.com" is not supported.*DNS/ },
  { name: 'domain suffix', hba: 'host all all .example.com md5', at: 'pg_hba.conf:1', message: /host name "\.example\.com" is not supported/ },
  { name: 'quoted "all" address is a host name', hba: 'host all all "all" md5', at: 'pg_hba.conf:1', message: /host name "all" is not supported/ },
  { name: 'address list', hba: 'host all all 10.0.0.0/8,10.1.0.0/16 md5', at: 'pg_hba.conf:1', message: /single address, not a list/ },
  { name: 'IPv4 prefix too long', hba: 'host all all 10.0.0.0/33 md5', at: 'pg_hba.conf:1', message: /invalid prefix length "\/33".*0 to 32/ },
  { name: 'IPv6 prefix too long', hba: 'host all all ::1/129 md5', at: 'pg_hba.conf:1', message: /invalid prefix length "\/129".*0 to 128/ },
  { name: 'empty prefix', hba: 'host all all 10.0.0.0/ md5', at: 'pg_hba.conf:1', message: /invalid prefix length/ },
  { name: 'negative prefix', hba: 'host all all 10.0.0.0/-1 md5', at: 'pg_hba.conf:1', message: /invalid prefix length/ },
  { name: 'bad IPv4 in CIDR', hba: 'host all all 10.0.0.256/32 md5', at: 'pg_hba.conf:1', message: /invalid IP address "10\.0\.0\.256"/ },
  { name: 'host name in CIDR', hba: 'host all all db/32 md5', at: 'pg_hba.conf:1', message: /invalid IP address "db"/ },
  { name: 'short IPv4', hba: 'host all all 10.1 255.0.0.0 md5', at: 'pg_hba.conf:1', message: /invalid IPv4 address "10\.1"/ },
  { name: 'IPv4 with leading zero', hba: 'host all all 10.0.0.010/32 md5', at: 'pg_hba.conf:1', message: /invalid IP address/ },
  { name: 'two :: in IPv6', hba: 'host all all 1::2::3/128 md5', at: 'pg_hba.conf:1', message: /invalid IP address "1::2::3"/ },
  { name: 'IPv6 with nine groups', hba: 'host all all 1:2:3:4:5:6:7:8:9 ffff:: md5', at: 'pg_hba.conf:1', message: /invalid IPv6 address/ },
  { name: 'IPv6 too many groups with ::', hba: 'host all all 1:2:3:4:5:6:7::8/128 md5', at: 'pg_hba.conf:1', message: /invalid IP address/ },
  { name: 'IPv6 group too long', hba: 'host all all 12345::/16 md5', at: 'pg_hba.conf:1', message: /invalid IP address/ },
  { name: 'address without mask', hba: 'host all all 10.0.0.1', at: 'pg_hba.conf:1', message: /needs a \/prefix or a netmask field/ },
  { name: 'address followed by a method, no mask', hba: 'host all all 10.0.0.1 md5', at: 'pg_hba.conf:1', message: /needs a \/prefix or a netmask after it, got "md5"/ },
  { name: 'netmask family differs', hba: 'host all all 10.0.0.0 ffff:: md5', at: 'pg_hba.conf:1', message: /netmask "ffff::" is IPv6 but address "10\.0\.0\.0" is IPv4/ },
  { name: 'non-contiguous netmask', hba: 'host all all 10.0.0.0 255.0.255.0 md5', at: 'pg_hba.conf:1', message: /not contiguous/ },
  { name: 'netmask then nothing', hba: 'host all all 10.0.0.0 255.0.0.0', at: 'pg_hba.conf:1', message: /missing the authentication method/ },
  // methods
  { name: 'peer', hba: 'local all all peer', at: 'pg_hba.conf:1', message: /method "peer" is not supported by tidepool/ },
  { name: 'ident', hba: 'host all all all ident', at: 'pg_hba.conf:1', message: /method "ident" is not supported/ },
  { name: 'ldap', hba: 'host all all all ldap ldapserver=x', at: 'pg_hba.conf:1', message: /method "ldap" is not supported/ },
  { name: 'gss', hba: 'host all all all gss', at: 'pg_hba.conf:1', message: /method "gss" is not supported/ },
  { name: 'typo method', hba: 'host all all all md6', at: 'pg_hba.conf:1', message: /unknown authentication method "md6"/ },
  { name: 'method as a list', hba: 'host all all all md5,trust', at: 'pg_hba.conf:1', message: /method must be a single word/ },
  { name: 'cert on host', hba: 'host all all all cert', at: 'pg_hba.conf:1', message: /cert .* only allowed on hostssl/ },
  { name: 'cert on local', hba: 'local all all cert', at: 'pg_hba.conf:1', message: /only allowed on hostssl/ },
  // options
  { name: 'option without =', hba: 'hostssl all all all md5 clientcert', at: 'pg_hba.conf:1', message: /expected an option as name=value/ },
  { name: 'option with empty name', hba: 'hostssl all all all md5 =x', at: 'pg_hba.conf:1', message: /expected an option as name=value/ },
  { name: 'unknown option', hba: 'host all all all md5 foo=bar', at: 'pg_hba.conf:1', message: /unknown option "foo"/ },
  { name: 'duplicate option', hba: 'hostssl all all all md5 clientcert=verify-ca clientcert=verify-full', at: 'pg_hba.conf:1', message: /"clientcert" is given twice/ },
  { name: 'clientcert on host', hba: 'host all all all md5 clientcert=verify-ca', at: 'pg_hba.conf:1', message: /clientcert is only allowed on hostssl/ },
  { name: 'clientcert bad value', hba: 'hostssl all all all md5 clientcert=1', at: 'pg_hba.conf:1', message: /verify-ca or verify-full, got "1"/ },
  { name: 'clientcert verify-ca with cert', hba: 'hostssl all all all cert clientcert=verify-ca', at: 'pg_hba.conf:1', message: /verify-full with the cert method/ },
  { name: 'map with md5', hba: 'host all all all md5 map=m', at: 'pg_hba.conf:1', message: /map is only allowed with the cert method/ },
  { name: 'option list', hba: 'hostssl all all all cert map=a,b', at: 'pg_hba.conf:1', message: /one name=value/ },
]

for (const c of errorCases) {
  test(`hba error: ${c.name}`, () => {
    const r = parseHba(c.hba, FILE, fakeReader(c.files).read)
    assert.equal(r.ok, false)
    if (r.ok) return
    assert.equal(r.errors.length, 1, r.errors.join('\n'))
    const at = c.at.startsWith('/') ? c.at : `/etc/tidepool/${c.at}`
    assert.ok(r.errors[0].startsWith(at), `${r.errors[0]} should start with ${at}`)
    assert.match(r.errors[0], c.message)
  })
}

test('hba error: one bad line rejects the whole file, and every bad line is reported', () => {
  const r = parseHba('host all all all trust\nhost all all all peer\nlocal all +g md5\nhost all all 10.0.0.0/8 md5\n', FILE, fakeReader().read)
  assert.equal(r.ok, false)
  if (r.ok) return
  assert.deepEqual(r.errors.map((e) => e.slice(0, e.indexOf(': '))), [`${FILE}:2`, `${FILE}:3`])
})

test('hba error: line numbers count comments, blanks and continued lines', () => {
  const r = parseHba('# a\n\nhost app \\\n alice all md5\nhost all all all bogus\n', FILE, fakeReader().read)
  assert.equal(r.ok, false)
  if (r.ok) return
  assert.deepEqual(r.errors, [`${FILE}:5: unknown authentication method "bogus"; expected trust, reject, md5, password, scram-sha-256 or cert`])
})
