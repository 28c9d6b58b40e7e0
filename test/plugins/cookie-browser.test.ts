// AUTH_COOKIE in a real browser (Debian's Chromium through playwright-core): the application's
// backend, on another origin, sets the HttpOnly cookie; its page opens
// `new EventSource(url, { withCredentials: true })`; no request URL ever carries the token.
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type BrowserContext, chromium, type Page } from 'playwright-core'
import t from 'tap'
import { eventually, mint, serve, testConfig } from '../helper.js'

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
const COOKIE = 'sse_token'

/**
 * The application: its page, and its backend's sign-in, which sets the cookie for the stream as
 * the README shows (HttpOnly, SameSite=Strict, Path=/api/sse; Secure is left out on plain http).
 */
function application(): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://app')
    if (url.pathname === '/login') {
      const user = url.searchParams.get('user') ?? 'alice'
      const ttl = Number(url.searchParams.get('ttl') ?? 3600)
      const token = url.searchParams.get('garbage') ? 'not-a-jwt' : mint(user, { expiresInMs: ttl * 1000 })
      res.writeHead(302, {
        location: '/',
        'set-cookie': `${COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/api/sse; Max-Age=${ttl}`,
      })
      res.end()
      return
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end('<!doctype html><title>the application</title><h1>app</h1>')
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)))
}

/** Opens an EventSource in the page and collects its events in `window.sse`. */
function openEventSource(page: Page, url: string, withCredentials: boolean) {
  return page.evaluate(
    ([url, withCredentials]) => {
      const w = globalThis as unknown as {
        sse: { events: { type: string; data: unknown }[]; state?: number }
      }
      w.sse = { events: [] }
      const es = new EventSource(url as string, { withCredentials: withCredentials as boolean })
      for (const type of ['connected', 'disconnected']) {
        es.addEventListener(type, (e) => {
          w.sse.events.push({ type, data: JSON.parse((e as MessageEvent).data) })
          if (type === 'disconnected') es.close()
        })
      }
      es.onerror = () => {
        w.sse.events.push({ type: 'error', data: es.readyState })
        if (es.readyState === EventSource.CLOSED) w.sse.state = es.readyState
      }
    },
    [url, withCredentials] as const,
  )
}

function waitForEvent(page: Page, type: string, timeout = 10_000) {
  return page
    .waitForFunction(
      (type) =>
        (globalThis as unknown as { sse: { events: { type: string }[] } }).sse.events.find(
          (e) => e.type === type,
        ),
      type,
      { timeout },
    )
    .then((handle) => handle.jsonValue() as Promise<{ type: string; data: Record<string, unknown> }>)
}

if (!existsSync(CHROMIUM)) {
  t.plan(0, `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`)
} else {
  t.test(
    'EventSource withCredentials on another origin: the cookie authenticates, no URL has a token',
    async (t) => {
      const app = await application()
      t.teardown(() => new Promise((r) => app.close(r)))
      const appOrigin = `http://127.0.0.1:${(app.address() as AddressInfo).port}`
      const { app: service, url } = await serve(
        t,
        testConfig({ clientRetryMs: 200 }, { AUTH_COOKIE: COOKIE, CORS_ORIGINS: appOrigin }),
      )
      t.not(new URL(url).origin, appOrigin, 'the page and the service are different origins')

      const profile = mkdtempSync(join(tmpdir(), 'sse-cookie-test-'))
      let context: BrowserContext | undefined
      t.teardown(async () => {
        await context?.close()
        rmSync(profile, { recursive: true, force: true })
      })
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: ARGS,
      })
      const page = await context.newPage()
      page.setDefaultTimeout(15_000)
      const requests: { url: string; type: string }[] = []
      page.on('request', (r) => requests.push({ url: r.url(), type: r.resourceType() }))

      // The application's sign-in sets the cookie, then its page opens the stream.
      await page.goto(`${appOrigin}/login?user=alice`)
      t.equal(new URL(page.url()).origin, appOrigin)
      t.notMatch(
        await page.evaluate(
          () => (globalThis as unknown as { document: { cookie: string } }).document.cookie,
        ),
        new RegExp(COOKIE),
        'HttpOnly: the page cannot read it',
      )
      await openEventSource(page, `${url}/api/sse`, true)
      const connected = await waitForEvent(page, 'connected')
      t.match(connected.data, { userId: 'alice', anonymous: false }, 'the stream is alice’s')
      t.ok(await eventually(() => service.sse.size === 1), 'one stream on the service')

      const toService = requests.filter((r) => r.url.startsWith(url))
      t.same(
        toService.map((r) => [r.url, r.type]),
        [[`${url}/api/sse`, 'eventsource']],
        'the one request to the service is the stream, and its URL is just /api/sse',
      )
      t.ok(
        requests.every((r) => !/token=|eyJ[\w-]+\.[\w-]+\./.test(r.url)),
        'no request URL carries a token',
      )
      await page.reload()
      t.ok(await eventually(() => service.sse.size === 0), 'the stream ends with the page')

      // Without withCredentials a cross-origin EventSource sends no cookie: anonymous.
      await openEventSource(page, `${url}/api/sse`, false)
      t.match((await waitForEvent(page, 'connected')).data, { userId: null, anonymous: true })
      await page.reload()

      // A cookie token that expires closes the stream with token_expired, as a header token does.
      await page.goto(`${appOrigin}/login?user=bob&ttl=2`)
      await openEventSource(page, `${url}/api/sse`, true)
      t.match((await waitForEvent(page, 'connected')).data, { userId: 'bob' })
      t.match((await waitForEvent(page, 'disconnected')).data, { reason: 'token_expired' })
      await page.reload()

      // A cookie that is not a valid token is a 401: the EventSource fails, nothing anonymous opens.
      await page.goto(`${appOrigin}/login?garbage=1`)
      await openEventSource(page, `${url}/api/sse`, true)
      await page.waitForFunction(() => (globalThis as unknown as { sse: { state?: number } }).sse.state === 2)
      t.equal(
        (
          await page.evaluate(
            () => (globalThis as unknown as { sse: { events: { type: string }[] } }).sse.events,
          )
        ).filter((e) => e.type === 'connected').length,
        0,
        'never connected',
      )
      t.equal(service.sse.size, 0, 'no stream on the service')
      t.ok(
        requests.every((r) => !/token=|eyJ[\w-]+\.[\w-]+\./.test(r.url)),
        'still no request URL with a token',
      )
    },
  )
}
