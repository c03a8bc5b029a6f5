// `tidepool fleet ...`: the fleet's shared config and fleet-wide commands.
//   push <file.ini>   validates the file as check-config and RELOAD do (any error: nothing is stored,
//                     exit 2) and stores its [databases], [users] and fleet-wide settings in etcd as
//                     a new version, which every node then applies (ha/fleet/shared-config.ts)
//   show [<file.ini>] prints the stored version and which node runs which version
//   pause|resume|reconnect|kill|reload|enable|disable [db]
//                     FLEET <cmd> through a running node's console (as psql -d pgbouncer would)
//   switchover <db> [--to host] [--timeout s]
//                     FLEET SWITCHOVER through a running node's console: every node holds, that
//                     node promotes through Patroni, every node retargets and releases
// push and show reach etcd as the file's [tidepool] fleet_* keys say (endpoints, TLS, user), or
// through --etcd and --fleet. Exit 0 on success, 1 on a runtime failure (etcd unreachable, a node
// that failed or did not answer), 2 on bad usage or an invalid file.

import os from 'node:os'
import { parseArgs } from 'node:util'
import { loadConfig, sharedEntriesOf } from '../config/load.ts'
import { parseIniFile } from '../config/ini.ts'
import { defaultSettings, findSetting, type Settings } from '../config/settings.ts'
import { isFleetWideKey } from '../config/fleet-scope.ts'
import { parseSharedConfig, sharedConfigText } from '../config/shared-record.ts'
import { checkConfigFile } from './check-config.ts'
import { CONSOLE_OPTIONS, consoleClient, printRows, switchoverSql } from './switchover.ts'

const COMMANDS = ['pause', 'resume', 'reconnect', 'kill', 'reload', 'enable', 'disable']

const USAGE = `usage:
  tidepool fleet push <file.ini> [--etcd host:port,...] [--fleet name]
  tidepool fleet show [<file.ini>] [--etcd host:port,...] [--fleet name] [--json]
  tidepool fleet ${COMMANDS.join('|')} [db] [--host h] [--port p] [--user u]
  tidepool fleet switchover <db> [--to <host[:port]|patroni member>] [--timeout <seconds>] [--host h] [--port p] [--user u]`

export async function runFleet(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  if (sub === 'push' || sub === 'show') {
    let parsed
    try {
      parsed = parseArgs({ args: rest, allowPositionals: true, options: { etcd: { type: 'string' }, fleet: { type: 'string' }, json: { type: 'boolean' } } })
    } catch (err) {
      process.stderr.write(`${(err as Error).message}\n${USAGE}\n`)
      return 2
    }
    const files = parsed.positionals
    if (sub === 'push' ? files.length !== 1 : files.length > 1) {
      process.stderr.write(`${USAGE}\n`)
      return 2
    }
    return sub === 'push' ? push(files[0], parsed.values) : show(files[0] ?? null, parsed.values)
  }
  if (sub !== undefined && COMMANDS.includes(sub)) return command(sub, rest)
  if (sub === 'switchover') return switchover(rest)
  process.stderr.write(`${USAGE}\n`)
  return 2
}

interface EtcdFlags {
  etcd?: string
  fleet?: string
  json?: boolean
}

/** The fleet_* settings of `file` (defaults without one), with --etcd and --fleet over them. */
async function fleetSettings(file: string | null, flags: EtcdFlags): Promise<Settings | string> {
  let s: Settings = defaultSettings()
  if (file !== null) {
    const r = await loadConfig(file)
    if (!r.ok) return `${file}: ${r.errors.join('; ')}`
    s = { ...r.config.settings }
  }
  if (flags.etcd !== undefined) s.fleet_etcd = flags.etcd.split(',').map((e) => e.trim()).filter((e) => e !== '')
  if (flags.fleet !== undefined) s.fleet_name = flags.fleet
  if (s.fleet_etcd.length === 0) return 'no etcd to reach: set [tidepool] fleet_etcd in the file or give --etcd'
  return s
}

async function push(file: string, flags: EtcdFlags): Promise<number> {
  const checked = await checkConfigFile(file)
  for (const w of checked.warnings) process.stdout.write(`warning: ${w}\n`)
  if (checked.config === null) {
    for (const e of checked.errors) process.stdout.write(`error: ${e}\n`)
    process.stdout.write(`${file}: ${checked.errors.length} error(s); nothing was pushed\n`)
    return 2
  }
  const s = await fleetSettings(file, flags)
  if (typeof s === 'string') {
    process.stderr.write(`tidepool fleet push: ${s}\n`)
    return 2
  }
  const ini = await parseIniFile(file)
  const entries = sharedEntriesOf(ini)
  const local = [...new Set(ini.entries.filter((e) => (e.section === 'pgbouncer' || e.section === 'tidepool') && findSetting(e.key) !== undefined && !isFleetWideKey(e.key)).map((e) => e.key))]
  if (local.length > 0) process.stdout.write(`node-local, not pushed (each node's own ini says): ${local.join(', ')}\n`)
  const { connectEtcd } = await import('../ha/fleet/member.ts')
  const { pushSharedConfig } = await import('../ha/fleet/shared-config.ts')
  const client = connectEtcd(s, 5_000)
  try {
    const version = await pushSharedConfig(client, s.fleet_name, { pushed_ms: Date.now(), pushed_by: `${os.userInfo().username}@${os.hostname()}`, source: checked.config.file, entries })
    process.stdout.write(`${checked.config.file}: pushed as version ${version} of fleet ${s.fleet_name} (${checked.config.databases.size} database(s), ${checked.config.users.size} user(s), ${entries.length} line(s))\n`)
    return 0
  } catch (err) {
    process.stderr.write(`tidepool fleet push: ${(err as Error).message}\n`)
    return 1
  } finally {
    client.close()
  }
}

