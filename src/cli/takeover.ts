// `tidepool <ini> --takeover`: asks the tidepool running with this config (found through its
// control socket, runtime/takeover.ts) to start this very command line as its successor, prints
// how it goes, and exits 0 once the old process has handed everything over and gone, 1 when no
// tidepool runs there or the takeover failed (the old one then serves on), 2 on a bad config.
// The new pooler is the old one's child, started detached: this command does not stay.

import net from 'node:net'
import type { Config } from '../config/types.ts'
import { controlSocketPath, type TakeoverEvent, type TakeoverRequest } from '../runtime/takeover.ts'

export const DEFAULT_TAKEOVER_TIMEOUT_S = 60

export async function runTakeover(config: Config, timeoutS: number): Promise<number> {
  const s = config.settings
  const path = controlSocketPath(s, s.listen_port)
  if (path === null) {
    process.stderr.write('tidepool: --takeover needs unix_socket_dir: the running tidepool is reached through its control socket there\n')
    return 2
  }
  // The new process runs exactly what was run here, minus --takeover: this version, this Node.js.
  const args = [...process.execArgv, process.argv[1], ...withoutTakeover(process.argv.slice(2))]
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v
  const req: TakeoverRequest = { op: 'takeover', execPath: process.execPath, args, cwd: process.cwd(), env, timeoutS }
  return new Promise<number>((resolve) => {
    const sock = net.connect(path)
    let buf = ''
    let code: number | null = null
    sock.setEncoding('utf8')
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'))
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (code !== null) return
      const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'no tidepool is running there' : err.message
      process.stderr.write(`tidepool: --takeover: cannot reach the running tidepool at ${path}: ${why}\n`)
      code = 1
    })
    sock.on('data', (d: string) => {
      buf += d
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const e = JSON.parse(buf.slice(0, nl)) as TakeoverEvent
        buf = buf.slice(nl + 1)
        if (e.ev === 'started') process.stdout.write(`takeover: new tidepool started, pid ${e.pid}\n`)
        else if (e.ev === 'ready') process.stdout.write(`takeover: pid ${e.pid} listens; the old process hands over its clients\n`)
        else if (e.ev === 'done') {
          process.stdout.write(`takeover: done in ${e.ms} ms: ${e.handed} clients handed over, ${e.closed} closed at the deadline; pid ${e.pid} serves\n`)
          code = 0
        } else {
          process.stderr.write(`tidepool: --takeover: ${e.message}\n`)
          code = 1
        }
      }
    })
    sock.on('close', () => {
      if (code === null) process.stderr.write('tidepool: --takeover: the old process closed the control connection before the takeover finished\n')
      resolve(code ?? 1)
    })
  })
}

/** The command line without --takeover and --takeover-timeout (either form). */
export function withoutTakeover(argv: readonly string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--takeover' || argv[i].startsWith('--takeover-timeout=')) continue
    if (argv[i] === '--takeover-timeout') {
      i++
      continue
    }
    out.push(argv[i])
  }
  return out
}
