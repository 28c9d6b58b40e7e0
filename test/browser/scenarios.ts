// What the browser client must do, run in each browser by chromium.test.ts and firefox.test.ts.
import type { Browser, BrowserContext, Page } from 'puppeteer-core'
import type { Test } from 'tap'
import { ADMIN, get, mint, PUBLISHER, post, serve, sleep } from '../helper.js'
import { published, type Snapshot, snapshot, startClient, waitForTabs } from './browsers.js'

interface Tabs {
  context: BrowserContext
  open(path?: string): Promise<Page>
  /** Uncaught errors in any tab. */
  errors: string[]
}

/**
 * A browser context of its own: Web Locks and BroadcastChannel are per origin and profile, and
 * every tab of one test must be in one context to find the others.
 */
async function tabs(t: Test, browser: Browser, url: string): Promise<Tabs> {
  const context = await browser.createBrowserContext()
  t.teardown(() => context.close())
  const errors: string[] = []
  return {
    context,
    errors,
    async open(path = '/sse-client/') {
      const page = await context.newPage()
      page.setDefaultTimeout(15_000)
      page.on('pageerror', (err) => errors.push(String(err)))
      await page.goto(`${url}${path}`)
      await page.waitForSelector('body[data-ready="true"]')
      return page
    },
  }
}

async function stats(url: string) {
  const res = await get(url, '/api/sse/stats', ADMIN())
  return res.body as {
    totalConnections: number
    anonymousConnections: number
    authenticatedConnections: number
  }
}

async function publish(url: string, event: string, data: unknown, target: Record<string, unknown>) {
  const res = await post(url, '/api/sse', { event, data, ...target }, PUBLISHER())
  if (res.status !== 202) throw new Error(`publish answered ${res.status}: ${JSON.stringify(res.body)}`)
  return res.body as { id: string; delivered: number }
}

/** The published events of one tab: in order, each once, exactly `expected`. */
function expectEvents(t: Test, s: Snapshot, expected: { name: string; data: unknown }[], who: string) {
  const got = published(s)
  t.same(
    got.map((e) => ({ name: e.name, data: e.data })),
    expected,
    `${who} got each event once, in order`,
  )
  t.equal(new Set(got.map((e) => e.id)).size, got.length, `${who}: no id twice`)
}

