// `tidepool bench init`: the workload's tables and data, created in one database.

import { BenchError, describeError } from './errors.ts'
import { connectTo } from './target.ts'
import type { Params, Workload } from './workload.ts'

export async function initWorkload(url: string, workload: Workload, params: Params): Promise<number> {
  const client = await connectTo('database', url)
  const t0 = performance.now()
  try {
    await workload.init(client, params)
  } catch (err) {
    throw new BenchError(`init ${workload.name}: ${describeError(err)}`)
  } finally {
    await client.end().catch(() => {})
  }
  return (performance.now() - t0) / 1000
}
