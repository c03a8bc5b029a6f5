// A real etcd for the tests, from Debian's etcd-server (3.4): one member on free loopback ports, its
// data in a dir of this run (replication.ts's makeDir: `<tmpdir>/tidepool-pg-<run id>-<pid>-XXXXXX`,
// named on etcd's command line), under `setpriv --pdeathsig`. So, like every daemon of the harness,
// it is killed and its dir removed in t.after(), by the exit hook if the test never got there, with
// the test process if that is killed, and else by scripts/run-tests.mjs's sweep, which finds what
// survived of a run by that marker (pgrep -f).
// stop() and start() take it down and bring it back on the same ports and data (its keys and leases
// survive, as for an etcd restart); kill() is a crash.

import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { waitFor } from './clients.ts'
import { freePort } from './ports.ts'
import { Daemon, HOST, destroy, diagnostics, makeDir, requireBinaries } from './replication.ts'

export interface Etcd {
  /** host:port, as Patroni's etcd3.hosts and tidepool's fleet_etcd want it */
  endpoint: string
  clientUrl: string
  log(): string
  /** SIGKILL: the DCS is gone, as for a partition from it */
  kill(): void
  /** SIGTERM, then gone (bounded wait). */
  stop(): Promise<void>
  /** Back on the same ports and data dir; resolves when /health says true. */
  start(): Promise<void>
}

async function isHealthy(clientUrl: string): Promise<boolean> {
  try {
    const res = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(2_000) })
    return (await res.text()).includes('"true"')
  } catch {
    return false
  }
}

export interface EtcdOptions {
  /** Serve clients over TLS with this certificate, and require a client certificate signed by `ca`. */
  tls?: { cert: string; key: string; ca: string }
}

/** One single-member etcd on free loopback ports, its data in a temp dir; killed and removed in t.after(). */
export async function startEtcd(t: TestContext, opts: EtcdOptions = {}): Promise<Etcd> {
  requireBinaries(['/usr/bin/etcd'])
  const dir = makeDir()
  const dataDir = join(dir, 'etcd')
  const daemon = new Daemon({ asPostgres: false, deathSignal: 'TERM' })
  t.after(() => destroy([daemon], [dir]))
  diagnostics(t, 'etcd log', () => daemon.log())
  const token = `tp-${randomBytes(4).toString('hex')}`
  const tls = opts.tls
  const tlsArgs = tls === undefined ? [] : ['--cert-file', tls.cert, '--key-file', tls.key, '--trusted-ca-file', tls.ca, '--client-cert-auth']
  // /health over TLS would need the client certificate; the log says as much.
  const isServing = async (clientUrl: string, mark: number) => tls === undefined
    ? isHealthy(clientUrl)
    : /serving client traffic securely/.test(daemon.since(mark))
  const run = async (clientUrl: string, peerUrl: string, isNew: boolean): Promise<string> => {
    const mark = daemon.mark()
    daemon.spawn('etcd', [
      '--name', 'tp', '--data-dir', dataDir,
      '--listen-client-urls', clientUrl, '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `tp=${peerUrl}`, '--initial-cluster-state', isNew ? 'new' : 'existing',
      '--initial-cluster-token', token,
      '--logger', 'zap', '--log-outputs', 'stderr',
      ...tlsArgs,
    ])
    await waitFor(async () => !daemon.running() || await isServing(clientUrl, mark),
      { timeoutMs: 20_000, intervalMs: 50, what: `etcd on ${clientUrl} to be healthy` })
    return daemon.running() ? '' : daemon.since(mark)
  }
  for (let attempt = 0; attempt < 5; attempt++) {
    const client = await freePort()
    const peer = await freePort()
    if (client === peer) continue
    const clientUrl = `${tls === undefined ? 'http' : 'https'}://${HOST}:${client}`
    const peerUrl = `http://${HOST}:${peer}`
    // A failed attempt's member data names its peer URL; start clean.
    rmSync(dataDir, { recursive: true, force: true })
    const failed = await run(clientUrl, peerUrl, true)
    if (failed === '') {
      return {
        endpoint: `${HOST}:${client}`,
        clientUrl,
        log: () => daemon.log(),
        kill: () => daemon.kill(),
        stop: () => daemon.stop('SIGTERM', 5_000),
        async start() {
          const out = await run(clientUrl, peerUrl, false)
          if (out !== '') throw new Error(`etcd exited at restart:\n${out}`)
        },
      }
    }
    if (!/address already in use/.test(failed)) throw new Error(`etcd exited at start:\n${failed}`)
  }
  throw new Error(`etcd: no free ports after 5 attempts:\n${daemon.log()}`)
}
