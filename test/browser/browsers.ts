// The browsers the client is tested in: Debian's Chromium (DevTools protocol) and Debian's Firefox ESR
// (WebDriver BiDi), both driven by puppeteer-core with the installed executable, never a download.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import type { Test } from 'tap'

export interface BrowserKind {
  name: 'chromium' | 'firefox'
  executablePath: string
  install: string
}

export const CHROMIUM: BrowserKind = {
  name: 'chromium',
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  install: 'apt-get install -y chromium (or set CHROMIUM_PATH)',
}

export const FIREFOX: BrowserKind = {
  name: 'firefox',
  executablePath: process.env.FIREFOX_PATH ?? '/usr/bin/firefox-esr',
  install: 'apt-get install -y firefox-esr (or set FIREFOX_PATH)',
}

/** Why the tests of `kind` cannot run here, or null when they can. */
export function missing(kind: BrowserKind): string | null {
  return existsSync(kind.executablePath)
    ? null
    : `no ${kind.name} at ${kind.executablePath}: ${kind.install} to run the browser client tests`
}

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

export function launch(kind: BrowserKind): Promise<Browser> {
  return kind.name === 'firefox'
    ? puppeteer.launch({ browser: 'firefox', executablePath: kind.executablePath, headless: true })
    : puppeteer.launch({
        browser: 'chrome',
        executablePath: kind.executablePath,
        headless: true,
        args: CHROMIUM_ARGS,
      })
}

const root = new URL('../../', import.meta.url)

/**
 * Builds dist/browser/sse-manager.js from the current sources, so that no test runs a stale client.
 * esbuild takes a fraction of a second; the build writes the file atomically, so tests that build
 * at the same time never serve half a file.
 */
export function buildClient(): void {
  execFileSync(process.execPath, ['scripts/build-browser.mjs', '--no-types'], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
  })
}

const HARNESS = readFileSync(new URL('fixtures/harness.js', import.meta.url), 'utf8')

export interface Snapshot {
  state: 'connecting' | 'open' | 'closed'
  clientId: string | null
  lastEventId: string | null
  share: { shared: boolean; tabs: number; leader: boolean; tabId: string; leaderTab: string | null }
  events: { name: string; id: string | null; data: unknown }[]
  states: { state: string; detail: Record<string, unknown>; at: number }[]
  tokenCalls: number
}

export interface StartOptions {
  token?: string
  /** Tokens the token source hands out first (then it mints with `login`). */
  tokens?: string[]
  /** A dev-login body: the token source mints with it. */
  login?: { sub: string; expiresInSeconds: number }
  share?: boolean | string
  topics?: string[]
  /** Hides Web Locks or BroadcastChannel from the client. */
  without?: 'locks' | 'broadcast'
}

/** Runs the browser client in `page` (already on the service's origin). */
export async function startClient(page: Page, options: StartOptions = {}): Promise<void> {
  await page.evaluate(HARNESS)
  await page.evaluate(`harness.start(${JSON.stringify(options)})`)
}

export async function snapshot(page: Page): Promise<Snapshot> {
  return (await page.evaluate('harness.snapshot()')) as Snapshot
}

/** Polls every tab until `check` holds for all of them; fails with what they last showed. */
export async function waitForTabs(
  pages: Page[],
  check: (s: Snapshot) => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<Snapshot[]> {
  const deadline = Date.now() + timeoutMs
  let last: Snapshot[] = []
  while (Date.now() < deadline) {
    last = await Promise.all(pages.map(snapshot))
    if (last.every(check)) return last
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const shown = last.map((s) => ({
    state: s.state,
    why: s.states.at(-1)?.detail,
    share: s.share,
    events: s.events.length,
  }))
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(shown)}`)
}

/** The events a tab got that were published (the service's own control events left out). */
export function published(s: Snapshot): Snapshot['events'] {
  return s.events.filter((e) => !['connected', 'heartbeat', 'disconnected'].includes(e.name))
}

/**
 * Runs `scenarios` in one browser of `kind` (a new context each), or skips them, saying why, when
 * that browser is not installed. One browser per test file: launching Firefox takes seconds.
 */
export async function runIn(
  t: Test,
  kind: BrowserKind,
  scenarios: [string, (t: Test, browser: Browser) => Promise<void>][],
): Promise<void> {
  const why = missing(kind)
  if (why !== null) {
    t.plan(0, why)
    return
  }
  buildClient()
  const browser = await launch(kind)
  t.teardown(() => browser.close())
  for (const [name, run] of scenarios) t.test(name, (t) => run(t, browser))
}
