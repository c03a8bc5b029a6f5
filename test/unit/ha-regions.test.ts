// Regions: a node prefers its own region's hosts among those that fit the entry, falls back to other
// regions while none of its own fits, and comes back when one does. The choice is driven here
// without I/O (ha/hosts.ts, ha/backends.ts); the config checks through the loader itself.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Host, pickHost, preferRegion, type CheckOutcome } from '../../src/ha/hosts.ts'
import { Backends } from '../../src/ha/backends.ts'
import { HostMonitor } from '../../src/ha/monitor.ts'
import { loadConfigFromText } from '../../src/config/load.ts'
import type { Config, LoadResult } from '../../src/config/types.ts'

const H = { rise: 1, fall: 1, banMs: 5_000 }
const ok = (inRecovery: boolean | null): CheckOutcome => ({ ok: true, inRecovery, patroni: null, latencyMs: 1, error: null })
const bad: CheckOutcome = { ok: false, inRecovery: null, patroni: null, latencyMs: 1, error: 'connection refused' }

function host(name: string, region: string, inRecovery: boolean | null, kind: 'postgresql' | 'cockroachdb' = 'postgresql'): Host {
  const h = new Host(name, 5432, kind, 0)
  h.region = region
  h.record(ok(inRecovery), H, 0)
  return h
}

test('read-only: the node\'s own region first, least connections among its hosts', () => {
  const primary = host('p', 'us', false)
  const eu1 = host('eu1', 'eu', true)
  const eu2 = host('eu2', 'eu', true)
  const us1 = host('us1', 'us', true)
  const hosts = [primary, us1, eu1, eu2]
  us1.servers = 0
  eu1.servers = 5
  eu2.servers = 2
  assert.equal(pickHost(hosts, 'read-only', 10, 0, 'eu'), eu2, 'the least loaded local standby, though a remote one has fewer connections')
  eu2.servers = 5
  const picked = new Set([0, 1, 2, 3].map((turn) => pickHost(hosts, 'read-only', 10, turn, 'eu')))
  assert.deepEqual([...picked].map((h) => (h as Host).host).sort(), ['eu1', 'eu2'], 'ties rotate among local hosts only')
  assert.equal(pickHost(hosts, 'read-only', 10, 0, 'us'), us1)
})

test('no region configured: exactly the choice without regions (least connections over every region)', () => {
  const eu1 = host('eu1', 'eu', true)
  const us1 = host('us1', 'us', true)
  eu1.servers = 3
  assert.equal(pickHost([eu1, us1], 'read-only', 10, 0, ''), us1)
  assert.equal(pickHost([eu1, us1], 'read-only', 10, 0), us1)
  assert.equal(pickHost([eu1, us1], 'read-only', 10, 0, 'ap'), us1, 'a region with no host prefers nothing')
})

test('fallback: no local host fits (down, banned, or not a standby) → other regions; recovery brings new connections home', () => {
  const eu1 = host('eu1', 'eu', true)
  const us1 = host('us1', 'us', true)
  const us2 = host('us2', 'us', true)
  us1.servers = 4
  const hosts = [eu1, us1, us2]
  assert.equal(pickHost(hosts, 'read-only', 10, 0, 'eu'), eu1)
  eu1.record(bad, H, 20)
  assert.equal(eu1.health(21), 'down')
  assert.equal(pickHost(hosts, 'read-only', 21, 0, 'eu'), us2, 'least connections among the other regions')
  eu1.record(ok(true), H, 30)
  assert.equal(pickHost(hosts, 'read-only', 31, 0, 'eu'), eu1, 'back at once for new connections')
  eu1.ban(H, 'connect refused', 40)
  assert.equal(pickHost(hosts, 'read-only', 41, 0, 'eu'), us2, 'a ban counts as not healthy')
  assert.equal(pickHost(hosts, 'read-only', 40 + H.banMs, 0, 'eu'), eu1)
  const later = 50 + H.banMs
  eu1.record(ok(false), H, later) // promoted: a primary no longer serves read-only
  assert.equal(pickHost(hosts, 'read-only', later, 0, 'eu'), us2)
  assert.equal(pickHost([eu1], 'read-only', later, 0, 'eu'), 'no standby known', 'the region never adds a host the role rules out')
})

