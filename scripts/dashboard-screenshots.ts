// Makes docs/dashboard-overview.png and docs/dashboard-switchover.png: two PostgreSQL servers
// (embedded, as the tests start them), a stand-in Patroni, tidepool with three databases under a
// light load, the dashboard in headless Chromium (/usr/bin/chromium), then a SWITCHOVER clicked
// in the page. Run by hand when the page changes: `npx tsx scripts/dashboard-screenshots.ts`.
// Not part of the test run (the browser test checks the page; this only pictures it).

import { join } from 'node:path'
import type { TestContext } from 'node:test'
import pg from 'pg'
import { startPostgres } from '../test/harness/postgres.ts'
import { startTidepool } from '../test/harness/tidepool.ts'
import { fakePatroni } from '../test/harness/fake-patroni.ts'
import { launchChromium } from '../test/harness/browser.ts'
import { freePort } from '../test/harness/ports.ts'

const TOKEN = 'screenshot-token'
const docs = join(import.meta.dirname, '..', 'docs')
const cleanups: Array<() => unknown> = []
// The harness wants a test context only to register its cleanups.
const t = { after: (fn: () => unknown) => { cleanups.push(fn) }, diagnostic: () => {} } as unknown as TestContext

async function main(): Promise<void> {
  const [a, b] = await Promise.all([startPostgres(), startPostgres()])
  cleanups.push(() => Promise.all([a.stop(), b.stop()]))
  let leader: 'a' | 'b' = 'a'
  const onSwitchover = async (body: { leader: string }) => {
    await new Promise((r) => setTimeout(r, 400))
    leader = body.leader === 'pg-a' ? 'b' : 'a'
    return 200
  }
  const pa = await fakePatroni(() => leader === 'a', 'pg-a', onSwitchover)
  const pb = await fakePatroni(() => leader === 'b', 'pg-b', onSwitchover)
  cleanups.push(() => Promise.all([pa.close(), pb.close()]))
  const httpPort = await freePort()
  const one = (dbname: string) => `host=127.0.0.1 port=${a.port} dbname=${dbname} user=${a.user} password=${a.password}`
  const tp = await startTidepool(t, a, {
    settings: { admin_users: a.user, default_pool_size: 4 },
    databases: {
      app: `host=127.0.0.1,127.0.0.1 port=${a.port},${b.port} dbname=app user=${a.user} password=${a.password} target_session_attrs=read-write patroni_urls=${pa.url},${pb.url}`,
      orders: one('app'),
      reports: one('postgres'),
    },
    tidepool: { health_check_interval_ms: 500, http_listen_port: httpPort, http_token: TOKEN },
  })
  let running = true
  const load = async (db: string, sleepS: number) => {
    const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: db, user: a.user, password: a.password })
    c.on('error', () => {})
    await c.connect()
    while (running) await c.query(`SELECT pg_sleep(${sleepS})`).catch(() => {})
    await c.end().catch(() => {})
  }
  const loops = [
    ...Array.from({ length: 8 }, () => load('app', 0.004)),
    ...Array.from({ length: 6 }, () => load('orders', 0.01)),
    ...Array.from({ length: 2 }, () => load('reports', 0.05)),
  ]
  cleanups.push(async () => {
    running = false
    await Promise.all(loops)
  })

  const browser = await launchChromium({ width: 1400, height: 1000 })
  cleanups.push(() => browser.close())
  const page = await browser.context.newPage()
  await page.goto(`http://127.0.0.1:${httpPort}/`)
  await page.fill('#token', TOKEN)
  await page.click('#login button[type=submit]')
  await page.locator('#main').waitFor({ state: 'visible' })
  await new Promise((r) => setTimeout(r, 20_000)) // a little history for the charts
  await page.screenshot({ path: join(docs, 'dashboard-overview.png'), fullPage: true })

  page.once('dialog', (d) => { void d.accept() })
  await page.click('#databases tr[data-db="app"] button[data-action="switchover"]')
  await page.locator('.switchover[data-db="app"] .phase').nth(4).waitFor({ timeout: 30_000 })
  await new Promise((r) => setTimeout(r, 5_000))
  await page.locator('h2', { hasText: 'Databases' }).scrollIntoViewIfNeeded()
  await page.screenshot({ path: join(docs, 'dashboard-switchover.png'), fullPage: true })
  console.log(`wrote ${join(docs, 'dashboard-overview.png')} and ${join(docs, 'dashboard-switchover.png')}`)
}

try {
  await main()
} finally {
  for (const fn of cleanups.reverse()) await fn()
}
