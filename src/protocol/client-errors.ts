// Every error tidepool itself sends to a client, in one catalog. Texts and SQLSTATEs are
// PgBouncer's where it has one, word for word: client code and runbooks in the wild match them.
// PgBouncer answers most pooler-side failures with 08P01 (protocol_violation) even where
// PostgreSQL would pick a more specific class; we keep 08P01 so existing matching keeps working.
// Must not: include secrets or client-supplied text beyond names PostgreSQL itself would echo.

export interface ClientFailure {
  readonly severity: 'ERROR' | 'FATAL'
  readonly code: string
  readonly message: string
  /** The close reason logged; for most entries the message itself. */
  readonly reason: string
}

const ProtocolViolation = '08P01'

function fatal(code: string, message: string, reason = message): ClientFailure {
  return Object.freeze({ severity: 'FATAL', code, message, reason })
}
export const ClientErrors = {
  maxClientConn: fatal(ProtocolViolation, 'no more connections allowed (max_client_conn)'),
  queryWaitTimeout: fatal(ProtocolViolation, 'query_wait_timeout'),
  queryTimeout: fatal(ProtocolViolation, 'query_timeout'),
  serverQueryTimeout: fatal(ProtocolViolation, 'query timeout'),
  clientIdleTimeout: fatal(ProtocolViolation, 'client_idle_timeout'),
  idleTransactionTimeout: fatal(ProtocolViolation, 'idle transaction timeout'),
  transactionTimeout: fatal(ProtocolViolation, 'transaction timeout'),
  maxDbClientConnections: fatal(ProtocolViolation, 'client connections exceeded (max_db_client_connections)'),
  maxUserClientConnections: fatal(ProtocolViolation, 'client connections exceeded (max_user_client_connections)'),
  pqexecDisallowed: fatal(ProtocolViolation, 'PQexec disallowed'),
  databaseConfigChanged: fatal(ProtocolViolation, 'database configuration changed'),
  clientLoginTimeout: fatal(ProtocolViolation, 'client_login_timeout'),
  clientLoginTimeoutServerDown: fatal(ProtocolViolation, 'client_login_timeout (server down)'),
  statementModeTransaction: fatal(ProtocolViolation, 'transaction blocks not allowed in statement pooling mode'),
  serverConnCrashed: fatal(ProtocolViolation, 'server conn crashed?'),
  serverLoginRetry: fatal(ProtocolViolation, 'server login has been failing, try again later (server_login_retry)'),
  noSuchDatabase: (db: string) => fatal('3D000', `no such database: ${db}`),
  unsupportedStartupParameter: (name: string) => fatal(ProtocolViolation, `unsupported startup parameter: ${name}`),
  protocolViolation: (what: string) => fatal(ProtocolViolation, what),
  authTypeNotSupported: (t: string) => fatal('28000', `auth_type ${t} is not supported by this build yet`),
  shuttingDown: fatal('57P01', 'pooler is shutting down'),
  sslRequired: fatal('28000', 'SSL required'),
  consoleNotAllowed: fatal(ProtocolViolation, 'not allowed'),
  // PostgreSQL's own texts for hba and certificate logins (28000 invalid_authorization_specification).
  hbaNoEntry: (what: string) => fatal('28000', `no pg_hba.conf entry for ${what}`),
  hbaRejects: (what: string) => fatal('28000', `pg_hba.conf rejects connection for ${what}`),
  certAuthFailed: (user: string) => fatal('28000', `certificate authentication failed for user "${user}"`),
  clientCertRequired: fatal('28000', 'connection requires a valid client certificate'),
  // hba clientcert=verify-full with a CN that is not the user: PostgreSQL answers with its
  // method's failure text and keeps the reason for its log.
  certNameMismatch: (user: string, method: 'trust' | 'password') => method === 'trust'
    ? fatal('28000', `"trust" authentication failed for user "${user}"`, 'certificate validation (clientcert=verify-full) failed: CN mismatch')
    : fatal('28P01', `password authentication failed for user "${user}"`, 'certificate validation (clientcert=verify-full) failed: CN mismatch'),
  databaseRemoved: fatal(ProtocolViolation, 'database removed'),
  killedByAdmin: fatal(ProtocolViolation, 'client killed by admin (KILL_CLIENT)'),
  databaseDisabled: (db: string) => fatal(ProtocolViolation, `database does not allow connections: ${db}`),
  internalError: fatal('XX000', 'tidepool internal error; the pooler log has the details', 'internal error'),
} as const
