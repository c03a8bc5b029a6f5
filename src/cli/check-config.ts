// `tidepool check-config <file.ini>`: load and validate, print warnings and errors with file:line.
// Exit 0 when the file would load, 2 when it would be rejected. `tidepool fleet push` validates
// with the same checkConfigFile, so a file it stores is one a node would load.

import { loadConfig } from '../config/load.ts'
import { checkBuildSupport } from '../config/build-support.ts'
import type { Config } from '../config/types.ts'
import { clientTlsFromConfig, serverTlsFromConfig } from '../net/tls.ts'
import { loadHba } from '../auth/hba-load.ts'

/** Loads the file as start and RELOAD would, certificates, keys and hba file included. */
export async function checkConfigFile(file: string): Promise<{ config: Config | null; errors: string[]; warnings: string[] }> {
  const r = await loadConfig(file)
  if (!r.ok) return { config: null, errors: r.errors, warnings: r.warnings }
  const support = checkBuildSupport(r.config)
  for (const build of [clientTlsFromConfig, serverTlsFromConfig, loadHba]) {
    try {
      build(r.config)
    } catch (err) {
      support.errors.push((err as Error).message)
    }
  }
  const warnings = [...r.warnings, ...support.warnings]
  return support.errors.length > 0 ? { config: null, errors: support.errors, warnings } : { config: r.config, errors: [], warnings }
}

export async function runCheckConfig(args: string[]): Promise<number> {
  if (args.length !== 1) {
    process.stderr.write('usage: tidepool check-config <config.ini>\n')
    return 2
  }
  const r = await checkConfigFile(args[0])
  for (const w of r.warnings) process.stdout.write(`warning: ${w}\n`)
  if (r.config === null) {
    for (const e of r.errors) process.stdout.write(`error: ${e}\n`)
    process.stdout.write(`${args[0]}: ${r.errors.length} error(s); the file would be rejected\n`)
    return 2
  }
  const c = r.config
  process.stdout.write(`${c.file}: ok (${c.databases.size} database(s), ${c.users.size} user(s), ${c.userlist.size} in auth_file)\n`)
  return 0
}
