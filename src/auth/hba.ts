// auth_hba_file for auth_type = hba: parses a pg_hba.conf-style file into frozen rules and picks,
// for one login, the first rule whose connection type, database, user and client address match.
// The syntax follows PostgreSQL's pg_hba.conf
// (https://www.postgresql.org/docs/current/auth-pg-hba-conf.html) cut down to what a pooler can
// honour, as PgBouncer's auth_hba_file is: no groups or roles, no host names, no samehost/samenet,
// no GSSAPI lines, and only the methods tidepool implements.
// Invariants: a file with any error yields no rules at all (ok: false), so a typo never opens or
// closes a door silently; every error and warning names file:line; rules keep file order and
// matchHba returns the first match, never a later one (no fall-through, as in PostgreSQL).
// Names in `databases` and `users`: a bare keyword (`all`, `sameuser`, `replication`) is the
// keyword; a literal name that spells a keyword is kept in double quotes (`"all"`), as
// pg_hba_file_rules shows it. pg_hba.conf has no escape for `"`, so a name never contains one
// and the two cannot be confused.
// The tokenizer (conf-tokens.ts) is shared with ident.ts: pg_ident.conf has the same lexical rules.
// Must not: read files itself (the caller's readInclude does), resolve names, throw, or log.

import { dirname, isAbsolute, resolve } from 'node:path'
import type { IdentFile } from './ident.ts'
import { tokenize, type Field, type Token } from './conf-tokens.ts'

export type HbaMethod = 'trust' | 'reject' | 'md5' | 'password' | 'scram-sha-256' | 'cert'

/** Which client addresses a host line covers: every address, or one network of one family. */
export type HbaAddress =
  | { readonly kind: 'all'; readonly text: string }
  /** `bytes` has 4 (IPv4) or 16 (IPv6) entries; the first `prefixBits` bits are compared.
   *  An IPv6 rule inside ::ffff:0:0/96 is stored as the IPv4 network it stands for. */
  | { readonly kind: 'net'; readonly family: 4 | 6; readonly bytes: readonly number[]; readonly prefixBits: number; readonly text: string }

export interface HbaRule {
  readonly type: 'local' | 'host' | 'hostssl' | 'hostnossl'
  readonly databases: readonly string[]
  readonly users: readonly string[]
  /** null on `local` lines, which have no address field. `text` is the field(s) as written. */
  readonly address: HbaAddress | null
  readonly method: HbaMethod
  readonly options: Readonly<Record<string, string>>
  readonly file: string
  readonly line: number
}

export interface HbaFile {
  readonly rules: readonly HbaRule[]
  /** auth_ident_file, for rules with map=; attached by the loader (hba-load.ts). */
  readonly ident?: IdentFile
}

export interface HbaConnection {
  type: 'local' | 'host'
  isTls: boolean
  database: string
  user: string
  /** IPv4 or IPv6 text (IPv4-mapped IPv6 like ::ffff:127.0.0.1 must match IPv4 rules); '' for local */
  address: string
}

// PostgreSQL stops nesting @file lists at depth 10 as well; it also ends an include cycle.
const MAX_INCLUDE_DEPTH = 10

const METHODS: ReadonlySet<string> = new Set<HbaMethod>(['trust', 'reject', 'md5', 'password', 'scram-sha-256', 'cert'])
// Methods PostgreSQL knows that tidepool does not implement: named so the error says "not
// supported" rather than "unknown" (a typo).
const FOREIGN_METHODS: ReadonlySet<string> = new Set(['peer', 'ident', 'ldap', 'gss', 'sspi', 'pam', 'radius', 'bsd', 'oauth', 'krb5', 'crypt'])
const DATABASE_KEYWORDS: ReadonlySet<string> = new Set(['all', 'sameuser', 'samerole', 'samegroup', 'replication'])
const USER_KEYWORDS: ReadonlySet<string> = new Set(['all'])

interface ParseState {
  readonly readInclude: (path: string) => string | null
  readonly warnings: string[]
  warnedReplication: boolean
}

