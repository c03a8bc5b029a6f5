// A real etcd for the tests, from Debian's etcd-server (3.4): one member on free loopback ports, its
// data in a dir of this run (replication.ts's makeDir: `<tmpdir>/tidepool-pg-<run id>-<pid>-XXXXXX`,
// named on etcd's command line), under `setpriv --pdeathsig`. So, like every daemon of the harness,
// it is killed and its dir removed in t.after(), by the exit hook if the test never got there, with
// the test process if that is killed, and else by scripts/run-tests.mjs's sweep, which finds what
// survived of a run by that marker (pgrep -f).
// stop() and start() take it down and bring it back on the same ports and data (its keys and leases
// survive, as for an etcd restart); kill() is a crash.
// startEtcdCluster(): a 3-member (or n-member) cluster the same way, every member's data dir under one
// dir of the run; the leader is found through each member's maintenance status (the gRPC gateway:
// Debian's etcd-server ships no etcdctl), and each member stops and starts on its own.

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

export interface EtcdMember {
  name: string
  /** host:port of its client URL */
  endpoint: string
  clientUrl: string
  /** SIGKILL: a crash */
  kill(): void
  /** SIGTERM, then gone (bounded wait). */
  stop(): Promise<void>
  /** Back on the same ports and data dir; resolves when it serves clients again (the cluster may still lack a quorum). */
  start(): Promise<void>
  running(): boolean
}

export interface EtcdCluster {
  /** Every member's host:port, comma-separated: tidepool's fleet_etcd as a user writes it. */
  endpoint: string
  clientUrls: string[]
  members: EtcdMember[]
  /** Index in `members` of the leader as the running members report it; null while none has one. */
  leader(): Promise<number | null>
  /** Every member down (SIGTERM, bounded wait). */
  stopAll(): Promise<void>
  /** Every stopped member back; resolves when the cluster has a leader. */
  startAll(): Promise<void>
  log(): string
}

/** The member's own id and the leader's, through the gRPC gateway's maintenance status (etcdctl is not installed with etcd-server). */
async function memberStatus(clientUrl: string): Promise<{ member: string; leader: string } | null> {
  try {
    const res = await fetch(`${clientUrl}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1_000) })
    const j = await res.json() as { header?: { member_id?: string }; leader?: string }
    return j.header?.member_id !== undefined && j.leader !== undefined && j.leader !== '0' ? { member: j.header.member_id, leader: j.leader } : null
  } catch {
    return null
  }
}

/**
 * An etcd cluster of `size` members (3 for the leader-loss drills) on free loopback ports, each its own
 * data dir under one dir of this run; killed and removed in t.after(), like startEtcd's.
 */
export async function startEtcdCluster(t: TestContext, size: number): Promise<EtcdCluster> {
  requireBinaries(['/usr/bin/etcd'])
  const dir = makeDir()
  const daemons = Array.from({ length: size }, () => new Daemon({ asPostgres: false, deathSignal: 'TERM' }))
  t.after(() => destroy(daemons, [dir]))
  const token = `tp-${randomBytes(4).toString('hex')}`
  for (let attempt = 0; attempt < 5; attempt++) {
    const ports = await Promise.all(Array.from({ length: size * 2 }, () => freePort()))
    const names = daemons.map((_, i) => `tp${i}`)
    const clientUrls = names.map((_, i) => `http://${HOST}:${ports[2 * i]!}`)
    const peerUrls = names.map((_, i) => `http://${HOST}:${ports[2 * i + 1]!}`)
    const initialCluster = names.map((n, i) => `${n}=${peerUrls[i]!}`).join(',')
    const dataDir = (i: number) => join(dir, names[i]!)
    const run = (i: number, isNew: boolean): number => {
      const d = daemons[i]!
      const mark = d.mark()
      // With a data dir from before, etcd takes its membership from there and ignores initial-cluster.
      d.spawn('etcd', [
        '--name', names[i]!, '--data-dir', dataDir(i),
        '--listen-client-urls', clientUrls[i]!, '--advertise-client-urls', clientUrls[i]!,
        '--listen-peer-urls', peerUrls[i]!, '--initial-advertise-peer-urls', peerUrls[i]!,
        '--initial-cluster', initialCluster, '--initial-cluster-state', isNew ? 'new' : 'existing',
        '--initial-cluster-token', token,
        '--logger', 'zap', '--log-outputs', 'stderr',
      ])
      return mark
    }
    const serving = async (i: number, mark: number, needsLeader: boolean): Promise<string> => {
      const d = daemons[i]!
      await waitFor(async () => !d.running() || (needsLeader ? await isHealthy(clientUrls[i]!) : /serving client traffic/.test(d.since(mark))),
        { timeoutMs: 30_000, intervalMs: 50, what: `etcd member ${names[i]!} on ${clientUrls[i]!} to serve` })
      return d.running() ? '' : d.since(mark)
    }
    for (const i of daemons.keys()) rmSync(dataDir(i), { recursive: true, force: true })
    const marks = daemons.map((_, i) => run(i, true))
    const failed = (await Promise.all(daemons.map((_, i) => serving(i, marks[i]!, true)))).filter((s) => s !== '')
    if (failed.length > 0) {
      daemons.forEach((d) => d.kill())
      await Promise.all(daemons.map((d) => d.whenGone().catch(() => {})))
      if (failed.some((s) => /address already in use/.test(s))) continue
      throw new Error(`etcd cluster exited at start:\n${failed.join('\n----\n')}`)
    }
    daemons.forEach((d, i) => diagnostics(t, `etcd ${names[i]!} log`, () => d.log()))
    const members = daemons.map((d, i): EtcdMember => ({
      name: names[i]!,
      endpoint: clientUrls[i]!.replace(/^http:\/\//, ''),
      clientUrl: clientUrls[i]!,
      kill: () => d.kill(),
      stop: () => d.stop('SIGTERM', 5_000),
      async start() {
        if (d.running()) return
        const out = await serving(i, run(i, false), false)
        if (out !== '') throw new Error(`etcd ${names[i]!} exited at restart:\n${out}`)
      },
      running: () => d.running(),
    }))
    const leader = async (): Promise<number | null> => {
      const st = await Promise.all(members.map((m) => (m.running() ? memberStatus(m.clientUrl) : Promise.resolve(null))))
      const ids = st.map((s) => s?.member)
      const lead = st.find((s) => s !== null)?.leader
      const i = lead === undefined ? -1 : ids.indexOf(lead)
      return i < 0 ? null : i
    }
    return {
      endpoint: members.map((m) => m.endpoint).join(','),
      clientUrls,
      members,
      leader,
      stopAll: async () => { await Promise.all(members.map((m) => m.stop())) },
      async startAll() {
        await Promise.all(members.map((m) => m.start()))
        await waitFor(async () => (await leader()) !== null, { timeoutMs: 30_000, intervalMs: 50, what: 'the etcd cluster to elect a leader' })
      },
      log: () => daemons.map((d, i) => `--- ${names[i]!}\n${d.log()}`).join('\n'),
    }
  }
  throw new Error('etcd cluster: no free ports after 5 attempts')
}
