#!/usr/bin/env node
// The `tidepool` command runs the compiled entry (dist/, built from src/ by `npm ci` through the
// prepare script) in this very process, not in a child: the PID a supervisor starts is tidepool
// itself, so its SIGHUP reloads, its SIGTERM stops, and the exit code is tidepool's own. Nothing
// here depends on the current directory.
import { existsSync } from 'node:fs'
import module from 'node:module'
import { fileURLToPath } from 'node:url'

// Node 22.1+ keeps V8's compiled code of dist/ on disk (under os.tmpdir(), or NODE_COMPILE_CACHE),
// so a restart skips compiling it again; Node 20 has no such cache, and a cache that cannot be
// written only costs that saving.
module.enableCompileCache?.()

const entry = new URL('../dist/main.js', import.meta.url)
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write(`tidepool: ${fileURLToPath(entry)} is missing: run \`npm run build\` (npm ci does it) in ${fileURLToPath(new URL('..', import.meta.url))}\n`)
  process.exit(1)
}
// No debugger: refused before the rest of dist/ is even loaded (src/cli/no-debugger.ts).
await import(new URL('../dist/cli/no-debugger.js', import.meta.url).href)
await import(entry.href)
