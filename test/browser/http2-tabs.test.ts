// Ten tabs, each with a plain EventSource, in Debian's Chromium: over HTTP/2 (TLS_CERT/TLS_KEY,
// a self-signed certificate made here) all ten share one connection and stream at once; over
// HTTP/1.1 the browser's six connections per host stop the seventh.
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type BrowserContext, chromium, type Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { Agent, setGlobalDispatcher } from 'undici'
import { buildApp } from '../../src/app.js'
import type { Config } from '../../src/config.js'
import { eventually, PUBLISHER, post, sleep, testConfig } from '../helper.js'
import { testCertificate } from '../http2-helper.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
const TABS = 10
/** Chromium's HTTP/1.1 connections per host. */
const HTTP1_LIMIT = 6

// Each tab is a page of the service's own origin, so its EventSource is same-origin.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>tab</title></head><body>
<script>
  window.tab = { state: 'idle', clientId: null, news: [] }
  window.openStream = () => {
    const es = new EventSource('/api/sse')
    window.es = es
    tab.state = 'connecting'
    es.addEventListener('connected', (e) => {
      tab.state = 'open'
      tab.clientId = JSON.parse(e.data).clientId
    })
    es.addEventListener('news', (e) => tab.news.push(JSON.parse(e.data)))
  }
</script>
</body></html>`

interface TabState {
  state: string
  readyState: number
  clientId: string | null
  news: unknown[]
}

/** What the page script puts on its window (the tests have no DOM types). */
interface TabWindow {
  tab: { state: string; clientId: string | null; news: unknown[] }
  es?: { readyState: number; close(): void }
  openStream(): void
  performance: { getEntriesByType(type: string): { nextHopProtocol?: string }[] }
}

const tabState = (page: Page) =>
  page.evaluate(
    (): TabState => ({
      state: (globalThis as unknown as TabWindow).tab.state,
      readyState: (globalThis as unknown as TabWindow).es?.readyState ?? -1,
      clientId: (globalThis as unknown as TabWindow).tab.clientId,
      news: (globalThis as unknown as TabWindow).tab.news,
    }),
  )

async function start(t: Test, overrides: Partial<Config>) {
  const app = await buildApp(testConfig(overrides))
  t.teardown(() => app.close())
  app.get('/tabs-test', async (_request, reply) => reply.type('text/html; charset=utf-8').send(PAGE))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  const scheme = overrides.tls ? 'https' : 'http'
  return { app, url: `${scheme}://127.0.0.1:${address.port}` }
}

/** Waits for a condition in a tab, checked every 50 ms (a background tab's animation frames are throttled). */
const until = (page: Page, condition: () => boolean, timeout = 15_000) =>
  page.waitForFunction(condition, undefined, { polling: 50, timeout }).then(() => undefined)

/** Loads the page in ten tabs first, then opens one EventSource per tab. */
async function openTabs(context: BrowserContext, url: string): Promise<Page[]> {
  const pages = await Promise.all(
    Array.from({ length: TABS }, async () => {
      const page = await context.newPage()
      page.setDefaultTimeout(15_000)
      await page.goto(`${url}/tabs-test`)
      return page
    }),
  )
  for (const page of pages) await page.evaluate(() => (globalThis as unknown as TabWindow).openStream())
  return pages
}

