// Checks of host_regions across [databases] entries, made at load (check-config, start, RELOAD).
// A host's region belongs to the host, not to the entry that names it: two entries on one cluster
// must agree, or the same host would be local for one pool and remote for the other. And a region
// setting that can never take effect (no node_region, or none of an entry's hosts in it) is worth a
// warning, since reads would then cross regions with nothing in the log to say why.
// Must not: read anything but the entries and settings given.

import type { DatabaseEntry, SourcePos } from './types.ts'

function at(pos: SourcePos): string {
  return `${pos.file}:${pos.line}`
}

export function regionProblems(databases: Iterable<DatabaseEntry>, nodeRegion: string): { errors: string[]; warnings: string[] } {
  const errors: string[] = []
  const warnings: string[] = []
  const seen = new Map<string, { region: string; entry: DatabaseEntry }>()
  const withRegions: DatabaseEntry[] = []
  for (const e of databases) {
    if (e.host_regions.length === 0) continue
    withRegions.push(e)
    e.hosts.forEach((host, i) => {
      const key = `${host}:${e.ports[i]}`
      const region = e.host_regions[i]
      const earlier = seen.get(key)
      if (earlier === undefined) seen.set(key, { region, entry: e })
      else if (earlier.region !== region) {
        errors.push(`${at(e.pos)}: [databases] ${e.name}: host_regions: host ${key} is in region ${JSON.stringify(region)} here but in ${JSON.stringify(earlier.region)} in [databases] ${earlier.entry.name} (${at(earlier.entry.pos)}); a host has one region`)
      }
    })
  }
  if (withRegions.length === 0) return { errors, warnings }
  if (nodeRegion === '') {
    warnings.push(`${at(withRegions[0].pos)}: [databases] ${withRegions[0].name}: host_regions is set but [tidepool] node_region is not: regions are shown, no host is preferred`)
    return { errors, warnings }
  }
  for (const e of withRegions) {
    if (!e.host_regions.includes(nodeRegion)) {
      warnings.push(`${at(e.pos)}: [databases] ${e.name}: no host is in this node's region ${JSON.stringify(nodeRegion)} (host_regions=${e.host_regions.join(',')}): every server connection crosses regions`)
    }
  }
  return { errors, warnings }
}