export async function tenTabsShareOneStream(t: Test, browser: Browser): Promise<void> {
  const { url, app } = await serve(t, { clientRetryMs: 200 })
  const { open, errors } = await tabs(t, browser, url)
  const pages = await Promise.all(Array.from({ length: 10 }, () => open()))
  for (const page of pages) await startClient(page)

  let all = await waitForTabs(pages, (s) => s.state === 'open' && s.share.tabs === 10, 'ten open tabs')
  t.equal(app.sse.size, 1, 'the service holds one stream for ten tabs')
  t.match(await stats(url), { totalConnections: 1 }, "the service's stats show one connection")
  const leaders = all.filter((s) => s.share.leader)
  t.equal(leaders.length, 1, 'one tab leads')
  const leader = leaders[0] as Snapshot
  t.ok(
    all.every((s) => s.share.shared && s.share.leaderTab === leader.share.tabId),
    'every tab knows which tab leads',
  )
  t.ok(
    all.every((s) => s.clientId === leader.clientId && app.sse.getClient(s.clientId ?? '') !== undefined),
    "every tab knows the stream's client id",
  )

  const first = await publish(url, 'greeting', { n: 0 }, { broadcast: true })
  t.equal(first.delivered, 1, 'the broadcast is written to one connection')
  all = await waitForTabs(pages, (s) => published(s).length >= 1, 'the broadcast in every tab')
  await sleep(300)
  all = await Promise.all(pages.map(snapshot))
  all.forEach((s, i) => {
    expectEvents(t, s, [{ name: 'greeting', data: { n: 0 } }], `tab ${i}`)
  })
  t.ok(
    all.every((s) => s.lastEventId === first.id),
    'every tab has the last event id',
  )

  // The leading tab closes: the others elect another, which resumes after the last id.
  const leaderIndex = all.findIndex((s) => s.share.leader)
  const closedAt = Date.now()
  await (pages[leaderIndex] as Page).close()
  const rest = pages.filter((_, i) => i !== leaderIndex)
  // Published while no tab holds the stream: the next leader gets them by resuming.
  for (let n = 1; n <= 5; n++) await publish(url, 'after', { n }, { broadcast: true })
  const taken = await waitForTabs(
    rest,
    (s) => s.state === 'open' && s.share.leaderTab !== null && s.share.leaderTab !== leader.share.tabId,
    'a new leader',
  )
  const newLeader = taken.find((s) => s.share.leader)
  t.ok(newLeader, 'another tab leads')
  const tookOver = Math.max(...(newLeader?.states ?? []).filter((e) => e.state === 'open').map((e) => e.at))
  t.ok(tookOver - closedAt < 2000, `the new leader's stream was open within 2 s (${tookOver - closedAt} ms)`)
  for (let n = 6; n <= 10; n++) await publish(url, 'after', { n }, { broadcast: true })

  const expected = [
    { name: 'greeting', data: { n: 0 } },
    ...Array.from({ length: 10 }, (_, i) => ({ name: 'after', data: { n: i + 1 } })),
  ]
  await waitForTabs(rest, (s) => published(s).length >= expected.length, 'every event in the nine tabs')
  await sleep(300)
  all = await Promise.all(rest.map(snapshot))
  all.forEach((s, i) => {
    expectEvents(t, s, expected, `remaining tab ${i}`)
  })
  t.equal(app.sse.size, 1, 'still one stream')
  await waitForTabs(rest, (s) => s.share.tabs === 9, 'nine tabs counted', 5000)

  // server_disconnect: every tab closes, and none comes back.
  await post(url, '/api/sse/disconnect-all', undefined, ADMIN())
  all = await waitForTabs(rest, (s) => s.state === 'closed', 'every tab closed')
  t.ok(
    all.every((s) => s.states.at(-1)?.detail.reason === 'server_disconnect'),
    'each tab says the server disconnected it',
  )
  await sleep(1000)
  t.equal(app.sse.size, 0, 'no tab reconnected (the retry hint is 200 ms)')
  t.same(errors, [], 'no uncaught errors in the tabs')
}

export async function tokenRefresh(t: Test, browser: Browser): Promise<void> {
  const { url, app } = await serve(t, { clientRetryMs: 500, devLogin: true })
  const { open, errors } = await tabs(t, browser, url)
  const pages = [await open(), await open()]
  const login = { sub: 'carol', expiresInSeconds: 3 }
  for (const page of pages) await startClient(page, { login })
  await waitForTabs(pages, (s) => s.state === 'open' && s.share.tabs === 2, 'two open tabs')

  // Events for carol, every 150 ms, until the token has expired and the stream is back.
  let n = 0
  const expiries = (s: Snapshot) =>
    s.events.filter(
      (e) => e.name === 'disconnected' && (e.data as { reason?: string }).reason === 'token_expired',
    )
  const deadline = Date.now() + 15_000
  for (;;) {
    await publish(url, 'tick', { n: ++n }, { userIds: ['carol'] })
    const now = await Promise.all(pages.map(snapshot))
    const back = (s: Snapshot) => s.events.filter((e) => e.name === 'connected').length >= 2
    if ((now.every((s) => expiries(s).length >= 1) && now.some(back)) || Date.now() > deadline) break
    await sleep(150)
  }
  // And more under the new token.
  for (let i = 0; i < 5; i++) {
    await publish(url, 'tick', { n: ++n }, { userIds: ['carol'] })
    await sleep(100)
  }
  const expected = Array.from({ length: n }, (_, i) => ({ name: 'tick', data: { n: i + 1 } }))
  const all = await waitForTabs(pages, (s) => published(s).length >= n, `all ${n} events`)
  await sleep(300)
  const final = await Promise.all(pages.map(snapshot))
  final.forEach((s, i) => {
    expectEvents(t, s, expected, `tab ${i}`)
    t.ok(expiries(s).length >= 1, `tab ${i} saw the token expire`)
    t.equal(s.state, 'open', `tab ${i} is still open`)
  })
  const leader = all.find((s) => s.share.leader) as Snapshot
  t.ok(leader.tokenCalls >= 2, `the leader asked for a new token (${leader.tokenCalls} calls)`)
  const connected = leader.events.filter((e) => e.name === 'connected').map((e) => e.data)
  t.ok(connected.length >= 2, 'the stream was reopened after the expiry')
  t.ok(
    connected.every((c) => (c as { userId?: string }).userId === 'carol'),
    'every stream is carol, never anonymous',
  )
  t.ok(
    connected.slice(1).every((c) => (c as { recovered?: boolean }).recovered === true),
    'each reopened stream resumed from the last event id',
  )
  t.match(await stats(url), { totalConnections: 1, authenticatedConnections: 1, anonymousConnections: 0 })
  t.equal(app.sse.size, 1)
  t.same(errors, [], 'no uncaught errors in the tabs')
}

