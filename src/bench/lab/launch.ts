// How the lab scripts start a pooler under measurement: tidepool as it runs in production (the
// compiled dist/main.js that bin/tidepool.mjs runs), falling back to src/ under tsx only where no
// build exists, so a profile or a CPU figure never includes the TypeScript loader's thread.
import fs from 'node:fs'
import { join } from 'node:path'
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'

const root = join(import.meta.dirname, '..', '..', '..')
const compiled = join(root, 'dist', 'main.js')

export function tidepoolEntry(): string[] {
  return fs.existsSync(compiled) ? [compiled] : ['--import', 'tsx', join(root, 'src', 'main.ts')]
}

/** `entry`: another build's main.js (say, main's dist/ beside a branch's) for a before/after in one run. */
export function spawnTidepool(ini: string, nodeFlags: string[], options: SpawnOptions, entry?: string): ChildProcess {
  return spawn(process.execPath, [...nodeFlags, ...(entry !== undefined ? [entry] : tidepoolEntry()), ini], options)
}

/**
 * The pooler ini both tidepool and PgBouncer get: transaction pooling, users from a userlist.
 * `authType`: how clients log in (trust, or scram-sha-256). `secret`: the userlist's entry for the
 * user (a SCRAM verifier, as deployments store it), the plain password by default.
 */
export function poolerIni(dir: string, pg: { port: number; user: string; password: string }, port: number, poolSize = 20, authType = 'trust', secret = pg.password): string {
  fs.writeFileSync(join(dir, 'ul.txt'), `"${pg.user}" "${secret}"\n`)
  const ini = join(dir, 'p.ini')
  fs.writeFileSync(ini, `[databases]\nbench = host=127.0.0.1 port=${pg.port} dbname=postgres user=${pg.user} password=${pg.password}\n[pgbouncer]\nlisten_addr=127.0.0.1\nlisten_port=${port}\nunix_socket_dir=\nauth_type=${authType}\nauth_file=${join(dir, 'ul.txt')}\npool_mode=transaction\ndefault_pool_size=${poolSize}\nmax_client_conn=2000\nlogfile=\npidfile=\n`)
  return ini
}
