// PgBouncer's rule for local tooling: user pgbouncer over the unix socket, from a process of
// tidepool's own OS user (the kernel's SO_PEERCRED, read through perl), enters the admin console
// as an admin without a password and without being in admin_users. Any other OS user, TCP, or a
// tidepool that cannot read the peer's credentials goes through auth_type as usual.
// Runs as root (as the suite does): the other OS user is nobody (65534).
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { sharedPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { runPsql, type RunResult } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const NOBODY = 65534

/** psql as OS user `uid`, no password (-w), over the unix socket in `dir`. */
function psqlAs(uid: number, dir: string, port: number, sql: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const args = ['-X', '-w', '-At', '-v', 'ON_ERROR_STOP=1', '-h', dir, '-p', String(port), '-U', 'pgbouncer', '-d', 'pgbouncer', '-c', sql]
    const child = spawn('/usr/bin/psql', args, { uid, gid: uid, cwd: '/', env: { PATH: '/usr/bin:/bin', PGCONNECT_TIMEOUT: '10' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}

test('user pgbouncer over the unix socket from tidepool\'s own OS user is a console admin without a password; other OS users and TCP are not', { timeout: 60_000 }, async (t) => {
  assert.equal(process.getuid?.(), 0, 'the suite runs as root, so a client of another OS user can be started')
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tp-peer-'))
  fs.chmodSync(dir, 0o755)
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'md5', unix_socket_dir: dir, admin_users: '', stats_users: '', verbose: 1 },
    userlist: { [TEST_USERS.scram.user]: TEST_USERS.scram.password },
  })
  const own = await psqlAs(0, dir, tp.port, 'SHOW FDS')
  assert.equal(own.code, 0, own.stderr)
  assert.match(own.stdout, /pooler/, 'SHOW FDS, an admin_users command, answered')
  const pause = await psqlAs(0, dir, tp.port, 'PAUSE app')
  assert.equal(pause.code, 0, pause.stderr)
  await psqlAs(0, dir, tp.port, 'RESUME app')
  assert.ok(tp.logs.some((l) => l.includes('pgbouncer access from unix socket')), 'logged as PgBouncer logs it')

  const other = await psqlAs(NOBODY, dir, tp.port, 'SHOW VERSION')
  assert.notEqual(other.code, 0, 'another OS user gets the ordinary md5 login')
  assert.match(other.stderr, /password/)
  assert.ok(tp.logs.some((l) => l.includes(`peer uid ${NOBODY} is not tidepool's`)), tp.logs.join('\n'))

  const tcp = await runPsql({ port: tp.port, user: 'pgbouncer', db: 'pgbouncer', sql: 'SHOW VERSION' })
  assert.notEqual(tcp.code, 0, 'over TCP there is no peer to trust')
  assert.match(tcp.stderr, /password/)
})

test('without perl the peer is unknown: user pgbouncer gets the ordinary login, and the log says why', { timeout: 60_000 }, async (t) => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tp-peer-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'md5', unix_socket_dir: dir },
    userlist: { [TEST_USERS.scram.user]: TEST_USERS.scram.password },
  })
  // tidepool runs in this process: an empty PATH is what it finds when it looks for perl.
  const path = process.env.PATH
  process.env.PATH = join(dir, 'empty')
  try {
    const r = await psqlAs(0, dir, tp.port, 'SHOW VERSION').catch((err: Error) => ({ code: -1, stdout: '', stderr: err.message }))
    assert.notEqual(r.code, 0)
  } finally {
    process.env.PATH = path
  }
  assert.ok(tp.logs.some((l) => l.includes('peer credentials unknown: cannot run perl')), tp.logs.join('\n'))
})