/** Parses the text; `readInclude(path)` returns the contents of an @file (path resolved against the hba file's directory) or null when unreadable. Errors name file:line; a file with any error is rejected whole (ok: false). */
export function parseHba(text: string, file: string, readInclude: (path: string) => string | null): { ok: true; hba: HbaFile; warnings: string[] } | { ok: false; errors: string[] } {
  const errors: string[] = []
  const state: ParseState = { readInclude, warnings: [], warnedReplication: false }
  const rules: HbaRule[] = []
  for (const l of tokenize(text, file)) {
    if (typeof l === 'string') { errors.push(l); continue }
    const r = parseRule(l.fields, file, l.line, state)
    if (typeof r === 'string') errors.push(r)
    else rules.push(r)
  }
  if (errors.length > 0) return { ok: false, errors }
  return { ok: true, hba: Object.freeze({ rules: Object.freeze(rules) }), warnings: state.warnings }
}

/** First matching rule, or null (refuse). */
export function matchHba(hba: HbaFile, conn: HbaConnection): HbaRule | null {
  // Parsed once per login, not per rule; null (unparseable) matches only `all` addresses.
  const ip = conn.type === 'host' ? parseClientIp(conn.address) : null
  for (const rule of hba.rules) {
    if (!typeMatches(rule.type, conn)) continue
    if (!namesMatch(rule.databases, conn.database, conn.user, true)) continue
    if (!namesMatch(rule.users, conn.user, conn.user, false)) continue
    if (rule.address !== null && !addressMatches(rule.address, ip)) continue
    return rule
  }
  return null
}

function typeMatches(type: HbaRule['type'], conn: HbaConnection): boolean {
  if (conn.type === 'local') return type === 'local'
  return type === 'host' || (type === 'hostssl' ? conn.isTls : type === 'hostnossl' && !conn.isTls)
}

function namesMatch(entries: readonly string[], name: string, user: string, isDatabase: boolean): boolean {
  for (const e of entries) {
    if (e === 'all') return true
    if (isDatabase && e === 'sameuser') { if (name === user) return true; continue }
    if (isDatabase && e === 'replication') continue  // tidepool serves no replication connections
    const literal = e.charCodeAt(0) === 0x22 ? e.slice(1, -1) : e
    if (literal === name) return true
  }
  return false
}

function addressMatches(a: HbaAddress, ip: ParsedIp | null): boolean {
  if (a.kind === 'all') return true
  if (ip === null || ip.family !== a.family) return false
  let bits = a.prefixBits
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff
    if ((ip.bytes[i] & mask) !== (a.bytes[i] & mask)) return false
  }
  return true
}

// ---- rules ----

