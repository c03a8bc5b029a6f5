// Every error tidepool itself sends to a client, in one catalog. Texts and SQLSTATEs are
// PgBouncer's where it has one, word for word: client code and runbooks in the wild match them.
// PgBouncer answers most pooler-side failures with 08P01 (protocol_violation) even where
// PostgreSQL would pick a more specific class; we keep 08P01 so existing matching keeps working.
// Must not: include secrets or client-supplied text beyond names PostgreSQL itself would echo.

import { SqlState } from './pg-error.ts'

export interface ClientFailure {
  readonly severity: 'ERROR' | 'FATAL'
  readonly code: string
  readonly message: string
  /** The close reason logged; for most entries the message itself. */
  readonly reason: string
}

function fatal(code: string, message: string, reason = message): ClientFailure {
  return Object.freeze({ severity: 'FATAL', code, message, reason })
}
export const ClientErrors = {
  maxClientConn: fatal(SqlState.ProtocolViolation, 'no more connections allowed (max_client_conn)'),
  // PostgreSQL's text and code for max_connections; sent as a connection is accepted.
  maxLoginClients: fatal(SqlState.TooManyConnections, 'sorry, too many clients already', 'too many clients still logging in (max_login_clients)'),
  queryWaitTimeout: fatal(SqlState.ProtocolViolation, 'query_wait_timeout'),
  queryTimeout: fatal(SqlState.ProtocolViolation, 'query_timeout'),
  serverQueryTimeout: fatal(SqlState.ProtocolViolation, 'query timeout'),
  clientIdleTimeout: fatal(SqlState.ProtocolViolation, 'client_idle_timeout'),
  idleTransactionTimeout: fatal(SqlState.ProtocolViolation, 'idle transaction timeout'),
  transactionTimeout: fatal(SqlState.ProtocolViolation, 'transaction timeout'),
  maxDbClientConnections: fatal(SqlState.ProtocolViolation, 'client connections exceeded (max_db_client_connections)'),
  maxUserClientConnections: fatal(SqlState.ProtocolViolation, 'client connections exceeded (max_user_client_connections)'),
  pqexecDisallowed: fatal(SqlState.ProtocolViolation, 'PQexec disallowed'),
  databaseConfigChanged: fatal(SqlState.ProtocolViolation, 'database configuration changed'),
  clientLoginTimeout: fatal(SqlState.ProtocolViolation, 'client_login_timeout'),
  clientLoginTimeoutServerDown: fatal(SqlState.ProtocolViolation, 'client_login_timeout (server down)'),
  statementModeTransaction: fatal(SqlState.ProtocolViolation, 'transaction blocks not allowed in statement pooling mode'),
  serverConnCrashed: fatal(SqlState.ProtocolViolation, 'server conn crashed?'),
  // PgBouncer 1.24+: the last login error is kept and repeated (before 1.24: "try again later").
  serverLoginRetry: (cached: string) => fatal(SqlState.ProtocolViolation, `server login has been failing, cached error: ${cached} (server_login_retry)`),
  noSuchDatabase: (db: string) => fatal(SqlState.InvalidCatalogName, `no such database: ${db}`),
  unsupportedStartupParameter: (name: string) => fatal(SqlState.ProtocolViolation, `unsupported startup parameter: ${name}`),
  // The `options` startup parameter, PgBouncer 1.20+'s two texts.
  unsupportedStartupOption: (name: string) => fatal(SqlState.ProtocolViolation, `unsupported startup parameter in options: ${name}`),
  unsupportedOptionsForm: fatal(SqlState.ProtocolViolation, "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed"),
  protocolViolation: (what: string) => fatal(SqlState.ProtocolViolation, what),
  authTypeNotSupported: (t: string) => fatal(SqlState.InvalidAuthorizationSpecification, `auth_type ${t} is not supported by this build yet`),
  shuttingDown: fatal(SqlState.AdminShutdown, 'pooler is shutting down'),
  /** An online restart's deadline passed with this client still busy (or on the console): the new process serves. */
  takeoverDone: fatal(SqlState.AdminShutdown, 'pooler restarted: reconnect to reach the new process', 'online restart deadline'),
  // SHUTDOWN WAIT_FOR_SERVERS (SIGINT): a client that asks for a server meanwhile.
  serverShuttingDown: fatal(SqlState.ProtocolViolation, 'server shutting down'),
  sslRequired: fatal(SqlState.InvalidAuthorizationSpecification, 'SSL required'),
  consoleNotAllowed: fatal(SqlState.ProtocolViolation, 'not allowed'),
  // PostgreSQL's own texts for hba and certificate logins (28000 invalid_authorization_specification).
  hbaNoEntry: (what: string) => fatal(SqlState.InvalidAuthorizationSpecification, `no pg_hba.conf entry for ${what}`),
  hbaRejects: (what: string) => fatal(SqlState.InvalidAuthorizationSpecification, `pg_hba.conf rejects connection for ${what}`),
  // PgBouncer's text (and its default 08P01) for a trust login by a user neither auth_file nor auth_query knows.
  trustUnknownUser: (user: string) => fatal(SqlState.ProtocolViolation, '"trust" authentication failed', `"trust" authentication failed: no such user: ${user}`),
  certAuthFailed: (user: string, reason?: string) => fatal(SqlState.InvalidAuthorizationSpecification, `certificate authentication failed for user "${user}"`, reason),
  clientCertRequired: fatal(SqlState.InvalidAuthorizationSpecification, 'connection requires a valid client certificate'),
  // hba clientcert=verify-full with a CN that is not the user: PostgreSQL answers with its
  // method's failure text and keeps the reason for its log.
  certNameMismatch: (user: string, method: 'trust' | 'password') => method === 'trust'
    ? fatal(SqlState.InvalidAuthorizationSpecification, `"trust" authentication failed for user "${user}"`, 'certificate validation (clientcert=verify-full) failed: CN mismatch')
    : fatal(SqlState.InvalidPassword, `password authentication failed for user "${user}"`, 'certificate validation (clientcert=verify-full) failed: CN mismatch'),
  databaseRemoved: fatal(SqlState.ProtocolViolation, 'database removed'),
  killedByAdmin: fatal(SqlState.ProtocolViolation, 'client killed by admin (KILL_CLIENT)'),
  databaseDisabled: (db: string) => fatal(SqlState.ProtocolViolation, `database does not allow connections: ${db}`),
  internalError: fatal(SqlState.InternalError, 'tidepool internal error; the pooler log has the details', 'internal error'),
} as const
