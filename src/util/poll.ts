// Waiting on a condition the pools change as traffic flows (PAUSE, WAIT_CLOSE): check now, then
// every intervalMs. The timer is unref'd so a pending wait never keeps the process alive.
// Must not: be used on the hot path; it is for admin commands that wait on the pools.

/** Resolves true once `isDone()` holds, or false when `timeoutMs` (> 0) runs out first. */
export function pollUntil(isDone: () => boolean, intervalMs: number, timeoutMs = 0): Promise<boolean> {
  const started = Date.now()
  return new Promise((resolve) => {
    const check = () => {
      if (isDone()) return resolve(true)
      if (timeoutMs > 0 && Date.now() - started >= timeoutMs) return resolve(false)
      setTimeout(check, intervalMs).unref()
    }
    check()
  })
}