function parseRule(fields: Field[], file: string, line: number, state: ParseState): HbaRule | string {
  const where = `${file}:${line}`
  const fail = (msg: string): string => `${where}: ${msg}`
  const typeField = fields[0]
  if (typeField.length !== 1) return fail('the connection type must be a single word, not a list')
  const typeWord = typeField[0].text
  if (typeWord === 'include' || typeWord === 'include_if_exists' || typeWord === 'include_dir') {
    return fail(`"${typeWord}" is not supported in auth_hba_file; use @file lists in the database and user fields`)
  }
  if (typeWord === 'hostgssenc' || typeWord === 'hostnogssenc') {
    return fail(`connection type "${typeWord}" is not supported: tidepool has no GSSAPI encryption; use host, hostssl or hostnossl`)
  }
  if (typeWord !== 'local' && typeWord !== 'host' && typeWord !== 'hostssl' && typeWord !== 'hostnossl') {
    return fail(`unknown connection type "${typeWord}"; expected local, host, hostssl or hostnossl`)
  }
  const type: HbaRule['type'] = typeWord
  if (fields.length < 2) return fail('missing the database field')
  if (fields.length < 3) return fail('missing the user field')

  const databases = expandNames(fields[1], 'database', state)
  if (typeof databases === 'string') return databases
  const users = expandNames(fields[2], 'user', state)
  if (typeof users === 'string') return users
  if (databases.some((d) => d === 'replication') && !state.warnedReplication) {
    state.warnedReplication = true
    state.warnings.push(`${where}: the "replication" keyword matches no connection: tidepool does not pool replication connections`)
  }

  let next = 3
  let address: HbaAddress | null = null
  if (type !== 'local') {
    if (fields.length <= next) return fail('missing the address field')
    const r = parseAddress(fields, next, where, state)
    if (typeof r === 'string') return r
    address = r.address
    next = r.next
  }

  if (fields.length <= next) return fail('missing the authentication method')
  const methodField = fields[next++]
  if (methodField.length !== 1) return fail('the authentication method must be a single word, not a list')
  const methodWord = methodField[0].text
  if (!METHODS.has(methodWord)) {
    if (FOREIGN_METHODS.has(methodWord)) {
      return fail(`authentication method "${methodWord}" is not supported by tidepool; use trust, reject, md5, password, scram-sha-256 or cert`)
    }
    return fail(`unknown authentication method "${methodWord}"; expected trust, reject, md5, password, scram-sha-256 or cert`)
  }
  const method = methodWord as HbaMethod
  if (method === 'cert' && type !== 'hostssl') {
    return fail('cert authentication needs a TLS client certificate, so it is only allowed on hostssl lines')
  }

  const options: Record<string, string> = {}
  for (; next < fields.length; next++) {
    const f = fields[next]
    if (f.length !== 1) return fail('an option must be one name=value; put a value that contains commas in double quotes')
    const text = f[0].text
    const eq = text.indexOf('=')
    if (eq <= 0) return fail(`expected an option as name=value after the method, got "${text}"`)
    const name = text.slice(0, eq)
    const value = text.slice(eq + 1)
    if (Object.hasOwn(options, name)) return fail(`option "${name}" is given twice`)
    const bad = checkOption(name, value, type, method)
    if (bad !== null) return fail(bad)
    options[name] = value
  }

  return Object.freeze({
    type, databases: Object.freeze(databases), users: Object.freeze(users), address, method,
    options: Object.freeze(options), file, line,
  })
}

/** Options PostgreSQL accepts with the methods tidepool supports; null when fine. */
function checkOption(name: string, value: string, type: HbaRule['type'], method: HbaMethod): string | null {
  if (name === 'clientcert') {
    if (type !== 'hostssl') return 'clientcert is only allowed on hostssl lines'
    if (value !== 'verify-ca' && value !== 'verify-full') return `clientcert must be verify-ca or verify-full, got "${value}"`
    if (method === 'cert' && value !== 'verify-full') return 'clientcert must be verify-full with the cert method (cert always checks the name)'
    return null
  }
  // A user name map (auth_ident_file) for cert; kept for the caller, who must honour or refuse it.
  if (name === 'map') {
    if (method !== 'cert') return `option map is only allowed with the cert method, not ${method}`
    if (value === '') return 'option map needs a map name'
    return null
  }
  return `unknown option "${name}" for method ${method}; tidepool accepts clientcert (hostssl) and map (cert)`
}

/**
 * Expands @file lists and validates keywords of a database or user field. Returns the names in the
 * form HbaRule keeps them (see the header) or an error naming the file:line where it was found.
 */
function expandNames(field: Field, kind: 'database' | 'user', state: ParseState): string[] | string {
  const out: string[] = []
  const err = expandInto(field, kind, state, 0, out)
  return err ?? out
}

