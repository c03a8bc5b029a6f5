// A short digest of what a node applies from its config: [databases], [users] and the settings
// that shape pools, so that nodes running the same configuration show the same value in SHOW FLEET.
// Node-local settings (config/fleet-scope.ts: where it listens, its files, its name in the fleet) are
// left out. A node that runs no shared config (tidepool fleet push) shows this as its config version.
// Must not: read files; it digests the frozen Config it is given.

import { createHash } from 'node:crypto'
import type { Config } from './types.ts'
import { isFleetWideKey } from './fleet-scope.ts'

const cache = new WeakMap<Config, string>()

export function configDigest(config: Config): string {
  const known = cache.get(config)
  if (known !== undefined) return known
  const settings = Object.entries(config.settings).filter(([k]) => isFleetWideKey(k)).sort(([a], [b]) => (a < b ? -1 : 1))
  // An entry's pos (file:line) says where it was written, not what it is.
  const text = JSON.stringify([settings, [...config.databases].sort(), [...config.users].sort()],
    (k, v: unknown) => (k === 'pos' ? undefined : v instanceof Map ? [...v] : v instanceof Set ? [...v] : v))
  const digest = createHash('sha256').update(text).digest('hex').slice(0, 12)
  cache.set(config, digest)
  return digest
}
