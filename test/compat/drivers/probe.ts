// What the Node.js probes share: one JSON line per check on stdout, a failing check reported
// (never a crash of the probe), and only the checks named on the command line run, if any are.

const only = new Set(process.argv.slice(2))

function report(check: string, ok: boolean, detail: string): void {
  process.stdout.write(JSON.stringify({ check, ok, detail }) + '\n')
}

export async function check(name: string, fn: () => Promise<string | void>): Promise<void> {
  if (only.size > 0 && !only.has(name)) return
  try {
    report(name, true, (await fn()) ?? '')
  } catch (err) {
    report(name, false, err instanceof Error ? `${err.message} ${err.stack?.split('\n')[1]?.trim() ?? ''}` : String(err))
  }
}

export function expect(cond: boolean, what: string): void {
  if (!cond) throw new Error(what)
}

/** How a query ended: 'no error', or its SQLSTATE (the message when it has none). */
export async function stateOf(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'no error'
  } catch (err) {
    return (err as { code?: string }).code ?? String(err)
  }
}
