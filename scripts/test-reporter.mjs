// node:test reporter for `npm test`: Node's spec output, plus the logs the harness attaches to a
// test (diagnostics starting with "[log]"), shown only for tests that failed. node:test cannot
// tell a test whether it failed, so the harness always attaches them and this filter decides.
// Diagnostics follow their test's test:pass/test:fail event, which is what the filter relies on.

import { spec as Spec } from 'node:test/reporters'
import { Readable } from 'node:stream'

export default async function* reporter(source) {
  async function* filtered() {
    let lastFailed = false
    for await (const ev of source) {
      if (ev.type === 'test:pass') lastFailed = false
      else if (ev.type === 'test:fail') lastFailed = true
      else if (ev.type === 'test:diagnostic' && typeof ev.data?.message === 'string' && ev.data.message.startsWith('[log]') && !lastFailed) continue
      yield ev
    }
  }
  yield* Readable.from(filtered()).pipe(new Spec())
}
