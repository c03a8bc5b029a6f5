// The kinds of value a setting holds (integers, seconds, milliseconds, octal modes, booleans,
// strings, lists, enums): how each is read from pgbouncer.ini, checked, and written back for SHOW
// CONFIG. settings.ts builds the table of settings from them.

/** Value types a setting can have after parsing. Seconds stay seconds (floats allowed), as in
 *  pgbouncer.ini; code that needs milliseconds converts at the point of use. */
export type SettingValue = string | number | boolean | readonly string[]

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string }

/** How one kind of value is read from pgbouncer.ini and written back for SHOW CONFIG. */
export interface SettingType<T extends SettingValue> {
  readonly kind: 'int' | 'seconds' | 'millis' | 'octal' | 'bool' | 'string' | 'list' | 'enum'
  /** For docs: `int`, `seconds`, `enum: a, b`, ... */
  readonly label: string
  /** Allowed values of an enum, canonical spelling; empty for other kinds. */
  readonly values: readonly string[]
  parse(text: string): ParseResult<T>
  render(value: T): string
}

const INT32_MAX = 2147483647

function quoteGot(text: string): string {
  return JSON.stringify(text)
}

function rangeError(min: number, max: number, n: number): string {
  return max === Infinity ? `must be at least ${min}, got ${n}` : `must be between ${min} and ${max}, got ${n}`
}

/** Decimal integer, as PgBouncer's CF_INT reads it (but without strtol's octal/hex surprises). */
export function int(opts: { min?: number; max?: number } = {}): SettingType<number> {
  const min = opts.min ?? 0
  const max = opts.max ?? INT32_MAX
  return {
    kind: 'int',
    label: 'int',
    values: [],
    parse(text) {
      if (!/^[-+]?\d+$/.test(text)) return { ok: false, error: `expected an integer, got ${quoteGot(text)}` }
      const n = Number(text)
      if (n < min || n > max) return { ok: false, error: rangeError(min, max, n) }
      return { ok: true, value: n }
    },
    render: (v) => String(v),
  }
}

