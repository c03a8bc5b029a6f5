#!/usr/bin/env node
// Compiles src/ to dist/ (tsconfig.build.json), which bin/tidepool.mjs runs in its own process.
// `npm ci` runs it as the prepare script; `npm start` and the launcher's test run it again, cheaply,
// since tsc builds incrementally (dist/.tsbuildinfo). Plain JS because it must run before anything
// is compiled and without tsx. src/bench/lab/ is left out: developer scripts that import test/.
//
// Usage: node scripts/build.mjs [--quiet]
// Besides tsc's output: the files under src/ that are not TypeScript (report-page.js, read at run
// time beside its module) are copied, and a .js whose .ts is gone is removed, so dist/ never runs
// code that src/ no longer has.

import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const src = join(root, 'src')
const dist = join(root, 'dist')
const LEFT_OUT = join(src, 'bench', 'lab')
// tsconfig.build.json's tsBuildInfoFile, kept inside dist/ so that removing dist/ rebuilds it all.
const TS_BUILD_INFO = '.tsbuildinfo'
const quiet = process.argv.includes('--quiet')

let tsc
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
} catch {
  // `npm ci --omit=dev` still runs prepare; a dist/ built before (or shipped) is then what runs.
  if (existsSync(join(dist, 'main.js'))) {
    if (!quiet) console.error('build: typescript is not installed (devDependencies omitted); keeping the dist/ there is')
    process.exit(0)
  }
  console.error('build: typescript is not installed and there is no dist/: run `npm ci` with devDependencies')
  process.exit(1)
}

const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' })
if (r.status !== 0) {
  console.error('build: tsc failed')
  process.exit(r.status ?? 1)
}

/** Every file under dir, as paths relative to dir. */
function walk(dir, base = dir) {
  if (!existsSync(dir)) return []
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = join(dir, e.name)
    return e.isDirectory() ? walk(full, base) : [relative(base, full)]
  })
}

const sources = new Set(walk(src).filter((f) => !join(src, f).startsWith(LEFT_OUT + '/')))
for (const f of sources) {
  if (f.endsWith('.ts')) continue
  mkdirSync(dirname(join(dist, f)), { recursive: true })
  copyFileSync(join(src, f), join(dist, f))
}
const isCurrent = (f) => sources.has(f) || (f.endsWith('.js') && sources.has(`${f.slice(0, -3)}.ts`))
for (const f of walk(dist)) {
  if (f !== TS_BUILD_INFO && !isCurrent(f)) rmSync(join(dist, f))
}
if (!quiet) console.log(`build: ${relative(root, dist)}/ is up to date`)
