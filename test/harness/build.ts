// dist/ as bin/tidepool.mjs runs it, compiled from the sources under test: tests of the command as
// installed call buildDist() first, so they never run a dist/ older than src/ (tsc builds
// incrementally, so an up-to-date dist/ costs a few seconds).

import { spawn } from 'node:child_process'
import { join } from 'node:path'

export const REPO_ROOT = join(import.meta.dirname, '..', '..')
export const BIN = join(REPO_ROOT, 'bin', 'tidepool.mjs')

export async function buildDist(): Promise<void> {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'scripts', 'build.mjs'), '--quiet'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d) => { out += String(d) })
  child.stderr.on('data', (d) => { out += String(d) })
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  if (code !== 0) throw new Error(`scripts/build.mjs failed (${code}):\n${out}`)
}
