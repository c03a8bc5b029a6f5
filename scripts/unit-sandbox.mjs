// Loaded into every test file's process by scripts/run-tests.mjs. In a file under test/unit or
// test/property it makes opening or accepting a socket, and starting a child process, throw: those
// suites promise `npm run test:unit` needs no PostgreSQL, no free port and no other program, so a
// test that needs one belongs in test/integration. test/unit/no-io.test.ts checks the imports too,
// which also catches a call on a path that no test happens to run.
// Must not: act in any other test file, nor in the runner that spawns the files.
import childProcess from 'node:child_process'
import dgram from 'node:dgram'
import net from 'node:net'
import { syncBuiltinESMExports } from 'node:module'

const file = process.argv[1] ?? ''
const isSandboxed = process.env.NODE_TEST_CONTEXT !== undefined && /[\\/]test[\\/](unit|property)[\\/]/.test(file)

if (isSandboxed) {
  const refuse = (what) => () => {
    throw new Error(`unit-sandbox: ${what} in ${file}; test/unit and test/property open no socket and start no process (move the test to test/integration)`)
  }
  // Every TCP, unix socket and HTTP client connects through Socket#connect, every server listens
  // through Server#listen; every async child process goes through ChildProcess#spawn.
  net.Socket.prototype.connect = refuse('a socket connect')
  net.Server.prototype.listen = refuse('a server listen')
  dgram.Socket.prototype.bind = refuse('a UDP bind')
  dgram.Socket.prototype.send = refuse('a UDP send')
  childProcess.ChildProcess.prototype.spawn = refuse('a child process')
  for (const name of ['spawnSync', 'execSync', 'execFileSync']) childProcess[name] = refuse(`child_process.${name}`)
  // Named imports (import { spawnSync } from 'node:child_process') see the patched functions too.
  syncBuiltinESMExports()
}