test('writes go to the primary wherever it is; the role decides before the region', () => {
  const primary = host('p', 'us', false)
  const eu1 = host('eu1', 'eu', true)
  assert.equal(pickHost([eu1, primary], 'read-write', 10, 0, 'eu'), primary)
  assert.equal(pickHost([eu1, primary], 'primary', 10, 0, 'eu'), primary)
  // prefer-standby: a standby in another region over the primary at home, as libpq's meaning.
  const euPrimary = host('ep', 'eu', false)
  const usStandby = host('us1', 'us', true)
  assert.equal(pickHost([euPrimary, usStandby], 'prefer-standby', 10, 0, 'eu'), usStandby)
  const euStandby = host('eu2', 'eu', true)
  usStandby.servers = 0
  euStandby.servers = 9
  assert.equal(pickHost([euPrimary, usStandby, euStandby], 'prefer-standby', 10, 0, 'eu'), euStandby)
  // No standby anywhere: prefer-standby takes any host that answers, its own region's first.
  const usPrimary = host('up', 'us', false)
  assert.equal(pickHost([usPrimary, euPrimary], 'prefer-standby', 10, 0, 'eu'), euPrimary)
})

test('CockroachDB: every node takes writes, so the local nodes serve reads and writes alike, least connections first', () => {
  const nodes = [host('c1', 'us', null, 'cockroachdb'), host('c2', 'eu', null, 'cockroachdb'), host('c3', 'eu', null, 'cockroachdb')]
  nodes[1].servers = 2
  nodes[2].servers = 1
  assert.equal(pickHost(nodes, 'any', 10, 0, 'eu'), nodes[2])
  assert.equal(pickHost(nodes, 'read-write', 10, 0, 'eu'), nodes[2])
  nodes[1].record(bad, H, 20)
  nodes[2].record(bad, H, 20)
  assert.equal(pickHost(nodes, 'read-write', 21, 0, 'eu'), nodes[0], 'both local nodes down: the remote one')
  assert.deepEqual(preferRegion(nodes, 'eu'), [nodes[1], nodes[2]], 'preferRegion itself ignores health: candidates() filters first')
})

async function mustLoad(text: string): Promise<{ config: Config; warnings: string[] }> {
  const r = await loadConfigFromText(text, '/nonexistent/tidepool.ini')
  if (!r.ok) assert.fail(`config rejected:\n${r.errors.join('\n')}`)
  return { config: r.config, warnings: r.warnings }
}

function errorsOf(r: LoadResult): string {
  if (r.ok) assert.fail('config was accepted but should have been rejected')
  return r.errors.join('\n')
}

const TWO_REGIONS = 'app_ro = host=p,eu1,us1 host_regions=us,eu,us user=u target_session_attrs=read-only\n'

