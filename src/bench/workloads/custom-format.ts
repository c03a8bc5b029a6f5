// The workload file of `tidepool bench ... custom --file F`: sections in brackets, SQL in between.
//
//   # comments start with '#' or '--' at the start of a line
//   [params]                       numbers, each also a --NAME option of init and run
//   rows = 10000
//   [init]                         statements run in order by `bench init`
//   CREATE TABLE kv (k INT8 PRIMARY KEY, v TEXT);
//   INSERT INTO kv SELECT g, 'v' FROM generate_series(1, ${rows}) AS g;
//   [op read weight=80]            one operation; each cycle runs one op, chosen by weight
//   SELECT v FROM kv WHERE k = ${int(1, rows)};
//   [op write weight=20]           several statements run as one transaction
//   UPDATE kv SET v = ${text(12)} WHERE k = ${int(1, rows)};
//
// A statement ends with ';' at the end of a line (or at the end of its section). ${NAME} puts a
// param's value into the text; in ops, ${int(a, b)}, ${float(a, b)}, ${text(n)} and
// ${pick(x, y, ...)} become bind parameters with a fresh random value each time. Errors name
// file:line. This file only parses; custom.ts turns the result into a Workload.

export type Arg = { kind: 'number'; value: number } | { kind: 'string'; value: string } | { kind: 'param'; name: string; line: number }

export type Expr =
  | { kind: 'param'; name: string; line: number }
  | { kind: 'call'; fn: GeneratorName; args: Arg[]; line: number }

export type GeneratorName = 'int' | 'float' | 'text' | 'pick'

/** A statement as text pieces between ${...} expressions: pieces.length === exprs.length + 1. */
export interface Template {
  line: number
  pieces: string[]
  exprs: Expr[]
}

export interface WorkloadFile {
  file: string
  params: { name: string; value: number; line: number }[]
  init: Template[]
  ops: { name: string; weight: number; line: number; statements: Template[] }[]
}

export class WorkloadFileError extends Error {}

const ARITY: Record<GeneratorName, [number, number]> = { int: [2, 2], float: [2, 2], text: [1, 1], pick: [1, Infinity] }
const NAME = /^[A-Za-z][A-Za-z0-9_-]*$/

export function parseWorkloadFile(text: string, file: string): WorkloadFile {
  const out: WorkloadFile = { file, params: [], init: [], ops: [] }
  const fail = (line: number, msg: string): never => { throw new WorkloadFileError(`${file}:${line}: ${msg}`) }
  let section: 'params' | 'init' | 'op' | null = null
  let stmt: { line: number; lines: string[] } | null = null
  const target = (): Template[] => (section === 'init' ? out.init : out.ops[out.ops.length - 1].statements)
  const flush = () => {
    if (stmt === null) return
    const body = stmt.lines.join('\n').replace(/;\s*$/, '').trim()
    if (body !== '') target().push(parseTemplate(body, stmt.line, fail))
    stmt = null
  }
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1
    const t = lines[i].trim()
    if (t === '' || t.startsWith('#') || t.startsWith('--')) continue
    if (t.startsWith('[')) {
      flush()
      const head = /^\[\s*(.*?)\s*\]$/.exec(t)?.[1]
      if (head === undefined) fail(n, `a section header must end with ']': ${t}`)
      else if (head === 'params' || head === 'init') {
        if (head === 'init' && out.init.length > 0) fail(n, 'a second [init] section')
        section = head
      } else if (head.startsWith('op ') || head === 'op') {
        const m = /^op\s+(\S+)(?:\s+weight\s*=\s*(\S+))?$/.exec(head)
        if (m === null) fail(n, `expected [op NAME weight=N], got [${head}]`)
        const [, name, w] = m!
        if (!NAME.test(name)) fail(n, `op name ${name}: letters, digits, '_' and '-' only, starting with a letter`)
        if (out.ops.some((o) => o.name === name)) fail(n, `op ${name} is defined twice`)
        const weight = w === undefined ? 1 : Number(w)
        if (!(Number.isFinite(weight) && weight >= 0)) fail(n, `op ${name}: weight must be a number >= 0, got ${w}`)
        out.ops.push({ name, weight, line: n, statements: [] })
        section = 'op'
      } else {
        fail(n, `unknown section [${head}]: expected [params], [init] or [op NAME weight=N]`)
      }
      continue
    }
    if (section === null) fail(n, 'text before the first section ([params], [init] or [op NAME weight=N])')
    if (section === 'params') {
      const m = /^(\S+)\s*=\s*(\S+)$/.exec(t)
      if (m === null) fail(n, `expected NAME = NUMBER in [params], got: ${t}`)
      const [, name, v] = m!
      if (!NAME.test(name)) fail(n, `param name ${name}: letters, digits, '_' and '-' only, starting with a letter`)
      const value = Number(v)
      if (!Number.isFinite(value)) fail(n, `param ${name}: ${v} is not a number`)
      if (out.params.some((p) => p.name === name)) fail(n, `param ${name} is defined twice`)
      out.params.push({ name, value, line: n })
      continue
    }
    stmt ??= { line: n, lines: [] }
    stmt.lines.push(lines[i])
    if (t.endsWith(';')) flush()
  }
  flush()
  if (out.ops.length === 0) fail(Math.max(1, lines.findLastIndex((l) => l.trim() !== '') + 1), 'no [op NAME weight=N] section: a workload needs at least one operation')
  for (const op of out.ops) if (op.statements.length === 0) fail(op.line, `op ${op.name} has no statement`)
  if (!out.ops.some((o) => o.weight > 0)) fail(out.ops[0].line, 'every op has weight 0')
  const known = new Set(out.params.map((p) => p.name))
  for (const tpl of [...out.init, ...out.ops.flatMap((o) => o.statements)]) {
    for (const e of tpl.exprs) {
      const refs = e.kind === 'param' ? [e] : e.args.filter((a): a is Extract<Arg, { kind: 'param' }> => a.kind === 'param')
      for (const r of refs) if (!known.has(r.name)) fail(r.line, `unknown param ${r.name} (declare it in [params])`)
    }
  }
  for (const tpl of out.init) {
    const call = tpl.exprs.find((e) => e.kind === 'call')
    if (call !== undefined) fail(call.line, `${(call as { fn: string }).fn}() draws random values for ops; [init] takes \${param} only`)
  }
  for (const op of out.ops) {
    for (const tpl of op.statements) {
      const k = tpl.pieces.findIndex((p) => /\$\d/.test(p))
      if (k >= 0) fail(tpl.line + countNewlines(tpl.pieces.slice(0, k + 1).join('')), 'bind placeholders like $1 are numbered by tidepool: write ${int(1, 10)} and the like instead')
    }
  }
  return out
}