function expandInto(tokens: readonly Token[], kind: 'database' | 'user', state: ParseState, depth: number, out: string[]): string | null {
  const keywords = kind === 'database' ? DATABASE_KEYWORDS : USER_KEYWORDS
  for (const t of tokens) {
    const where = `${t.file}:${t.line}`
    if (t.quoted) {
      if (t.text === '') return `${where}: empty ${kind} name ""`
      out.push(keywords.has(t.text) ? `"${t.text}"` : t.text)
      continue
    }
    if (t.text.startsWith('@')) {
      const name = t.text.slice(1)
      if (name === '') return `${where}: "@" must be followed by a file name`
      if (depth >= MAX_INCLUDE_DEPTH) return `${where}: @${name}: @file lists nest deeper than ${MAX_INCLUDE_DEPTH} levels (a cycle?)`
      const path = isAbsolute(name) ? name : resolve(dirname(t.file), name)
      const contents = state.readInclude(path)
      if (contents === null) return `${where}: could not read @file ${path}`
      // In a list file, whitespace, commas and newlines all separate names.
      const inner: Token[] = []
      for (const l of tokenize(contents, path)) {
        if (typeof l === 'string') return l
        for (const f of l.fields) inner.push(...f)
      }
      if (inner.length === 0) state.warnings.push(`${where}: @file ${path} lists no names, so this ${kind} field matches nothing from it`)
      const e = expandInto(inner, kind, state, depth + 1, out)
      if (e !== null) return e
      continue
    }
    if (kind === 'user' && t.text.startsWith('+')) {
      return `${where}: group membership "${t.text}" is not supported: tidepool has no roles or groups; list the users, or put them in an @file`
    }
    if (kind === 'database' && (t.text === 'samerole' || t.text === 'samegroup')) {
      return `${where}: "${t.text}" is not supported: tidepool has no role membership; list the databases instead`
    }
    out.push(t.text)
  }
  return null
}

// ---- addresses ----

function parseAddress(fields: Field[], at: number, where: string, state: ParseState): { address: HbaAddress; next: number } | string {
  const fail = (msg: string): string => `${where}: ${msg}`
  const f = fields[at]
  if (f.length !== 1) return fail('the address field must be a single address, not a list')
  const { text, quoted } = f[0]
  if (!quoted && text === 'all') return { address: Object.freeze({ kind: 'all', text }), next: at + 1 }
  if (!quoted && (text === 'samehost' || text === 'samenet')) {
    return fail(`"${text}" is not supported: tidepool does not enumerate this machine's network interfaces; write the addresses as CIDR (e.g. 10.0.0.0/8)`)
  }

  const slash = text.indexOf('/')
  if (slash >= 0) {
    const ipText = text.slice(0, slash)
    const bitsText = text.slice(slash + 1)
    const ip = parseIp(ipText)
    if (ip === null) return fail(`invalid IP address "${ipText}" in "${text}"`)
    const maxBits = ip.family === 4 ? 32 : 128
    if (!/^[0-9]{1,3}$/.test(bitsText) || Number(bitsText) > maxBits) {
      return fail(`invalid prefix length "/${bitsText}" in "${text}": expected 0 to ${maxBits} for IPv${ip.family}`)
    }
    return { address: makeNet(ip, Number(bitsText), text, where, state), next: at + 1 }
  }

  const ip = parseIp(text)
  if (ip === null) {
    if (/^[0-9.]+$/.test(text)) return fail(`invalid IPv4 address "${text}"`)
    if (text.includes(':')) return fail(`invalid IPv6 address "${text}"`)
    return fail(`host name "${text}" is not supported: tidepool matches the client's IP address and does no DNS lookups at login; write an address with a /prefix such as 10.0.0.0/8`)
  }
  // An address without /prefix takes its mask from the next field.
  const maskField = fields[at + 1]
  if (maskField === undefined) return fail(`address "${text}" needs a /prefix or a netmask field after it`)
  if (maskField.length !== 1) return fail('the netmask field must be a single address, not a list')
  const maskText = maskField[0].text
  const mask = parseIp(maskText)
  if (mask === null) return fail(`address "${text}" needs a /prefix or a netmask after it, got "${maskText}"`)
  if (mask.family !== ip.family) return fail(`netmask "${maskText}" is IPv${mask.family} but address "${text}" is IPv${ip.family}`)
  const bits = prefixOfMask(mask.bytes)
  if (bits < 0) return fail(`netmask "${maskText}" is not contiguous (ones followed by zeros); write the network as CIDR`)
  return { address: makeNet(ip, bits, `${text} ${maskText}`, where, state), next: at + 2 }
}