test('config: host_regions per host, one region per host across entries, and warnings when no region can take effect', async () => {
  const { config, warnings } = await mustLoad(`[databases]\n${TWO_REGIONS}app = host=p,eu1,us1 host_regions=us,eu,us user=u target_session_attrs=read-write\n[pgbouncer]\n[tidepool]\nnode_region = eu\n`)
  assert.deepEqual(config.databases.get('app_ro')?.host_regions, ['us', 'eu', 'us'])
  assert.equal(config.settings.node_region, 'eu')
  assert.deepEqual(warnings.filter((w) => w.includes('region')), [])
  assert.throws(() => (config.databases.get('app_ro')?.host_regions as string[]).push('x'), 'frozen with the config')

  for (const [text, error] of [
    ['x = host=a,b,c host_regions=eu,us', /\[databases\] x: host_regions: 2 regions for 3 hosts; give one per host/],
    ['x = host=a,b host_regions=eu,,us', /host_regions: empty name in the list/],
    [`${TWO_REGIONS}y = host=eu1,z host_regions=us,us user=u`, /\[databases\] y: host_regions: host eu1:5432 is in region "us" here but in "eu" in \[databases\] app_ro \(\/nonexistent\/tidepool.ini:2\)/],
  ] as const) {
    assert.match(errorsOf(await loadConfigFromText(`[databases]\n${text}\n[pgbouncer]\n`, '/nonexistent/tidepool.ini')), error, text)
  }

  const noNode = await mustLoad(`[databases]\n${TWO_REGIONS}[pgbouncer]\n`)
  assert.ok(noNode.warnings.some((w) => /app_ro: host_regions is set but \[tidepool\] node_region is not/.test(w)), noNode.warnings.join('\n'))
  const elsewhere = await mustLoad(`[databases]\n${TWO_REGIONS}[pgbouncer]\n[tidepool]\nnode_region = ap\n`)
  assert.ok(elsewhere.warnings.some((w) => /app_ro: no host is in this node's region "ap"/.test(w)), elsewhere.warnings.join('\n'))
  const none = await mustLoad('[databases]\napp = host=a,b\n[pgbouncer]\n[tidepool]\nnode_region = eu\n')
  assert.deepEqual(none.warnings.filter((w) => w.includes('region')), [], 'node_region alone (a fleet label) warns of nothing')
})

test('Backends: the node\'s region applies only to entries with host_regions; isPreferred tells servers to move home', async () => {
  const { config } = await mustLoad(`[databases]\n${TWO_REGIONS}plain = host=p,eu1,us1 user=u target_session_attrs=read-only\n[pgbouncer]\n[tidepool]\nnode_region = eu\n`)
  const backends = new Backends(async () => ok(true), () => {}, () => null)
  backends.apply(config)
  backends.stop()
  const byName = (n: string) => backends.monitor.get(n, 5432) as Host
  byName('p').record(ok(false), H, 0)
  byName('eu1').record(ok(true), H, 0)
  byName('us1').record(ok(true), H, 0)
  assert.equal(byName('eu1').region, 'eu', 'the plain entry on the same hosts still shows their region')
  const ro = config.databases.get('app_ro')!
  const plain = config.databases.get('plain')!
  assert.equal(backends.regionOf(ro), 'eu')
  assert.equal(backends.regionOf(plain), '')
  byName('eu1').servers = 3
  for (let turn = 0; turn < 3; turn++) {
    const pick = backends.pick(ro, turn, 1)
    assert.ok(typeof pick !== 'string' && pick.host.host === 'eu1' && pick.index === 1)
  }
  const plainPick = backends.pick(plain, 0, 1)
  assert.ok(typeof plainPick !== 'string' && plainPick.host.host === 'us1', 'without host_regions: least connections as before')
  assert.equal(backends.isPreferred(ro, 'us1', 5432, 1), false, 'a server on us1 fits but should move home')
  assert.equal(backends.fits(ro, 'us1', 5432, 1), true)
  byName('eu1').record(bad, H, 2)
  assert.equal(backends.isPreferred(ro, 'us1', 5432, 3), true, 'while home is down, the remote standby is where servers belong')
  assert.equal(backends.isPreferred(plain, 'us1', 5432, 3), true)
})

test('the first check after a ban ends reports the host usable again, so pools can move back to it', async () => {
  const changes: string[] = []
  const m = new HostMonitor({ intervalMs: 60_000, timeoutMs: 1000, ...H, banMs: 30 }, async () => ok(true), (h, c) => changes.push(`${h.host} up=${c.upChanged} usable=${h.isUsable(Date.now())}`))
  m.setSpecs([{ host: 'eu1', port: 5432, kind: 'postgresql', login: null, patroniUrl: null, healthUrl: null, region: 'eu' }], { intervalMs: 60_000, timeoutMs: 1000, ...H, banMs: 30 })
  await m.checkAll()
  assert.deepEqual(changes, ['eu1 up=false usable=true'], 'the first check finds its role')
  changes.length = 0
  m.ban('eu1', 5432, 'connect refused')
  assert.deepEqual(changes, ['eu1 up=true usable=false'])
  await m.checkAll()
  assert.equal(changes.length, 1, 'still banned: nothing new')
  await new Promise((r) => setTimeout(r, 60))
  await m.checkAll()
  assert.deepEqual(changes.slice(1), ['eu1 up=true usable=true'])
  await m.checkAll()
  assert.equal(changes.length, 2, 'reported once')
  assert.equal(m.get('eu1', 5432)?.region, 'eu')
})
