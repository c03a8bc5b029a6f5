// A fleet's shared config in etcd: `tidepool fleet push` stores the [databases], [users] and
// fleet-wide settings (config/fleet-scope.ts) of a file that validated whole, as a new version under
//   <fleet_name>/config/current   one JSON SharedConfigRecord
// and every node follows that key: a watch applies a new version at once (as a RELOAD of the node's
// own ini with the shared part in force), and each heartbeat reads it again, so a node that missed
// an event (etcd down, watch reconnecting, node started while etcd was away) catches up.
// Refused, with one log line, and the last good config kept: a value that is not a record, an entry
// naming a node-local or unknown setting (the runtime checks both with config/shared-record.ts), a
// version whose merged config does not load on this node, and any other key under <fleet_name>/config/.
// Invariants: versions are applied in etcd's order (mod revision), never an older one after a newer;
// one apply at a time.
// Must not: block the data path, or apply anything that did not load whole.

import type { Etcd3, IKeyValue } from 'etcd3'
import type { Logger } from '../../observe/log.ts'
import type { SharedConfigRecord } from '../../config/shared-record.ts'

export function configPrefix(fleetName: string): string {
  return `${fleetName}/config/`
}

export function configKey(fleetName: string): string {
  return `${configPrefix(fleetName)}current`
}

/**
 * Stores `entries` as the next version; returns it. A compare-and-swap on the key's revision, so two
 * pushes at once cannot give one version twice (the loser is told to push again).
 */
export async function pushSharedConfig(client: Etcd3, fleetName: string, rec: Omit<SharedConfigRecord, 'version'>): Promise<number> {
  const key = configKey(fleetName)
  const cur = (await client.get(key).exec()).kvs[0]
  let prev = 0
  if (cur !== undefined) {
    let stored: unknown = null
    try {
      stored = (JSON.parse(cur.value.toString()) as { version?: unknown }).version
    } catch {
      // Garbage over it: the key's own write count below still only grows.
    }
    prev = Math.max(typeof stored === 'number' && Number.isSafeInteger(stored) ? stored : 0, Number(cur.version))
  }
  const version = prev + 1
  const value = JSON.stringify({ version, ...rec })
  const r = await client.if(key, 'Mod', '==', cur === undefined ? 0 : cur.mod_revision).then(client.put(key).value(value)).commit()
  if (!r.succeeded) throw new Error('the shared config changed during this push (another push?); push again')
  return version
}

export interface SharedConfigFollowerOptions {
  client: Etcd3
  fleetName: string
  log: Logger
  /** Checks the value read and puts it in force as a RELOAD would: what was applied, or why not. */
  apply(value: string): Promise<{ ok: true; record: SharedConfigRecord } | { ok: false; error: string }>
}

export class SharedConfigFollower {
  private readonly key: string
  private readonly prefix: string
  private watcher: { cancel(): Promise<void>; removeAllListeners(): unknown } | null = null
  /** The mod revision of the last value looked at (applied or refused): never go back before it. */
  private seenRevision = 0n
  private chain: Promise<void> = Promise.resolve()
  /** Foreign keys and refused values already logged, so a heartbeat does not log them again. */
  private readonly logged = new Set<string>()
  private isStopped = false

  constructor(private readonly o: SharedConfigFollowerOptions) {
    this.prefix = configPrefix(o.fleetName)
    this.key = configKey(o.fleetName)
  }

  /** Watches the key; the watch reconnects by itself, and poll() covers what it misses. */
  start(): void {
    const w = this.o.client.watch().prefix(this.prefix).watcher()
    w.on('put', (kv: IKeyValue) => this.consider(kv))
    w.on('delete', (kv: IKeyValue) => {
      if (kv.key.toString() === this.key) this.o.log.warn('fleet.config_deleted', null, `shared config ${this.key} was deleted from etcd; keeping the config in force`)
    })
    // Errors are the watch's reconnects (etcd away); the heartbeat says etcd is lost.
    w.on('error', () => {})
    this.watcher = w
  }

  /** Reads every key under the prefix now (each heartbeat); resolves once a new version was applied or refused. */
  async poll(): Promise<void> {
    const r = await this.o.client.getAll().prefix(this.prefix).exec()
    for (const kv of r.kvs) this.consider(kv)
    await this.chain
  }

  private consider(kv: IKeyValue): void {
    const key = kv.key.toString()
    if (key !== this.key) {
      if (!this.logged.has(key)) {
        this.logged.add(key)
        this.o.log.warn('fleet.config_refused', null, `ignoring etcd key ${key}: not the shared config (${this.key})`)
      }
      return
    }
    const rev = BigInt(kv.mod_revision)
    if (rev <= this.seenRevision) return
    this.seenRevision = rev
    const value = kv.value.toString()
    this.chain = this.chain.then(async () => {
      if (this.isStopped) return
      const r = await this.o.apply(value).catch((err: unknown) => ({ ok: false as const, error: (err as Error).message }))
      if (!r.ok) {
        this.o.log.error('fleet.config_refused', null, `refusing the shared config in etcd (${key}, revision ${rev}): ${r.error}; keeping the config in force`)
      } else {
        this.o.log.info('fleet.config_applied', null,
          `applied shared config version ${r.record.version} pushed by ${r.record.pushed_by} (${Date.now() - r.record.pushed_ms} ms after the push)`)
      }
    })
  }

  async stop(): Promise<void> {
    this.isStopped = true
    const w = this.watcher
    this.watcher = null
    if (w !== null) {
      await Promise.race([w.cancel().catch(() => {}), new Promise((r) => setTimeout(r, 500).unref())])
      w.removeAllListeners()
    }
  }
}
