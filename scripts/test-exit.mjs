// Loaded into every test file's process by scripts/run-tests.mjs. A file whose tests are all done
// but which still holds a handle (a timed-out test leaves its clients open) would never exit; this
// exits it a few seconds after its last test. That is what --test-force-exit was for, but
// --test-force-exit exits at once, before the reporter has sent the file's last events to the
// parent, so the run lost the results of a file's last tests. The timer is unref'd: a file that
// exits by itself is not held up.
import { after } from 'node:test'

const GRACE_MS = 5_000

// Only in a test file's own process, not in the runner that spawns them.
if (process.env.NODE_TEST_CONTEXT !== undefined) {
  after(() => {
    setTimeout(() => {
      process.stderr.write(`test-exit: ${process.argv[1] ?? 'a test file'} still held handles ${GRACE_MS / 1000} s after its last test; exiting\n`)
      process.exit()
    }, GRACE_MS).unref()
  })
}
