// Lint: typescript-eslint's recommended rules, plus the layer table of docs/architecture.md enforced
// per part of src/ with no-restricted-imports, so a lower layer never reaches up, and SQLSTATEs
// spelt only in src/protocol/pg-error.ts. Import circles are checked by scripts/import-cycles.ts
// (`npm run lint` runs both).
import tseslint from 'typescript-eslint'

// Every part of src/ that a layer names: the folders, and the entry files at the top.
const PARTS = ['util', 'protocol', 'config', 'auth', 'net', 'pool', 'proxy', 'ha', 'admin', 'observe', 'embedded', 'dashboard', 'bench', 'cli', 'runtime', 'workers', 'main']
const BELOW_ADMIN = ['util', 'protocol', 'config', 'auth', 'net', 'pool', 'proxy', 'ha']

// What each part may import from the rest of src/ (its own folder always). An entry is a part;
// `part:types` allows only `import type` from it; `part/file.ts` allows that one file. The table
// and its deviations from ../shared/ARCHITECTURE.md are explained in docs/architecture.md.
export const MAY_IMPORT = {
  util: [],
  protocol: ['util'],
  config: ['util'],
  'observe/log.ts': ['util'],
  net: ['util', 'protocol', 'config:types', 'observe/log.ts'],
  auth: ['util', 'protocol', 'config:types', 'config/effective.ts', 'net', 'observe/log.ts'],
  pool: ['util', 'protocol', 'config:types', 'config/effective.ts', 'observe/log.ts'],
  proxy: ['util', 'protocol', 'config', 'auth', 'net', 'pool', 'observe/log.ts'],
  // ha/ drives pools only through PoolControl, the seam that later reaches workers and fleet nodes.
  ha: ['util', 'protocol', 'config:types', 'net', 'auth/query-once.ts', 'pool/control.ts', 'observe/log.ts'],
  admin: [...BELOW_ADMIN, 'observe/log.ts', 'observe:types'],
  observe: [...BELOW_ADMIN],
  embedded: ['util'],
  // The page's files run in the browser: observe/ reads them as files, nothing imports them.
  dashboard: [],
  // `tidepool bench` measures any pooler from outside: it imports none of tidepool's layers nor the
  // test harness. lab/ holds the developer benches, which start tidepool, PgBouncer and PostgreSQL
  // (through test/harness/) to run them side by side: scripts, never part of the command.
  bench: ['protocol/pg-error.ts'],
  'bench/lab': PARTS.filter((p) => p !== 'main' && p !== 'cli'),
  cli: PARTS.filter((p) => p !== 'main'),
  // Runtime runs as one worker through the WorkerRole it is handed; workers/ builds on Runtime.
  runtime: PARTS.filter((p) => p !== 'main' && p !== 'cli' && p !== 'workers'),
  workers: PARTS.filter((p) => p !== 'main' && p !== 'cli'),
  main: PARTS,
}

// The files of src/ each entry governs. runtime covers any file beside it at the top of src/ (and a
// runtime/ folder), so splitting runtime.ts keeps its rules.
const FILES = {
  'observe/log.ts': ['src/observe/log.ts'],
  'bench/lab': ['src/bench/lab/**/*.ts'],
  runtime: ['src/*.ts', 'src/runtime/**/*.ts'],
  main: ['src/main.ts'],
}

const globsOf = (part) =>
  part === 'runtime' ? ['**/runtime.ts', '**/runtime/**'] : part === 'main' ? ['**/main.ts'] : [`**/${part}/**`]

/** no-restricted-imports patterns that forbid, for `layer`, every part its MAY_IMPORT entry leaves out. */
function forbiddenFor(layer) {
  const allowed = MAY_IMPORT[layer]
  const own = layer.split('/')[0]
  const patterns = []
  for (const part of PARTS) {
    if (part === own || allowed.includes(part)) continue
    const files = allowed.filter((a) => a.startsWith(`${part}/`))
    const group = [...globsOf(part), ...files.map((f) => `!**/${f}`)]
    const isTypesOk = allowed.includes(`${part}:types`)
    const what = `${part}/${files.length > 0 ? ` (except ${files.join(', ')})` : ''}${isTypesOk ? ' other than with `import type`' : ''}`
    patterns.push({ group, allowTypeImports: isTypesOk, message: `src/${layer} must not import ${what}: see the layer table in docs/architecture.md` })
  }
  return patterns
}

// Test code is no layer of src/; only lab/ may reach it.
const HARNESS = { group: ['**/test/**'], message: 'src/ must not import test code (src/bench/lab/ excepted)' }

const layers = Object.keys(MAY_IMPORT).map((layer) => ({
  files: FILES[layer] ?? [`src/${layer}/**/*.ts`],
  ignores: layer === 'bench' ? ['src/bench/lab/**'] : [],
  rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: layer === 'bench/lab' ? forbiddenFor(layer) : [...forbiddenFor(layer), HARNESS] }] },
}))

// A string that looks like a SQLSTATE (two class characters, three subclass characters, some digit
// among them) belongs in src/protocol/pg-error.ts under PostgreSQL's condition name.
// A setting's `default` text ('60000' ms) is not one, nor a size such as '256MB'.
const SQLSTATE_LITERAL = {
  selector: "Literal[value=/^(?=[0-9A-Z]*[0-9])(?![0-9]+[KMGT]B$)[0-9A-Z]{5}$/]:not(Property[key.name='default'] > Literal)",
  message: 'SQLSTATE literal: use SqlState from src/protocol/pg-error.ts (add the condition name there if missing)',
}

export default tseslint.config(
  { ignores: ['node_modules/**', 'src/bench/lab/results/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  ...layers,
  {
    files: ['src/**/*.ts'],
    ignores: ['src/protocol/pg-error.ts'],
    rules: { 'no-restricted-syntax': ['error', SQLSTATE_LITERAL] },
  },
)
