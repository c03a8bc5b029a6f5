#!/usr/bin/env node
// The `tidepool` command runs the compiled entry (dist/, built from src/ by `npm ci` through the
// prepare script) in this very process, not in a child: the PID a supervisor starts is tidepool
// itself, so its SIGHUP reloads, its SIGTERM stops, and the exit code is tidepool's own. Nothing
// here depends on the current directory.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const entry = new URL('../dist/main.js', import.meta.url)
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write(`tidepool: ${fileURLToPath(entry)} is missing: run \`npm run build\` (npm ci does it) in ${fileURLToPath(new URL('..', import.meta.url))}\n`)
  process.exit(1)
}
await import(entry.href)
