// What `tidepool bench` tells a person when it cannot go on: one line, no stack. BenchError's
// exitCode is 2 for bad usage (options, a workload file) and 1 for a failure met while running
// (a target that refuses us), as src/main.ts's codes go.

export class BenchError extends Error {
  readonly exitCode: 1 | 2
  constructor(message: string, exitCode: 1 | 2 = 1) {
    super(message)
    this.name = 'BenchError'
    this.exitCode = exitCode
  }
}

export function usageError(message: string): BenchError {
  return new BenchError(message, 2)
}

/** node-postgres errors carry the SQLSTATE in `code`; socket errors a Node code such as ECONNREFUSED. */
export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && code !== '' ? code : 'client'
}

/** The one-line form of a driver error, with its SQLSTATE when the server sent one. */
export function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return describeError(err.errors[0])
  const e = err as { message?: unknown; code?: unknown }
  const message = typeof e?.message === 'string' && e.message !== '' ? e.message : String(err)
  const code = typeof e?.code === 'string' ? e.code : ''
  const firstLine = message.split('\n')[0]
  return /^[0-9A-Z]{5}$/.test(code) ? `${firstLine} (SQLSTATE ${code})` : firstLine
}

/** A connection URL fit to print: the password replaced by '***'. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.toString()
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@')
  }
}