// PostgreSQL's time units. PgBouncer 1.25 itself reads a bare number of seconds only; the
// suffixes are a tidepool extension, so a file written for PgBouncer reads the same here.
const SECONDS_PER_UNIT: Readonly<Record<string, number>> = {
  us: 1e-6, ms: 1e-3, s: 1, min: 60, h: 3600, d: 86400,
}
const SECONDS_RE = /^((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(us|ms|s|min|h|d)?$/

/** Parses a time in seconds; floats and unit suffixes (`100ms`, `30s`, `5min`, `2h`, `1d`) allowed. */
export function parseSeconds(text: string): ParseResult<number> {
  const m = SECONDS_RE.exec(text)
  if (m === null) return { ok: false, error: `expected seconds, got ${quoteGot(text)}` }
  const value = Number(m[1]) * SECONDS_PER_UNIT[m[2] ?? 's']
  if (!Number.isFinite(value)) return { ok: false, error: `expected seconds, got ${quoteGot(text)}` }
  // Round away float noise from the unit factor (100ms must be 0.1, not 0.10000000000000002).
  return { ok: true, value: Number(value.toPrecision(12)) }
}

/** Seconds as C's printf("%g") writes them, which is what PgBouncer's SHOW CONFIG shows. */
export function formatSeconds(v: number): string {
  if (v === 0) return '0'
  const [mantissa, expText] = v.toExponential(5).split('e')
  const exp = Number(expText)
  if (exp < -4 || exp >= 6) {
    const m = mantissa.includes('.') ? mantissa.replace(/\.?0+$/, '') : mantissa
    return `${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`
  }
  const fixed = v.toFixed(Math.max(0, 5 - exp))
  return fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed
}

export function seconds(): SettingType<number> {
  return { kind: 'seconds', label: 'seconds', values: [], parse: parseSeconds, render: formatSeconds }
}

/** Whole milliseconds, for our own keys, which carry the unit in their name. */
export function millis(opts: { min?: number } = {}): SettingType<number> {
  const inner = int({ min: opts.min ?? 0 })
  return { ...inner, kind: 'millis', label: 'milliseconds' }
}

/** A file mode: `0777` is octal, as C's strtol(..., 0) reads it; `0x1ff` and `511` work too. */
export function octal(): SettingType<number> {
  return {
    kind: 'octal',
    label: 'file mode',
    values: [],
    parse(text) {
      let n: number
      if (/^0[xX][0-9a-fA-F]+$/.test(text)) n = Number.parseInt(text.slice(2), 16)
      else if (/^0[0-7]*$/.test(text)) n = Number.parseInt(text, 8)
      else if (/^[1-9]\d*$/.test(text)) n = Number(text)
      else return { ok: false, error: `expected a file mode such as 0777, got ${quoteGot(text)}` }
      if (n > 0o7777) return { ok: false, error: rangeError(0, 0o7777, n) }
      return { ok: true, value: n }
    },
    // PgBouncer prints the mode as a decimal int (0777 shows as 511); we keep its output.
    render: (v) => String(v),
  }
}

const TRUE_WORDS = new Set(['1', 'yes', 'on', 'true'])
const FALSE_WORDS = new Set(['0', 'no', 'off', 'false'])

/** PgBouncer stores these as ints; any integer works (non-zero is true), and so do the words. */
export function bool(): SettingType<boolean> {
  return {
    kind: 'bool',
    label: 'bool',
    values: [],
    parse(text) {
      const t = text.toLowerCase()
      if (TRUE_WORDS.has(t)) return { ok: true, value: true }
      if (FALSE_WORDS.has(t)) return { ok: true, value: false }
      if (/^[-+]?\d+$/.test(t)) return { ok: true, value: Number(t) !== 0 }
      return { ok: false, error: `expected a boolean (0/1, yes/no, on/off, true/false), got ${quoteGot(text)}` }
    },
    render: (v) => (v ? '1' : '0'),
  }
}

export function str(): SettingType<string> {
  return { kind: 'string', label: 'string', values: [], parse: (text) => ({ ok: true, value: text }), render: (v) => v }
}

/** Comma-separated names; blanks around commas and empty items are dropped. */
export function list(): SettingType<readonly string[]> {
  return {
    kind: 'list',
    label: 'list',
    values: [],
    parse: (text) => ({ ok: true, value: text.split(',').map((s) => s.trim()).filter((s) => s !== '') }),
    render: (v) => v.join(','),
  }
}

/** One of fixed words, matched without regard to case as PgBouncer's lookup tables are. */
export function oneOf<const V extends string>(values: readonly V[]): SettingType<V> {
  return {
    kind: 'enum',
    label: `enum: ${values.join(', ')}`,
    values,
    parse(text) {
      const t = text.toLowerCase()
      const v = values.find((x) => x.toLowerCase() === t)
      if (v === undefined) return { ok: false, error: `expected one of ${values.join(', ')}, got ${quoteGot(text)}` }
      return { ok: true, value: v }
    },
    render: (v) => v,
  }
}


/** Most worker processes: a cancel key's pid carries the worker's index in its top 7 bits. */
export const MAX_WORKERS = 128

/**
 * How many worker processes serve clients: `auto` (kept as 0) for one per CPU, or a count. The
 * upper bound is the number of worker indexes a cancel key can name (proxy/cancel.ts).
 */
export function workerCount(): SettingType<number> {
  const inner = int({ min: 1, max: MAX_WORKERS })
  return {
    kind: 'int',
    label: `auto, or 1 to ${MAX_WORKERS}`,
    values: [],
    parse: (text) => (text.toLowerCase() === 'auto' ? { ok: true, value: 0 } : inner.parse(text)),
    render: (v) => (v === 0 ? 'auto' : String(v)),
  }
}

/** The methods libpq's require_auth names that tidepool's server login can meet. */
export const REQUIRE_AUTH_METHODS = ['password', 'md5', 'scram-sha-256', 'none'] as const

/**
 * libpq's require_auth: a comma list of methods the server may ask for (`none`: no request at
 * all), or of `!method`s it may not; the two forms do not mix, and no method twice, as in libpq.
 * The value kept is the methods allowed, in REQUIRE_AUTH_METHODS' order; empty (the default)
 * means no requirement. gss and sspi are refused: tidepool speaks neither.
 */
export function requireAuth(): SettingType<readonly string[]> {
  return {
    kind: 'list',
    label: `list: ${REQUIRE_AUTH_METHODS.join(', ')}, or each with !`,
    values: [],
    parse(text) {
      const items = text.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '')
      if (items.length === 0) return { ok: true, value: [] }
      const isNegated = items[0].startsWith('!')
      const named = new Set<string>()
      for (const item of items) {
        if (item.startsWith('!') !== isNegated) return { ok: false, error: `negative require_auth methods cannot be mixed with positive ones, got ${quoteGot(text)}` }
        const m = isNegated ? item.slice(1) : item
        if (!(REQUIRE_AUTH_METHODS as readonly string[]).includes(m)) return { ok: false, error: `expected methods among ${REQUIRE_AUTH_METHODS.join(', ')} (or each with !), got ${quoteGot(item)}` }
        if (named.has(m)) return { ok: false, error: `require_auth method ${quoteGot(m)} is given more than once` }
        named.add(m)
      }
      const allowed = REQUIRE_AUTH_METHODS.filter((m) => named.has(m) !== isNegated)
      if (allowed.length === 0) return { ok: false, error: `${quoteGot(text)} leaves no method to log in with` }
      return { ok: true, value: allowed }
    },
    render: (v) => v.join(','),
  }
}
