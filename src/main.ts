// Entry point: `tidepool [start] <file.ini>`, `tidepool check-config <file.ini>`, `tidepool demo`,
// `tidepool fleet ...`.
// Results go to stdout, logs to stderr. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config.

// First: it refuses a debugger before anything else is loaded (cli/no-debugger.ts).
import './cli/no-debugger.ts'
import { parseArgs } from 'node:util'
import { runStart } from './cli/start.ts'
import { runCheckConfig } from './cli/check-config.ts'

const USAGE = `usage:
  tidepool [start] [-v] [-q] <config.ini>   run the pooler (pgbouncer.ini syntax)
  tidepool <config.ini> --takeover [--takeover-timeout s]
                                             online restart: this version takes over from the running one
  tidepool check-config <config.ini>         validate a config file and print the result
  tidepool demo [--port 6432]                embedded PostgreSQL + tidepool, ready for psql and pgbench
  tidepool switchover <db> [--to host] [--timeout s] [-h host] [-p port] [-U user]
                                             planned switchover through a running tidepool's console
  tidepool fleet push <file.ini> | show [<file.ini>]
                                             store a config for every node of the fleet (etcd); show who runs what
  tidepool fleet pause|resume|reconnect|kill|reload|enable|disable [db] [-h host] [-p port] [-U user]
                                             a command every node of the fleet runs, through one node's console
  tidepool fleet switchover <db> [--to host] [--timeout s] [-h host] [-p port] [-U user]
                                             every node holds, that node promotes through Patroni, all follow
  tidepool bench init|run|report ...         workloads direct vs pooled, tables and an HTML report
  tidepool --version | --help`

const VERSION = '0.1.0'

async function main(argv: string[]): Promise<number> {
  const sub = argv[0]
  if (sub === undefined || sub === '-h' || sub === '--help') {
    process.stdout.write(USAGE + '\n')
    return sub === undefined ? 2 : 0
  }
  if (sub === '-V' || sub === '--version') {
    process.stdout.write(`tidepool ${VERSION}\n`)
    return 0
  }
  if (sub === 'check-config') return runCheckConfig(argv.slice(1))
  if (sub === 'switchover') return (await import('./cli/switchover.ts')).runSwitchover(argv.slice(1))
  if (sub === 'fleet') return (await import('./cli/fleet.ts')).runFleet(argv.slice(1))
  if (sub === 'bench') return (await import('./cli/bench.ts')).runBenchCommand(argv.slice(1))
  // Loaded only when asked for: the demo pulls in PostgreSQL tooling the pooler itself never needs.
  if (sub === 'demo') return (await import('./cli/demo.ts')).runDemo(argv.slice(1))
  const rest = sub === 'start' ? argv.slice(1) : argv
  let parsed
  try {
    parsed = parseArgs({ args: rest, allowPositionals: true, options: {
      verbose: { type: 'boolean', short: 'v', multiple: true }, quiet: { type: 'boolean', short: 'q' },
      takeover: { type: 'boolean' }, 'takeover-timeout': { type: 'string' },
    } })
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`)
    return 2
  }
  if (parsed.positionals.length !== 1) {
    process.stderr.write(USAGE + '\n')
    return 2
  }
  const timeoutText = parsed.values['takeover-timeout']
  const takeoverTimeoutS = timeoutText === undefined ? null : Number(timeoutText)
  if (takeoverTimeoutS !== null && !(Number.isFinite(takeoverTimeoutS) && takeoverTimeoutS >= 0)) {
    process.stderr.write(`--takeover-timeout: expected seconds, got "${timeoutText}"\n`)
    return 2
  }
  return runStart(parsed.positionals[0], { verbose: parsed.values.verbose?.length ?? 0, quiet: parsed.values.quiet === true, takeover: parsed.values.takeover === true, takeoverTimeoutS })
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`tidepool: ${(err as Error).message ?? String(err)}\n`)
    process.exitCode = 1
  },
)