export async function refusedTokens(t: Test, browser: Browser): Promise<void> {
  const { url, app } = await serve(t, { clientRetryMs: 200, devLogin: true })
  const { open, errors } = await tabs(t, browser, url)
  const expired = mint('dave', { expiresInMs: -60_000 })

  // A token that cannot be refreshed: refused, closed, and never an anonymous stream instead.
  const fixed = await open()
  await startClient(fixed, { token: expired, share: false })
  const [closed] = await waitForTabs([fixed], (s) => s.state === 'closed', 'the refused tab closed')
  t.match(closed?.states.at(-1)?.detail, { status: 401, code: 'SSE_ERR_INVALID_TOKEN' }, 'it says why')

  // A token source whose first token has expired: the 401 makes the client ask again.
  const refreshed = await open()
  await startClient(refreshed, { tokens: [expired], login: { sub: 'dave', expiresInSeconds: 60 } })
  const [ok] = await waitForTabs([refreshed], (s) => s.state === 'open', 'the refreshed tab open')
  t.equal(ok?.tokenCalls, 2, 'the token source was asked again after the 401')
  t.match(ok?.events.find((e) => e.name === 'connected')?.data, { userId: 'dave', anonymous: false })
  await sleep(500)
  t.match(await stats(url), { totalConnections: 1, anonymousConnections: 0 }, 'no anonymous fallback')
  t.equal(app.sse.size, 1)
  t.same(errors, [], 'no uncaught errors in the tabs')
}

export async function withoutSharing(t: Test, browser: Browser): Promise<void> {
  const { url, app } = await serve(t, { clientRetryMs: 500 })
  const { open, errors } = await tabs(t, browser, url)
  const pages = await Promise.all([open(), open(), open(), open()])
  await startClient(pages[0] as Page, { without: 'locks' })
  await startClient(pages[1] as Page, { without: 'broadcast' })
  await startClient(pages[2] as Page, { share: false })
  await startClient(pages[3] as Page)
  let all = await waitForTabs(pages, (s) => s.state === 'open', 'four open tabs')
  t.equal(app.sse.size, 4, 'each tab holds a stream of its own')
  t.same(
    all.map((s) => s.share.shared),
    [false, false, false, true],
    'only the tab that has both Web Locks and BroadcastChannel (and was not told otherwise) shares',
  )
  t.ok(
    all.every((s) => s.share.leader && s.share.tabs === 1),
    'each tab leads a group of one',
  )
  await publish(url, 'solo', { ok: true }, { broadcast: true })
  await waitForTabs(pages, (s) => published(s).length >= 1, 'the broadcast everywhere')
  await sleep(300)
  all = await Promise.all(pages.map(snapshot))
  all.forEach((s, i) => {
    expectEvents(t, s, [{ name: 'solo', data: { ok: true } }], `tab ${i}`)
  })
  t.same(errors, [], 'no uncaught errors in the tabs')
}

