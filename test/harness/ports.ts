// Free TCP ports on loopback for tests and benches: the one implementation lives beside the
// embedded PostgreSQL runner, which needs it too. The port is free when returned but not
// reserved, so callers that bind later must be ready to retry on EADDRINUSE.
export { freePort } from '../../src/embedded/postgres.ts'