async function show(file: string | null, flags: EtcdFlags): Promise<number> {
  const s = await fleetSettings(file, flags)
  if (typeof s === 'string') {
    process.stderr.write(`tidepool fleet show: ${s}\n`)
    return 2
  }
  const { connectEtcd } = await import('../ha/fleet/member.ts')
  const { configKey } = await import('../ha/fleet/shared-config.ts')
  const { nodesPrefix, parseNodeRecord } = await import('../ha/fleet/record.ts')
  const client = connectEtcd(s, 5_000)
  try {
    const raw = await client.get(configKey(s.fleet_name)).string()
    const stored = raw === null ? null : parseSharedConfig(raw)
    const prefix = nodesPrefix(s.fleet_name)
    const nodes = Object.entries(await client.getAll().prefix(prefix).strings()).flatMap(([k, v]) => {
      const r = parseNodeRecord(prefix, k, v)
      return r.ok ? [r.record] : []
    }).sort((a, b) => (a.name < b.name ? -1 : 1))
    const version = stored?.ok === true ? String(stored.record.version) : null
    const rows = nodes.map((n) => ({ node: n.name, address: n.address, config_version: n.config_version, current: n.config_version === version, last_heartbeat: new Date(n.heartbeat_ms).toISOString() }))
    if (flags.json === true) {
      process.stdout.write(JSON.stringify({ fleet: s.fleet_name, config: stored?.ok === true ? stored.record : null, config_error: stored?.ok === false ? stored.reason : null, nodes: rows }, null, 2) + '\n')
      return 0
    }
    if (stored === null) process.stdout.write(`fleet ${s.fleet_name}: no shared config stored; each node runs its own ini\n`)
    else if (!stored.ok) process.stdout.write(`fleet ${s.fleet_name}: the stored shared config is refused by every node: ${stored.reason}\n`)
    else {
      const r = stored.record
      process.stdout.write(`fleet ${s.fleet_name}: shared config version ${r.version}, pushed ${new Date(r.pushed_ms).toISOString()} by ${r.pushed_by} from ${r.source}\n\n${sharedConfigText(r)}\n`)
    }
    process.stdout.write(`${nodes.length} node(s):\n`)
    printRows(rows)
    return 0
  } catch (err) {
    process.stderr.write(`tidepool fleet show: ${(err as Error).message}\n`)
    return 1
  } finally {
    client.close()
  }
}

async function command(cmd: string, args: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: CONSOLE_OPTIONS })
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`)
    return 2
  }
  if (parsed.positionals.length > 1) {
    process.stderr.write(`${USAGE}\n`)
    return 2
  }
  const db = parsed.positionals[0]
  const client = consoleClient(parsed.values)
  try {
    await client.connect()
    // The console's words: bare, or in double quotes.
    const arg = db === undefined ? '' : /^[A-Za-z0-9_]+$/.test(db) ? ` ${db}` : ` "${db.replaceAll('"', '""')}"`
    const r = await client.query(`FLEET ${cmd.toUpperCase()}${arg}`)
    const rows = r.rows as Array<Record<string, unknown>>
    printRows(rows)
    return rows.every((row) => row.outcome === 'ok') ? 0 : 1
  } catch (err) {
    process.stderr.write(`tidepool fleet ${cmd}: ${(err as Error).message}\n`)
    return 1
  } finally {
    await client.end().catch(() => {})
  }
}

async function switchover(args: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: { to: { type: 'string' }, timeout: { type: 'string' }, ...CONSOLE_OPTIONS } })
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`)
    return 2
  }
  const sql = switchoverSql(parsed.positionals, parsed.values)
  if (sql === null) {
    process.stderr.write(`${USAGE}\n`)
    return 2
  }
  const client = consoleClient(parsed.values)
  try {
    await client.connect()
    printRows((await client.query(`FLEET ${sql}`)).rows as Array<Record<string, unknown>>)
    return 0
  } catch (err) {
    process.stderr.write(`tidepool fleet switchover: ${(err as Error).message}\n`)
    return 1
  } finally {
    await client.end().catch(() => {})
  }
}