export async function testPage(t: Test, browser: Browser): Promise<void> {
  // Anonymous pages may subscribe to public topics only.
  const { url, app } = await serve(t, { clientRetryMs: 500, publicTopics: ['news', 'sports'] })
  const { open, errors } = await tabs(t, browser, url)
  const pages = [await open(), await open()]
  const streamUrls: string[] = []
  for (const page of pages) {
    page.on('request', (request) => {
      if (new URL(request.url()).pathname === '/api/sse') streamUrls.push(request.url())
    })
    // Input goes only to the tab in front (a background tab renders no frames to click on).
    await page.bringToFront()
    await page.type('#topic-input', 'news, sports')
    await page.click('#connect')
  }
  for (const page of pages) await page.waitForSelector('#conn-state[data-state="open"]')
  t.equal(app.sse.size, 1, 'the two pages share one stream')
  t.ok(streamUrls.length >= 1, 'the page opened a stream')
  for (const u of streamUrls)
    t.same(new URL(u).searchParams.getAll('topic'), ['news', 'sports'], 'topics go to the service')

  const text = (page: Page, selector: string) => page.$eval(selector, (el) => el.textContent ?? '')
  for (const page of pages)
    await page.waitForFunction('document.getElementById("tab-count").textContent === "2"')
  const leads = await Promise.all(
    pages.map((p) => p.$eval('#leader', (el) => el.getAttribute('data-leader'))),
  )
  t.same(
    [...leads].sort(),
    ['false', 'true'],
    'one page says it holds the stream, the other that it does not',
  )
  const leaderTab = await pages[leads.indexOf('true')]?.$eval('#leader', (el) => el.getAttribute('data-tab'))
  t.match(await text(pages[leads.indexOf('false')] as Page, '#leader'), `tab ${leaderTab} holds it`)

  // An event name no page was told about, from "another service".
  await publish(url, 'billing.invoice-paid', { invoice: 42 }, { broadcast: true })
  for (const page of pages) {
    await page.waitForSelector('#log li[data-event="billing.invoice-paid"]')
    const shown = await page.$$eval('#log li[data-event="billing.invoice-paid"] pre', (els) =>
      els.map((el) => el.textContent ?? ''),
    )
    t.same(
      shown.map((s) => JSON.parse(s)),
      [{ invoice: 42 }],
      'the page shows an event it was never told about, once',
    )
  }

  // The topics the service confirms, in both pages (the other one learns them from the leader).
  const leader = pages[leads.indexOf('true')] as Page
  const connected = await leader.$eval('#log li[data-event="connected"] pre', (el) => el.textContent ?? '{}')
  const confirmed = (JSON.parse(connected) as { topics?: string[] }).topics
  for (const page of pages) {
    const hidden = await page.$eval('#topics-value', (el) => (el as { hidden?: boolean }).hidden)
    if (confirmed === undefined) {
      t.equal(hidden, true, 'no topics in the connected event: none shown')
    } else {
      t.equal(hidden, false, 'the topics are shown')
      t.equal(await text(page, '#topics'), confirmed.join(', '), 'as the connected event says')
    }
  }
  // An event to a topic reaches both pages.
  const res = await post(
    url,
    '/api/sse',
    { event: 'headline', data: { t: 'hi' }, topics: ['news'] },
    PUBLISHER(),
  )
  t.equal(res.status, 202, 'published to the topic')
  for (const page of pages) await page.waitForSelector('#log li[data-event="headline"]')
  t.same(errors, [], 'no uncaught errors in the pages')
}

export type Scenario = [name: string, run: (t: Test, browser: Browser) => Promise<void>]

/** One stream for many tabs, and the page that shows it. */
export const SHARING: Scenario[] = [
  ['ten tabs share one stream; a new leader takes over without loss or repeats', tenTabsShareOneStream],
  ['the test page: every event by any name, the tabs, the leader, the topics', testPage],
]

/** Tokens, refusals, and tabs on their own. */
export const RECONNECTING: Scenario[] = [
  ['a 3-second token is refreshed and the stream goes on with nothing lost', tokenRefresh],
  ['a refused token: refreshed when it can be, else closed, never anonymous', refusedTokens],
  ['without Web Locks or BroadcastChannel, or with share: false, each tab connects', withoutSharing],
]
