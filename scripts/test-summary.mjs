// node:test reporter for scripts/run-tests.mjs, next to test-reporter.mjs: writes one JSON object
// with what the runner checks after the run. Per file, the tests that ran (passed or failed; not
// skipped or todo; suites are not tests), and every skip by name: tests skipped with { skip } and
// tests that skipped a part of themselves, which say so by a diagnostic starting with "skipped:"
// (e.g. `t.diagnostic('skipped: the psql part, no psql with libpq 17 here')`). A diagnostic
// follows its test's test:pass/test:fail event, so it belongs to the last test that ended.
// A file that defines no test shows up as one passing test named after the file: listed in
// `empty`, not counted as a test.

import { resolve } from 'node:path'

export default async function* summary(source) {
  const files = {}
  const skips = []
  const empty = []
  let last = null
  for await (const ev of source) {
    const d = ev.data ?? {}
    if (ev.type === 'test:pass' || ev.type === 'test:fail') {
      last = { file: d.file ?? null, name: d.name }
      if (d.details?.type === 'suite') continue
      if (ev.type === 'test:pass' && d.nesting === 0 && typeof d.file === 'string' && resolve(d.name) === resolve(d.file)) {
        empty.push(d.file)
        continue
      }
      const f = (files[d.file ?? ''] ??= { ran: 0, failed: 0 })
      if (d.skip !== undefined && d.skip !== false) skips.push({ file: d.file ?? null, name: d.name, reason: d.skip === true ? '' : String(d.skip) })
      else if (d.todo === undefined || d.todo === false) {
        f.ran++
        if (ev.type === 'test:fail') f.failed++
      }
    } else if (ev.type === 'test:diagnostic' && typeof d.message === 'string' && /^skipped:/i.test(d.message) && last !== null) {
      skips.push({ file: last.file, name: last.name, reason: d.message.replace(/^skipped:\s*/i, ''), partial: true })
    }
  }
  yield JSON.stringify({ files, skips, empty }) + '\n'
}