function makeNet(ip: ParsedIp, prefixBits: number, text: string, where: string, state: ParseState): HbaAddress {
  const hostBits = ip.bytes.some((b, i) => (b & (0xff >> Math.max(0, Math.min(8, prefixBits - i * 8)))) !== 0)
  if (hostBits) state.warnings.push(`${where}: address "${text}" has bits set past its /${prefixBits} prefix; they are ignored`)
  let { family, bytes } = ip
  // ::ffff:a.b.c.d/96+ is an IPv4 network written in IPv6; clients arrive normalised to IPv4.
  if (family === 6 && prefixBits >= 96 && isMappedV4(bytes)) {
    family = 4
    bytes = bytes.slice(12)
    prefixBits -= 96
  }
  return Object.freeze({ kind: 'net', family, bytes: Object.freeze(bytes), prefixBits, text })
}

/** The prefix length of a netmask, or -1 when its ones are not contiguous from the left. */
function prefixOfMask(bytes: readonly number[]): number {
  let bits = 0
  let i = 0
  for (; i < bytes.length && bytes[i] === 0xff; i++) bits += 8
  if (i < bytes.length) {
    const b = bytes[i]
    let n = 0
    while (n < 8 && (b & (0x80 >> n)) !== 0) n++
    if (((0xff << (8 - n)) & 0xff) !== b) return -1
    bits += n
    for (i++; i < bytes.length; i++) if (bytes[i] !== 0) return -1
  }
  return bits
}

interface ParsedIp { readonly family: 4 | 6; readonly bytes: number[] }

function stripZone(address: string): string {
  const pct = address.indexOf('%')
  return pct >= 0 ? address.slice(0, pct) : address
}

/** A client's address as the socket gave it: a zone (%eth0) is dropped and an IPv4-mapped IPv6
 *  address (a dual-stack listener's view of an IPv4 client) becomes IPv4, so IPv4 rules match it. */
function parseClientIp(address: string): ParsedIp | null {
  const ip = parseIp(stripZone(address))
  if (ip !== null && ip.family === 6 && isMappedV4(ip.bytes)) return { family: 4, bytes: ip.bytes.slice(12) }
  return ip
}

/** IPv4 dotted quad or IPv6 text, as written (a mapped IPv6 address stays IPv6; see makeNet). */
function parseIp(text: string): ParsedIp | null {
  const v4 = parseIpv4(text)
  if (v4 !== null) return { family: 4, bytes: v4 }
  const v6 = parseIpv6(text)
  if (v6 === null) return null
  return { family: 6, bytes: v6 }
}

// Strict dotted quad: four decimal parts, no leading zeros (inet_aton would read 010 as octal 8).
function parseIpv4(text: string): number[] | null {
  const parts = text.split('.')
  if (parts.length !== 4) return null
  const out: number[] = []
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null
    const n = Number(p)
    if (n > 255) return null
    out.push(n)
  }
  return out
}

function parseIpv6(text: string): number[] | null {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return null
  const halves = text.split('::')
  if (halves.length > 2) return null
  const groupsOf = (s: string): number[] | null => {
    if (s === '') return []
    const out: number[] = []
    const parts = s.split(':')
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIpv4(p)
        if (v4 === null) return null
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3])
      } else {
        if (!/^[0-9A-Fa-f]{1,4}$/.test(p)) return null
        out.push(parseInt(p, 16))
      }
    }
    return out
  }
  const head = groupsOf(halves[0])
  if (head === null) return null
  let groups: number[]
  if (halves.length === 2) {
    // An embedded IPv4 tail is only allowed at the very end, so never in the head of a '::' split.
    if (halves[0].includes('.')) return null
    const tail = groupsOf(halves[1])
    if (tail === null || head.length + tail.length > 7) return null
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail]
  } else {
    if (head.length !== 8) return null
    groups = head
  }
  const bytes: number[] = []
  for (const g of groups) bytes.push(g >> 8, g & 0xff)
  return bytes
}

function isMappedV4(bytes: readonly number[]): boolean {
  if (bytes.length !== 16) return false
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false
  return bytes[10] === 0xff && bytes[11] === 0xff
}