function countNewlines(s: string): number {
  let n = 0
  for (const c of s) if (c === '\n') n++
  return n
}

function parseTemplate(body: string, line: number, fail: (line: number, msg: string) => never): Template {
  const pieces: string[] = []
  const exprs: Expr[] = []
  let at = 0
  for (;;) {
    const open = body.indexOf('${', at)
    if (open < 0) break
    const exprLine = line + countNewlines(body.slice(0, open))
    const close = body.indexOf('}', open)
    const nl = body.indexOf('\n', open)
    if (close < 0 || (nl >= 0 && nl < close)) fail(exprLine, `'\${' without its closing '}'`)
    pieces.push(body.slice(at, open))
    exprs.push(parseExpr(body.slice(open + 2, close).trim(), exprLine, fail))
    at = close + 1
  }
  pieces.push(body.slice(at))
  return { line, pieces, exprs }
}

function parseExpr(src: string, line: number, fail: (line: number, msg: string) => never): Expr {
  if (NAME.test(src)) return { kind: 'param', name: src, line }
  const m = /^([A-Za-z]+)\s*\((.*)\)$/.exec(src)
  if (m === null) fail(line, `\${${src}}: expected a param name or one of int(a, b), float(a, b), text(n), pick(x, y, ...)`)
  const fn = m![1]
  if (!(fn in ARITY)) fail(line, `unknown function ${fn}(): expected int, float, text or pick`)
  const args = splitArgs(m![2], line, fail)
  const [lo, hi] = ARITY[fn as GeneratorName]
  if (args.length < lo || args.length > hi) fail(line, `${fn}() takes ${lo === hi ? lo : `${lo} or more`} argument(s), got ${args.length}`)
  if (fn !== 'pick' && args.some((a) => a.kind === 'string')) fail(line, `${fn}() takes numbers or param names`)
  return { kind: 'call', fn: fn as GeneratorName, args, line }
}

function splitArgs(src: string, line: number, fail: (line: number, msg: string) => never): Arg[] {
  const args: Arg[] = []
  const re = /\s*(?:'((?:[^']|'')*)'|(-?\d+(?:\.\d+)?)|([A-Za-z][A-Za-z0-9_-]*))\s*(,|$)/y
  if (src.trim() === '') return args
  let at = 0
  while (at < src.length) {
    re.lastIndex = at
    const m = re.exec(src)
    if (m === null) fail(line, `cannot read the arguments (${src}): use numbers, 'strings' or param names, separated by commas`)
    if (m![1] !== undefined) args.push({ kind: 'string', value: m![1].replaceAll("''", "'") })
    else if (m![2] !== undefined) args.push({ kind: 'number', value: Number(m![2]) })
    else args.push({ kind: 'param', name: m![3], line })
    at = re.lastIndex
    if (m![4] === '') return args
  }
  return fail(line, `an argument is missing after the last comma in (${src})`)
}
