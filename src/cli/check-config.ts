// `tidepool check-config <file.ini>`: load and validate, print warnings and errors with file:line.
// Exit 0 when the file would load, 2 when it would be rejected.

import { loadConfig } from '../config/load.ts'
import { checkBuildSupport } from '../config/build-support.ts'
import { clientTlsFromConfig, serverTlsFromConfig } from '../net/tls.ts'
import { loadHba } from '../auth/hba-load.ts'

export async function runCheckConfig(args: string[]): Promise<number> {
  if (args.length !== 1) {
    process.stderr.write('usage: tidepool check-config <config.ini>\n')
    return 2
  }
  const r = await loadConfig(args[0])
  const support = r.ok ? checkBuildSupport(r.config) : { errors: [], warnings: [] }
  if (r.ok) {
    // Certificates and keys are read as start would read them.
    for (const build of [clientTlsFromConfig, serverTlsFromConfig, loadHba]) {
      try {
        build(r.config)
      } catch (err) {
        support.errors.push((err as Error).message)
      }
    }
  }
  for (const w of [...r.warnings, ...support.warnings]) process.stdout.write(`warning: ${w}\n`)
  const errors = r.ok ? support.errors : r.errors
  if (!r.ok || errors.length > 0) {
    for (const e of errors) process.stdout.write(`error: ${e}\n`)
    process.stdout.write(`${args[0]}: ${errors.length} error(s); the file would be rejected\n`)
    return 2
  }
  const c = r.config
  process.stdout.write(`${c.file}: ok (${c.databases.size} database(s), ${c.users.size} user(s), ${c.userlist.size} in auth_file)\n`)
  return 0
}
