// Debian's Chromium (/usr/bin/chromium, installed by .ci/run), driven by playwright-core, headless
// with a fresh profile that is removed afterwards. Never downloads a browser.
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'

export interface Browser {
  context: BrowserContext
  close(): Promise<void>
}

export async function launchChromium(viewport = { width: 1400, height: 900 }): Promise<Browser> {
  const profile = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  return {
    context,
    close: async () => {
      await context.close()
      fs.rmSync(profile, { recursive: true, force: true })
    },
  }
}
