// `tidepool check-config <file.ini>`: load and validate, print warnings and errors with file:line.
// Exit 0 when the file would load, 2 when it would be rejected.

import { loadConfig } from '../config/load.ts'

export async function runCheckConfig(args: string[]): Promise<number> {
  if (args.length !== 1) {
    process.stderr.write('usage: tidepool check-config <config.ini>\n')
    return 2
  }
  const r = await loadConfig(args[0])
  for (const w of r.warnings) process.stdout.write(`warning: ${w}\n`)
  if (!r.ok) {
    for (const e of r.errors) process.stdout.write(`error: ${e}\n`)
    process.stdout.write(`${args[0]}: ${r.errors.length} error(s); the file would be rejected\n`)
    return 2
  }
  const c = r.config
  process.stdout.write(`${c.file}: ok (${c.databases.size} database(s), ${c.users.size} user(s), ${c.userlist.size} in auth_file)\n`)
  return 0
}
