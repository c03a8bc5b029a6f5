// SQLSTATE codes by PostgreSQL's condition names (src/backend/utils/errcodes.txt), named once here.
// Must not: hold message texts; the texts tidepool sends live in client-errors.ts.

export const SqlState = {
  SuccessfulCompletion: '00000',
  ConnectionException: '08000',
  SqlclientUnableToEstablishSqlconnection: '08001',
  ConnectionFailure: '08006',
  ProtocolViolation: '08P01',
  FeatureNotSupported: '0A000',
  InvalidParameterValue: '22023',
  ActiveSqlTransaction: '25001',
  ReadOnlySqlTransaction: '25006',
  IdleInTransactionSessionTimeout: '25P03',
  InvalidSqlStatementName: '26000',
  InvalidAuthorizationSpecification: '28000',
  InvalidPassword: '28P01',
  InvalidCatalogName: '3D000',
  UndefinedTable: '42P01',
  SyntaxError: '42601',
  InsufficientPrivilege: '42501',
  DuplicatePreparedStatement: '42P05',
  TooManyConnections: '53300',
  ObjectNotInPrerequisiteState: '55000',
  QueryCanceled: '57014',
  AdminShutdown: '57P01',
  CannotConnectNow: '57P03',
  ConfigFileError: 'F0000',
  InternalError: 'XX000',
  // proxy/ (client-conn, server-conn and the modules split from them)
  InFailedSqlTransaction: '25P02',
} as const

/** SQLSTATE classes (the first two characters) matched as a whole. */
export const SqlStateClass = {
  InvalidAuthorizationSpecification: '28',
} as const

export interface PgErrorFields {
  severity: string
  code: string
  message: string
  detail?: string
  hint?: string
  position?: string
  where?: string
  schema?: string
  table?: string
  column?: string
  constraint?: string
  file?: string
  line?: string
  routine?: string
  severityNonLocalized?: string
}