if (!existsSync(CHROMIUM)) {
  t.plan(0, `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH) to run this test`)
} else {
  const tls = await testCertificate()
  setGlobalDispatcher(new Agent({ connect: { ca: tls.cert } }))
  const dir = mkdtempSync(join(tmpdir(), 'sse-http2-tabs-'))
  const context = await chromium.launchPersistentContext(join(dir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    // The certificate is self-signed; this trusts it for the test only.
    ignoreHTTPSErrors: true,
  })
  t.teardown(async () => {
    await context.close()
    rmSync(dir, { recursive: true, force: true })
  })

  t.test('HTTP/2: ten tabs with a plain EventSource all open and all get a broadcast', async (t) => {
    const { app, url } = await start(t, { tls })
    let connections = 0
    app.server.on('session', () => connections++)
    const pages = await openTabs(context, url)
    t.teardown(() => Promise.all(pages.map((p) => p.close())))
    t.equal(
      await pages[0]?.evaluate(
        () =>
          (globalThis as unknown as TabWindow).performance.getEntriesByType('navigation')[0]?.nextHopProtocol,
      ),
      'h2',
      'the page came over HTTP/2',
    )
    await Promise.all(
      pages.map((page) => until(page, () => (globalThis as unknown as TabWindow).tab.state === 'open')),
    )
    t.equal(app.sse.size, TABS, 'ten streams are open on the server')
    t.ok(connections >= 1 && connections < HTTP1_LIMIT, `over ${connections} HTTP/2 connection(s)`)
    const res = await post(url, '/api/sse', { event: 'news', data: { n: 1 }, broadcast: true }, PUBLISHER())
    t.equal(res.status, 202)
    t.equal(res.body.delivered, TABS, 'the broadcast went to all ten')
    await Promise.all(
      pages.map((page) => until(page, () => (globalThis as unknown as TabWindow).tab.news.length === 1)),
    )
    const states = await Promise.all(pages.map(tabState))
    t.ok(
      states.every((s) => s.readyState === 1 && s.state === 'open'),
      'every EventSource is OPEN',
    )
    t.same(
      states.map((s) => s.news),
      Array.from({ length: TABS }, () => [{ n: 1 }]),
      'every tab received the broadcast once',
    )
    t.equal(new Set(states.map((s) => s.clientId)).size, TABS, 'ten distinct connections')
  })

  t.test('HTTP/1.1: the same ten tabs stop at six; the seventh stays connecting', async (t) => {
    const { app, url } = await start(t, {})
    const pages = await openTabs(context, url)
    t.teardown(() => Promise.all(pages.map((p) => p.close())))
    t.equal(
      await pages[0]?.evaluate(
        () =>
          (globalThis as unknown as TabWindow).performance.getEntriesByType('navigation')[0]?.nextHopProtocol,
      ),
      'http/1.1',
      'the page came over HTTP/1.1',
    )
    const opened = pages.slice(0, HTTP1_LIMIT)
    const waiting = pages.slice(HTTP1_LIMIT)
    await Promise.all(
      opened.map((page) => until(page, () => (globalThis as unknown as TabWindow).tab.state === 'open')),
    )
    // Give the others every chance to open: they cannot, all six connections are taken.
    await sleep(1500)
    t.equal(app.sse.size, HTTP1_LIMIT, 'six streams on the server, not ten')
    const before = await Promise.all(waiting.map(tabState))
    t.ok(
      before.every((s) => s.readyState === 0 && s.state === 'connecting'),
      `tabs 7 to ${TABS} are still CONNECTING`,
    )
    const res = await post(url, '/api/sse', { event: 'news', data: { n: 1 }, broadcast: true }, PUBLISHER())
    t.equal(res.body.delivered, HTTP1_LIMIT, 'the broadcast reached six tabs')
    await Promise.all(
      opened.map((page) => until(page, () => (globalThis as unknown as TabWindow).tab.news.length === 1)),
    )
    t.same(
      (await Promise.all(waiting.map(tabState))).map((s) => s.news),
      Array.from({ length: TABS - HTTP1_LIMIT }, () => []),
      'the four waiting tabs got nothing',
    )
    // Queued, not broken: closing one stream frees a connection and the seventh opens.
    await opened[0]?.evaluate(() => (globalThis as unknown as TabWindow).es?.close())
    // Whichever waiting tab the browser hands the freed connection to opens (a loaded machine
    // can take a while): six streams again.
    const oneOpened = await eventually(
      async () => {
        const states = await Promise.all(waiting.map(tabState))
        return states.some((s) => s.state === 'open')
      },
      45_000,
      200,
    )
    t.ok(oneOpened, 'a waiting tab opened on the freed connection')
    t.ok(await eventually(() => app.sse.size === HTTP1_LIMIT), 'six streams again')
  })
}
