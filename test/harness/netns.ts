// Network namespaces for the tier drills (test/ha/keepalived.test.ts, examples/tier/drill.sh): one
// bridge in the root namespace, which also carries an address the drill's PostgreSQL listens on, and
// namespaces plugged into it by veth pairs, one per pooler node and one for the clients. Inside each
// namespace the interface is `eth0`, so the nodes' files (keepalived's `interface eth0`) are alike.
//
// Every name carries the creating process's pid and a random id: namespaces `tidepool-<pid>-<id>-<role>`,
// the bridge `tpb<id>`, root-side veth ends `tpv<id><n>`. destroy() (and an 'exit' listener, for a
// run that never reached it) kills whatever still runs in the namespaces and deletes them and the
// bridge; the next Lan removes those of dead processes. The subnet is a free /24 of 198.18.0.0/15
// (RFC 2544's benchmarking range), checked against the root namespace's routes.
// Needs root and iproute2. Must not: touch a namespace, link or route this process did not make,
// or change a setting of the root namespace.

import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { isAlive } from '../../src/embedded/postgres.ts'

const NS_PREFIX = 'tidepool-'
const NS_NAME = /^tidepool-(\d+)-([0-9a-f]{6})-/

export interface NetnsHost {
  /** the namespace's name, for `ip netns exec` */
  ns: string
  /** its address on the bridge */
  address: string
  /** `ip netns exec <ns> cmd args...`, as a command and argument list to spawn */
  command(cmd: string, args: string[]): [string, string[]]
  /** runs a command in the namespace; throws with its output unless it exits 0 */
  run(cmd: string, args: string[]): string
  /** the IPv4 addresses on eth0 */
  addresses(): string[]
}

/** `ip ...`; throws with stderr on failure. */
export function ip(args: string[], opts: { allowFail?: boolean } = {}): string {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 })
  if (r.status !== 0 && opts.allowFail !== true) {
    throw new Error(`ip ${args.join(' ')} failed (exit ${r.status ?? r.signal}): ${r.stderr || r.error?.message || ''}`)
  }
  return r.stdout ?? ''
}

/** SIGKILLs every process in `ns`, then deletes it (its veth ends go with it). */
function deleteNamespace(ns: string): void {
  for (let round = 0; round < 3; round++) {
    const pids = ip(['netns', 'pids', ns], { allowFail: true }).split('\n').map((s) => Number.parseInt(s, 10)).filter((n) => Number.isInteger(n))
    if (pids.length === 0) break
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
    spawnSync('sleep', ['0.1'])
  }
  ip(['netns', 'delete', ns], { allowFail: true })
}

/** Namespaces and bridges left by drill processes that died without cleaning up. */
export function reapStaleNetns(): void {
  const dead = new Set<string>()
  for (const line of ip(['netns', 'list'], { allowFail: true }).split('\n')) {
    const name = line.split(' ')[0] ?? ''
    const m = NS_NAME.exec(name)
    if (m === null || isAlive(Number.parseInt(m[1]!, 10))) continue
    deleteNamespace(name)
    dead.add(m[2]!)
  }
  for (const id of dead) ip(['link', 'delete', `tpb${id}`], { allowFail: true })
}

/** A /24 of 198.18.0.0/15 that no route of the root namespace covers. */
function freeSubnet(): string {
  const routes = ip(['-4', 'route', 'show', 'table', 'all'], { allowFail: true }) + ip(['-4', '-o', 'addr', 'show'], { allowFail: true })
  for (let attempt = 0; attempt < 64; attempt++) {
    const n = randomBytes(2).readUInt16BE(0) % 512
    const prefix = `198.${18 + (n >> 8)}.${n & 255}`
    if (!routes.includes(`${prefix}.`)) return prefix
  }
  throw new Error('no free /24 in 198.18.0.0/15 for the drill network')
}

const lans = new Set<Lan>()
let exitHookInstalled = false

export class Lan {
  readonly id = randomBytes(3).toString('hex')
  readonly bridge = `tpb${this.id}`
  readonly prefix: string
  /** the root namespace's address on the bridge (PostgreSQL listens here) */
  readonly gateway: string
  private readonly namespaces: string[] = []
  private destroyed = false

  constructor() {
    if (process.getuid?.() !== 0) throw new Error('network namespaces need root')
    reapStaleNetns()
    if (!exitHookInstalled) {
      exitHookInstalled = true
      process.on('exit', () => { for (const l of lans) l.destroy() })
    }
    lans.add(this)
    this.prefix = freeSubnet()
    this.gateway = `${this.prefix}.1`
    try {
      ip(['link', 'add', this.bridge, 'type', 'bridge'])
      ip(['addr', 'add', `${this.gateway}/24`, 'dev', this.bridge])
      ip(['link', 'set', this.bridge, 'up'])
    } catch (err) {
      this.destroy()
      throw err
    }
  }

  /** `<prefix>.<host>` */
  address(host: number): string {
    return `${this.prefix}.${host}`
  }

  /** A namespace `role` with `<prefix>.<host>/24` on its eth0, plugged into the bridge. */
  addHost(role: string, host: number): NetnsHost {
    const ns = `${NS_PREFIX}${process.pid}-${this.id}-${role}`
    const veth = `tpv${this.id}${this.namespaces.length}`
    const address = this.address(host)
    ip(['netns', 'add', ns])
    this.namespaces.push(ns)
    ip(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
    ip(['link', 'set', veth, 'master', this.bridge, 'up'])
    ip(['-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0'])
    ip(['-n', ns, 'link', 'set', 'eth0', 'up'])
    ip(['-n', ns, 'link', 'set', 'lo', 'up'])
    const command = (cmd: string, args: string[]): [string, string[]] => ['ip', ['netns', 'exec', ns, cmd, ...args]]
    return {
      ns,
      address,
      command,
      run(cmd, args) {
        const r = spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', timeout: 10_000 })
        if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${ns} failed (exit ${r.status ?? r.signal}): ${r.stdout}${r.stderr}`)
        return r.stdout
      },
      addresses() {
        return [...ip(['-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'eth0'], { allowFail: true }).matchAll(/inet (\S+?)\//g)].map((m) => m[1]!)
      },
    }
  }

  /** Kills what runs in the namespaces, deletes them and the bridge. Synchronous; never throws. */
  destroy(): void {
    if (this.destroyed) return
    this.destroyed = true
    for (const ns of this.namespaces) deleteNamespace(ns)
    ip(['link', 'delete', this.bridge], { allowFail: true })
    lans.delete(this)
  }
}
