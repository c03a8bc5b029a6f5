// Fails when files under src/ import each other in a circle. `npm run lint` runs it:
// npx tsx scripts/import-cycles.ts   exit 0 when the only circles are the known ones below, 1 otherwise.
//
// Our own small check rather than madge or eslint-plugin-import: both resolve modules through
// bundler-style resolvers that need configuring for `.ts` extensions in import paths, while
// TypeScript's own parser (already a devDependency) sees every import form exactly as tsc does.
// Type-only imports count: a circle of types is still two modules that each need the other to be
// understood, and the layer table in docs/architecture.md makes no exception for them.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

// Known circles, each as the sorted set of files it joins. A circle found here is reported but
// does not fail the check.
// No circle is allowed; an entry here (the files of one circle) would excuse it.
const ALLOWED: readonly (readonly string[])[] = []

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/** Every .ts file under dir, as paths relative to the repository root. */
function listTs(dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...listTs(p))
    else if (p.endsWith('.ts')) out.push(relative(root, p))
  }
  return out
}

/** Relative module specifiers a file names: static, re-export, dynamic import() and import('…') types. */
export function importsOf(fileName: string, text: string): string[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS)
  const specs: string[] = []
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      specs.push(node.moduleSpecifier.text)
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      specs.push(node.argument.literal.text)
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments.length > 0 && ts.isStringLiteralLike(node.arguments[0])) {
      specs.push((node.arguments[0] as ts.StringLiteralLike).text)
    }
    ts.forEachChild(node, visit)
  }
  visit(sf)
  return specs.filter((s) => s.startsWith('.'))
}

/** Strongly connected components of more than one file (or a file importing itself), Tarjan's way. */
export function findCycles(graph: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  let index = 0
  const idx = new Map<string, number>(), low = new Map<string, number>(), onStack = new Set<string>()
  const stack: string[] = [], out: string[][] = []
  const strong = (v: string): void => {
    idx.set(v, index); low.set(v, index); index++
    stack.push(v); onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) { strong(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)) }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!))
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = []
      let w: string
      do { w = stack.pop()!; onStack.delete(w); comp.push(w) } while (w !== v)
      if (comp.length > 1 || graph.get(v)?.has(v)) out.push(comp.sort())
    }
  }
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) strong(v)
  return out
}

/** One concrete path round a component, for the message: a → b → … → a. */
function pathRound(graph: ReadonlyMap<string, ReadonlySet<string>>, comp: readonly string[]): string {
  const inComp = new Set(comp)
  const start = comp[0]
  const prev = new Map<string, string | null>([[start, null]])
  const queue = [start]
  for (let i = 0; i < queue.length; i++) {
    for (const w of graph.get(queue[i]) ?? []) {
      if (w === start) {
        const path = [start]
        for (let v = queue[i]; v !== start; v = prev.get(v)!) path.splice(1, 0, v)
        return [...path, start].join(' → ')
      }
      if (inComp.has(w) && !prev.has(w)) { prev.set(w, queue[i]); queue.push(w) }
    }
  }
  return comp.join(' ↔ ')
}

/** File → the files it imports, every path relative to the repository root. */
export function buildGraph(files: readonly string[], readText: (file: string) => string): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>()
  for (const f of files) {
    const deps = new Set<string>()
    for (const spec of importsOf(f, readText(f))) deps.add(join(dirname(f), spec))
    graph.set(f, deps)
  }
  return graph
}

function main(): number {
  const files = listTs(join(root, 'src'))
  const graph = buildGraph(files, (f) => readFileSync(join(root, f), 'utf8'))
  const allowed = new Set(ALLOWED.map((c) => [...c].sort().join('|')))
  let failed = 0
  for (const comp of findCycles(graph)) {
    const known = allowed.has(comp.join('|'))
    console.log(`${known ? 'known import cycle (allowed)' : 'import cycle'}: ${pathRound(graph, comp)}${comp.length > 2 ? ` (all of ${comp.join(', ')} reach each other)` : ''}`)
    if (!known) failed++
  }
  if (failed === 0) return 0
  console.error(`${failed} import cycle(s) under src/; see the layer table in docs/architecture.md`)
  return 1
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main()
}
