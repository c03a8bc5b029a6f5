// The OS user id of the process at the other end of a unix socket connection, as the kernel
// recorded it at connect() (SO_PEERCRED; PgBouncer calls getpeereid()). Node has no API for it and
// tidepool takes no native addon, so a short-lived perl (part of every Debian system: perl-base is
// Essential) is handed a duplicate of the socket as its fd 3 and asks the kernel. The socket file's
// owner or mode says nothing about who connected, so no such guess stands in when perl is missing:
// the answer is then "unknown", and the caller falls back to an ordinary login.
// Must not: read or write the socket (the child only asks getsockopt), or run for TCP or TLS sockets.

import { spawn } from 'node:child_process'
import type net from 'node:net'

export type PeerUid = { uid: number } | { uid: null; why: string }

// fd 3 is the client socket; the uid is the second int of struct ucred { pid, uid, gid }.
const PERL_SCRIPT = 'open(my $s, "+<&=", 3) or exit 2; my $c = getsockopt($s, SOL_SOCKET, SO_PEERCRED) or exit 3; my (undef, $uid) = unpack("i3", $c); print "$uid\\n"'
/** perl starts in tens of milliseconds; a login must not wait on a stuck child longer than this. */
const TIMEOUT_MS = 5_000

/** The peer's uid of a plain unix socket connection, or why it cannot be known here. */
export function peerUid(socket: net.Socket, timeoutMs = TIMEOUT_MS): Promise<PeerUid> {
  if (process.platform !== 'linux') return Promise.resolve({ uid: null, why: `SO_PEERCRED is not read on ${process.platform}` })
  return new Promise((resolve) => {
    let out = ''
    let isDone = false
    const done = (r: PeerUid): void => {
      if (isDone) return
      isDone = true
      resolve(r)
    }
    let child
    try {
      child = spawn('perl', ['-MSocket', '-e', PERL_SCRIPT], { stdio: ['ignore', 'pipe', 'ignore', socket], timeout: timeoutMs, killSignal: 'SIGKILL' })
    } catch (err) {
      // A socket closed meanwhile has no descriptor left to hand over.
      return done({ uid: null, why: `cannot run perl to read SO_PEERCRED: ${(err as Error).message}` })
    }
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (d: string) => { out += d })
    child.on('error', (err) => done({ uid: null, why: `cannot run perl to read SO_PEERCRED: ${err.message}` }))
    child.on('close', (code, signal) => {
      const uid = /^\d+\n$/.test(out) ? Number(out) : NaN
      if (code === 0 && Number.isSafeInteger(uid)) done({ uid })
      else done({ uid: null, why: signal !== null ? `perl reading SO_PEERCRED was stopped (${signal})` : `perl could not read SO_PEERCRED (exit ${code})` })
    })
  })
}

/** tidepool's own uid (null where the platform has none). */
export function ownUid(): number | null {
  return typeof process.getuid === 'function' ? process.getuid() : null
}
