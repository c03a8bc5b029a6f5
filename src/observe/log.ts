// Log records: a level, a stable event name (noun.past_verb, never renamed once shipped), the
// connection's id and db/user@addr, and a short message. Text lines read like PgBouncer's so
// existing greps keep working; log_format = json writes the same record as one JSON object.
// Must not: format anything for a level that is off (callers check debugEnabled for debug).

import fs from 'node:fs'

export type Level = 'debug' | 'info' | 'warning' | 'error' | 'fatal'

/** What a connection tells the log about itself: its id and db/user@addr. */
export interface LogSubject {
  readonly id: string
  describe(): string
}

export type LogSink = (line: string) => void

/**
 * logfile: each line appended with a blocking write, as PgBouncer writes its log, so a line is in
 * the file before the error it explains reaches a client (a write stream would land it later).
 * `isEchoed` also writes it to stderr. A failed write drops the line, saying so on stderr, rather
 * than stopping the pooler. Throws when the file cannot be opened.
 */
export function fileSink(path: string, isEchoed: boolean): LogSink {
  const fd = fs.openSync(path, 'a')
  return (line) => {
    const text = line + '\n'
    try {
      fs.writeSync(fd, text)
    } catch (err) {
      process.stderr.write(`tidepool: cannot write to logfile ${path}: ${(err as Error).message}\n`)
    }
    if (isEchoed) process.stderr.write(text)
  }
}

const LEVEL_WORD: Record<Level, string> = { debug: 'DEBUG', info: 'LOG', warning: 'WARNING', error: 'ERROR', fatal: 'FATAL' }

export class Logger {
  format: 'text' | 'json' = 'text'
  debugEnabled = false
  sink: LogSink

  constructor(sink: LogSink = (l) => process.stderr.write(l + '\n')) {
    this.sink = sink
  }

  debug(event: string, subject: LogSubject | null, msg: string, fields?: Record<string, unknown>): void {
    if (this.debugEnabled) this.write('debug', event, subject, msg, fields)
  }
  info(event: string, subject: LogSubject | null, msg: string, fields?: Record<string, unknown>): void {
    this.write('info', event, subject, msg, fields)
  }
  warn(event: string, subject: LogSubject | null, msg: string, fields?: Record<string, unknown>): void {
    this.write('warning', event, subject, msg, fields)
  }
  error(event: string, subject: LogSubject | null, msg: string, fields?: Record<string, unknown>): void {
    this.write('error', event, subject, msg, fields)
  }

  write(level: Level, event: string, subject: LogSubject | null, msg: string, fields?: Record<string, unknown>): void {
    const time = new Date().toISOString()
    if (this.format === 'json') {
      const rec: Record<string, unknown> = { time, level, event, pid: process.pid }
      if (subject !== null) {
        rec.conn = subject.id
        rec.peer = subject.describe()
      }
      rec.msg = msg
      if (fields !== undefined) Object.assign(rec, fields)
      this.sink(JSON.stringify(rec))
      return
    }
    let line = `${time} [${process.pid}] ${LEVEL_WORD[level]} `
    if (subject !== null) line += `${subject.id} ${subject.describe()} `
    line += msg
    if (fields !== undefined) {
      for (const k in fields) line += ` ${k}=${String(fields[k])}`
    }
    this.sink(`${line} [${event}]`)
  }
}
