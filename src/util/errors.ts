// Internal errors carry a stable code that tests and callers match; the message is for people.
// Errors a client sees are PostgreSQL ErrorResponses built elsewhere (proxy/client-errors.ts).

export type TidepoolErrorCode =
  | 'TP_CONFIG_INVALID'
  | 'TP_CONNECT_TIMEOUT'
  | 'TP_CONNECT_FAILED'
  | 'TP_SERVER_LOGIN_FAILED'
  | 'TP_AUTH_UNSUPPORTED'
  | 'TP_AUTH_FAILED'
  | 'TP_PROTOCOL_VIOLATION'
  | 'TP_USAGE'

export class TidepoolError extends Error {
  readonly code: TidepoolErrorCode
  constructor(code: TidepoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = 'TidepoolError'
  }
}
