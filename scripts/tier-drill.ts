// examples/tier/drill.sh's work: builds the floating-IP tier of examples/keepalived/ in network
// namespaces (test/harness/tier-drill.ts: PostgreSQL, N pooler nodes each with keepalived, a client
// namespace), runs one drill under load and prints what it measured. The last line is exactly
// `recovery_s=<s> acked=<n> lost=<n> duplicated=<n> failed=<n>`; everything before it starts with
// `drill: `. Exit 0 when the drill ran (whatever the figures), 1 when it could not run.
// Usage: node --import tsx scripts/tier-drill.ts [--pooler tidepool|pgbouncer] [--nodes 3]
//        [--clients 8] [--think-ms 5] [--pgbench 4] [--stop]
//   --pgbench N: N pgbench clients besides, in runs of 2 s restarted as each ends (0: none).
//   --stop: SIGTERM instead of SIGKILL to the holder's pooler (a planned stop). tidepool runs with
//           shutdown_close_between_transactions = 1, as examples/keepalived/README.md advises.
// Must not: leave a namespace, process or dir behind, also when interrupted (Ctrl-C).

import { parseArgs } from 'node:util'
import { describeDrill, runDrill, summaryLine, Tier, type Pooler } from '../test/harness/tier-drill.ts'

const { values } = parseArgs({
  options: {
    pooler: { type: 'string', default: 'tidepool' },
    nodes: { type: 'string', default: '3' },
    clients: { type: 'string', default: '8' },
    'think-ms': { type: 'string', default: '5' },
    pgbench: { type: 'string', default: '4' },
    stop: { type: 'boolean', default: false },
  },
})

function count(name: string, v: string | undefined, min: number, max: number): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < min || n > max) {
    process.stderr.write(`drill: --${name} wants a whole number from ${min} to ${max}, not ${v}\n`)
    process.exit(2)
  }
  return n
}

const pooler = values.pooler as Pooler
if (pooler !== 'tidepool' && pooler !== 'pgbouncer') {
  process.stderr.write(`drill: --pooler is tidepool or pgbouncer, not ${values.pooler}\n`)
  process.exit(2)
}
const nodes = count('nodes', values.nodes, 2, 5)
const clients = count('clients', values.clients, 1, 100)
const thinkMs = count('think-ms', values['think-ms'], 0, 1000)
const pgbenchClients = count('pgbench', values.pgbench, 0, 100)
const say = (line: string): void => { process.stdout.write(`drill: ${line}\n`) }

// Ctrl-C: the 'exit' listeners of the harness remove the namespaces, processes and dirs.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130))

let tier: Tier | null = null
try {
  say(`${pooler}, ${nodes} nodes, ${clients} node-postgres clients and ${pgbenchClients} pgbench clients, ${values.stop ? 'SIGTERM' : 'kill -9'} of the node holding the floating address`)
  tier = await Tier.start({ pooler, nodes, say, tidepool: { shutdown_close_between_transactions: 1 } })
  const pgbench = pgbenchClients > 0 ? { clients: pgbenchClients, runSeconds: 2 } : undefined
  const f = await runDrill(tier, values.stop ? 'stop' : 'kill', { clients, thinkMs, pgbench })
  say(describeDrill(f))
  // Every failed transaction; of the refused connects, the first few.
  const shown = [...f.failures.filter((x) => x.phase !== 'connect'), ...f.failures.filter((x) => x.phase === 'connect').slice(0, 3)]
  for (const x of shown) say(`failure: client ${x.client} ${x.phase} at +${x.startedMs - f.t0Ms} ms, after ${x.endedMs - x.startedMs} ms: ${x.error}`)
  await tier.destroy()
  process.stdout.write(`${summaryLine(f)}\n`)
} catch (err) {
  process.stderr.write(`drill: ${(err as Error).stack ?? String(err)}\n`)
  if (tier !== null) {
    process.stderr.write(`${tier.logs()}\n`)
    await tier.destroy()
  }
  process.exit(1)
}
