// Lint: typescript-eslint's recommended rules, plus the import direction of docs/architecture.md
// enforced per folder with no-restricted-imports, so a lower layer never reaches up.
import tseslint from 'typescript-eslint'

const layer = (files, forbidden) => ({
  files,
  rules: {
    'no-restricted-imports': ['error', { patterns: forbidden.map((f) => ({ group: [`**/${f}/*`, `**/${f}.ts`], message: `this layer must not import ${f}/ (see docs/architecture.md)` })) }],
  },
})

export default tseslint.config(
  { ignores: ['node_modules/**', 'bench/results/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  layer(['src/util/**/*.ts', 'src/protocol/**/*.ts'], ['config', 'auth', 'net', 'proxy', 'pool', 'ha', 'admin', 'observe', 'runtime', 'cli']),
  layer(['src/config/**/*.ts'], ['auth', 'net', 'proxy', 'pool', 'ha', 'admin', 'observe', 'runtime', 'cli']),
  layer(['src/auth/**/*.ts', 'src/net/**/*.ts'], ['proxy', 'pool', 'ha', 'admin', 'runtime', 'cli']),
  layer(['src/pool/**/*.ts'], ['proxy', 'auth', 'net', 'ha', 'admin', 'runtime', 'cli']),
  layer(['src/proxy/**/*.ts'], ['ha', 'admin', 'runtime', 'cli']),
  // ha/ drives pools only through PoolControl, the seam that later reaches workers and fleet nodes.
  {
    files: ['src/ha/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [
        { group: ['**/pool/*', '!**/pool/control.ts'], message: 'ha/ acts on pools only through pool/control.ts (see docs/architecture.md)' },
        ...['proxy', 'admin', 'runtime', 'cli'].map((f) => ({ group: [`**/${f}/*`, `**/${f}.ts`], message: `this layer must not import ${f}/ (see docs/architecture.md)` })),
      ] }],
    },
  },
  layer(['src/observe/log.ts'], ['config', 'auth', 'net', 'proxy', 'pool', 'ha', 'admin', 'runtime', 'cli']),
)
