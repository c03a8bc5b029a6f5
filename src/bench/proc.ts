// CPU and memory of a local PostgreSQL: the postmaster and every process below it, read from
// /proc (Linux). CPU counts the live processes' utime+stime plus the postmaster's cutime+cstime,
// so the time of backends that have exited (a direct run's connection churn) is not lost.
// Memory is the sum of PSS (shared buffers counted once, not once per backend), or of RSS where
// smaps_rollup cannot be read.

import fs from 'node:fs'
import { spawnSync } from 'node:child_process'

export interface ProcSample {
  /** CPU seconds used so far by the tree */
  cpuSeconds: number
  memBytes: number
  processes: number
}

let ticks: number | null = null

function clockTicks(): number {
  if (ticks === null) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
    const n = Number.parseInt(r.stdout ?? '', 10)
    ticks = Number.isInteger(n) && n > 0 ? n : 100
  }
  return ticks
}

interface Stat { comm: string; ppid: number; fields: string[] }

/** /proc/PID/stat split after the command name, which may itself hold spaces and parentheses. */
function readStat(pid: number): Stat | null {
  let s: string
  try {
    s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  const close = s.lastIndexOf(')')
  const fields = s.slice(close + 2).split(' ')
  // fields[0] is the state (stat field 3); field n of proc(5) is fields[n - 3].
  return { comm: s.slice(s.indexOf('(') + 1, close), ppid: Number(fields[1]), fields }
}

const isPostgres = (comm: string): boolean => comm === 'postgres' || comm === 'postmaster'

/** The postmaster of a backend we are connected to, when it runs in this machine's pid namespace. */
export function postmasterOf(backendPid: number): number | null {
  const st = readStat(backendPid)
  if (st === null || !isPostgres(st.comm)) return null
  const parent = readStat(st.ppid)
  return parent !== null && isPostgres(parent.comm) ? st.ppid : null
}

/** --pg-pid: a pid, a data directory or its postmaster.pid file. */
export function resolvePgPid(arg: string): number | null {
  if (/^\d+$/.test(arg)) return readStat(Number(arg)) === null ? null : Number(arg)
  const file = arg.endsWith('postmaster.pid') ? arg : `${arg.replace(/\/$/, '')}/postmaster.pid`
  try {
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8').split('\n')[0], 10)
    return Number.isInteger(pid) && readStat(pid) !== null ? pid : null
  } catch {
    return null
  }
}

function pssBytes(pid: number): number | null {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))
    return m === null ? null : Number(m[1]) * 1024
  } catch {
    return null
  }
}

export function sampleTree(root: number): ProcSample | null {
  const rootStat = readStat(root)
  if (rootStat === null) return null
  const children = new Map<number, number[]>()
  const stats = new Map<number, Stat>([[root, rootStat]])
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name)
    if (!Number.isInteger(pid) || pid === root) continue
    const st = readStat(pid)
    if (st === null) continue
    stats.set(pid, st)
    const list = children.get(st.ppid)
    if (list === undefined) children.set(st.ppid, [pid])
    else list.push(pid)
  }
  const hz = clockTicks()
  const f = rootStat.fields
  let cpuTicks = Number(f[16 - 3]) + Number(f[17 - 3])
  let mem = 0
  let n = 0
  for (const queue = [root]; queue.length > 0;) {
    const pid = queue.pop()!
    const st = stats.get(pid)!
    n++
    cpuTicks += Number(st.fields[14 - 3]) + Number(st.fields[15 - 3])
    mem += pssBytes(pid) ?? Number(st.fields[24 - 3]) * 4096
    for (const c of children.get(pid) ?? []) queue.push(c)
  }
  return { cpuSeconds: cpuTicks / hz, memBytes: mem, processes: n }
}
