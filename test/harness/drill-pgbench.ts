// pgbench as a drill client (test/harness/drill-client.ts runs it inside the drill's client
// namespace): short pgbench runs back to back, each restarted as soon as it ends, as an operator's
// load script would after a failover. A run's clients write (client, seq) rows like the
// node-postgres clients do, so the same check of the table against the acknowledged commits holds:
// per-client variables persist across a client's transactions in pgbench, so `\set seq :seq + 1`
// numbers them, and pgbench's per-transaction log (-l) lists exactly the transactions it saw
// committed, with that number as its transaction_no.
// Must not: retry a transaction (pgbench 15 aborts a client on any error; the next run starts anew).

import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

/** Where a drill's clients connect. */
export interface DrillTarget {
  host: string
  port: number
  user: string
  password: string
  database: string
}

export interface PgbenchDrillOptions extends DrillTarget {
  /** clients per pgbench run */
  clients: number
  /** -T of each run */
  runSeconds: number
  /** rows of run r use client ids clientBase + r * 100 + pgbench's client_id */
  clientBase: number
}

export interface PgbenchDrillResult {
  runs: number
  /** runs that ended before any client connected (pgbench exit 1) */
  refusedRuns: number
  /** client, seq pairs pgbench logged as committed */
  acked: number[]
  /** clients aborted on an error, by the command they were in: begin, insert, commit */
  aborted: { client: number; seq: number; phase: string; atMs: number; error: string }[]
}

// Command numbers in pgbench's abort message: 0 is the \set.
const SCRIPT = '\\set seq :seq + 1\nBEGIN;\nINSERT INTO drill_tx (client, seq) VALUES (:base + :client_id, :seq);\nCOMMIT;\n'
const PHASES = ['set', 'begin', 'insert', 'commit']
const ABORT = /client (\d+) aborted in command (\d+) \(SQL\) of script 0; (.*)$/

export function startPgbenchDrill(o: PgbenchDrillOptions, onCommitted: (n: number) => void): { stop: () => Promise<PgbenchDrillResult> } {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-drill-pgbench-'))
  const script = join(dir, 'tx.sql')
  writeFileSync(script, SCRIPT)
  const result: PgbenchDrillResult = { runs: 0, refusedRuns: 0, acked: [], aborted: [] }
  let running = true
  let child: ReturnType<typeof spawn> | null = null

  const runOnce = async (run: number): Promise<void> => {
    const base = o.clientBase + run * 100
    const prefix = join(dir, `run${run}`)
    child = spawn('pgbench', [
      '-n', '-h', o.host, '-p', String(o.port), '-U', o.user, '-c', String(o.clients), '-j', '1',
      '-T', String(o.runSeconds), '-f', script, '-D', 'seq=0', '-D', `base=${base}`, '-l', '--log-prefix', prefix, o.database,
    ], { env: { ...process.env, PGPASSWORD: o.password, PGCONNECT_TIMEOUT: '3' }, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s })
    // A run whose server went silent (no RST) would hang: pgbench has no query timeout.
    const guard = setTimeout(() => child?.kill('SIGKILL'), (o.runSeconds + 20) * 1000)
    const code = await new Promise<number | null>((resolve) => child!.once('close', resolve))
    clearTimeout(guard)
    child = null
    result.runs++
    let committed = 0
    const last = new Map<number, number>()
    for (const f of readdirSync(dir).filter((f) => f.startsWith(`run${run}.`))) {
      for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
        const cols = line.split(' ')
        if (cols.length < 6) continue
        const client = Number(cols[0])
        const seq = Number(cols[1])
        result.acked.push(base + client, seq)
        last.set(client, Math.max(last.get(client) ?? 0, seq))
        committed++
      }
    }
    for (const line of stderr.split('\n')) {
      const m = ABORT.exec(line)
      if (m === null) continue
      const client = Number(m[1])
      // The transaction it was in is the one after its last logged commit.
      result.aborted.push({ client: base + client, seq: (last.get(client) ?? 0) + 1, phase: PHASES[Number(m[2])] ?? `command ${m[2]}`, atMs: Date.now(), error: m[3]! })
    }
    if (code === 1 && committed === 0) {
      result.refusedRuns++
      await sleep(50)
    }
    onCommitted(committed)
  }

  const loop = (async () => {
    for (let run = 0; running; run++) await runOnce(run)
  })()

  return {
    stop: async () => {
      running = false
      await loop
      rmSync(dir, { recursive: true, force: true })
      return result
    },
  }
}
