// The test page in a real browser: Debian's Chromium driven by playwright-core.
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type BrowserContext, chromium, type Page } from 'playwright-core'
import t from 'tap'
import { buildClient } from '../browser/browsers.js'
import { PUBLISHER, post, serve, sleep } from '../helper.js'

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

if (!existsSync(CHROMIUM)) {
  t.plan(
    0,
    `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH) to run the browser test`,
  )
} else {
  // The page runs the browser client the service serves from dist/: build it from the sources now.
  buildClient()
  t.test('the test page signs in, connects, sends, targets a user and reports disconnect-all', async (t) => {
    // A short retry hint: a page that failed to close its EventSource would be back quickly.
    const { app, url } = await serve(t, { clientRetryMs: 200 })
    const dir = mkdtempSync(join(tmpdir(), 'sse-page-test-'))
    const profile = join(dir, 'profile')
    let context: BrowserContext | undefined
    t.teardown(async () => {
      await context?.close()
      rmSync(profile, { recursive: true, force: true })
    })
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1280, height: 900 },
    })
    const pageErrors: string[] = []

    async function open(): Promise<Page> {
      const page = await (context as BrowserContext).newPage()
      page.setDefaultTimeout(15_000)
      page.on('pageerror', (err) => pageErrors.push(err.message))
      page.on('console', (msg) => {
        if (msg.type() === 'error') pageErrors.push(msg.text())
      })
      const res = await page.goto(`${url}/sse-client`)
      t.equal(res?.status(), 200, 'the page loads')
      t.equal(new URL(page.url()).pathname, '/sse-client/', '/sse-client redirects to the folder')
      await page.waitForSelector('body[data-ready="true"]')
      return page
    }

    async function signIn(page: Page, name: string, publish: boolean, admin: boolean) {
      t.equal(await page.textContent('#auth-status'), 'anonymous', 'anonymous before signing in')
      await page.fill('#dev-name', name)
      await page.setChecked('#dev-scope-publish', publish)
      await page.setChecked('#dev-scope-admin', admin)
      await page.click('#dev-sign-in')
      await page.waitForSelector('#auth-status[data-auth="signed-in"]')
    }

    async function connect(page: Page) {
      await page.click('#connect')
      await page.waitForSelector('#conn-state[data-state="open"]')
      const clientId = await page.textContent('#client-id')
      t.match(clientId, /^[0-9a-f-]{36}$/, 'the page shows its client id')
      return clientId as string
    }

    const entries = (page: Page, event: string) =>
      page.$$eval(`#log li[data-event="${event}"] pre`, (els) => els.map((el) => el.textContent ?? ''))

    // Alice: publisher and admin.
    const alice = await open()
    t.notOk(await alice.isHidden('#dev-login'), 'the dev login is offered')
    t.ok(await alice.isHidden('#send-panel'), 'no send form while anonymous')
    await signIn(alice, 'alice', true, true)
    t.match(await alice.textContent('#auth-status'), /^signed in as alice, scopes sse:publish sse:admin/)
    t.ok(await alice.isVisible('#send-panel'), 'the send form appears with sse:publish')
    t.ok(await alice.isVisible('#admin-panel'), 'the admin panel appears with sse:admin')
    const aliceId = await connect(alice)
    t.match(await alice.textContent('#conn-state'), 'connected as alice')
    t.ok(app.sse.getClient(aliceId), 'the server knows the page by the id it shows')

    // A broadcast sent from the page comes back into its log.
    await alice.fill('#send-event', 'hello')
    await alice.selectOption('#send-target', 'broadcast')
    await alice.fill('#send-data', '{"text":"hi everyone"}')
    await alice.click('#send')
    await alice.waitForSelector('#log li[data-event="hello"]')
    t.same(
      (await entries(alice, 'hello')).map((s) => JSON.parse(s)),
      [{ text: 'hi everyone' }],
    )
    t.match(await alice.textContent('#send-result'), /^Sent hello \(id \S+\) to 1 connection\(s\)$/)
    t.match(await alice.getAttribute('#log li[data-event="hello"]', 'data-id'), /\S/, 'the log shows the id')

    // Bob: a plain subscriber, in a second page.
    const bob = await open()
    await signIn(bob, 'bob', false, false)
    t.match(await bob.textContent('#auth-status'), /^signed in as bob, scopes \(none\)/)
    t.ok(await bob.isHidden('#send-panel'), 'no send form without sse:publish')
    t.ok(await bob.isHidden('#admin-panel'), 'no admin panel without sse:admin')
    await connect(bob)

    // A message for bob reaches bob's page only; neither page was told the name beforehand.
    // (Input waits for a frame, which a background tab draws only now and then: alice to the front.)
    await alice.bringToFront()
    await alice.selectOption('#send-target', 'users')
    await alice.fill('#send-ids', 'bob')
    await alice.fill('#send-event', 'private-note')
    await alice.fill('#send-data', '{"note":"for bob only"}')
    await alice.click('#send')
    await bob.waitForSelector('#log li[data-event="private-note"]')
    t.same(
      (await entries(bob, 'private-note')).map((s) => JSON.parse(s)),
      [{ note: 'for bob only' }],
    )
    t.match(await alice.textContent('#send-result'), /to 1 connection\(s\)$/)
    // Events on one stream keep their order: once a later broadcast is in alice's log, the
    // private note would be there too had it been sent to her.
    await alice.selectOption('#send-target', 'broadcast')
    await alice.fill('#send-event', 'after')
    await alice.fill('#send-data', '{"n":2}')
    await alice.click('#send')
    await alice.waitForSelector('#log li[data-event="after"]')
    await bob.waitForSelector('#log li[data-event="connected"]')
    t.same(await entries(alice, 'private-note'), [], 'alice never saw the note for bob')

    // An event published by another service, under a name no page knows, shows in both.
    await post(
      url,
      '/api/sse',
      { event: 'inventory.restocked', data: { sku: 7 }, broadcast: true },
      PUBLISHER(),
    )
    for (const page of [alice, bob]) {
      await page.waitForSelector('#log li[data-event="inventory.restocked"]')
      t.same(
        (await entries(page, 'inventory.restocked')).map((s) => JSON.parse(s)),
        [{ sku: 7 }],
        'the page shows an event by a name it was never told about, once',
      )
      // Signed in as different users, the two pages cannot share a stream: each holds its own.
      t.equal(await page.textContent('#tab-count'), '1')
      t.equal(await page.getAttribute('#leader', 'data-leader'), 'true')
    }

    // Stats from the admin panel.
    await alice.click('#refresh-stats')
    await alice.waitForSelector('#stats:not(:empty)')
    t.match(JSON.parse((await alice.textContent('#stats')) ?? '{}'), {
      totalConnections: 2,
      authenticatedConnections: 2,
    })

    // The README's screenshot, only when asked for: the test never writes into the repository.
    if (process.env.PAGE_SCREENSHOT_OUT) {
      await alice.screenshot({ path: process.env.PAGE_SCREENSHOT_OUT, fullPage: true })
    }

    // Disconnect-all: both pages say why and stay closed.
    await alice.click('#disconnect-all')
    for (const [name, page] of [
      ['alice', alice],
      ['bob', bob],
    ] as const) {
      await page.waitForSelector('#conn-state[data-state="closed"]')
      t.match(
        await page.textContent('#conn-reason'),
        'Disconnected by the server: All clients have been disconnected by the server (server_disconnect)',
        `${name}'s page says why`,
      )
      t.equal((await entries(page, 'disconnected')).length, 1, `${name}'s log shows the disconnected event`)
      t.ok(await page.isEnabled('#connect'), `${name} can connect again`)
    }
    t.match(await alice.textContent('#admin-result'), 'Disconnected 2 connection(s)')
    // With a 200 ms retry hint, a page that left its EventSource open would be back by now.
    await sleep(1000)
    t.equal(app.sse.size, 0, 'no page reconnected by itself')

    const shot = join(dir, 'test-page.png')
    await alice.screenshot({ path: shot, fullPage: true })
    t.ok(statSync(shot).size > 0, 'a screenshot was saved')
    t.comment(`screenshot: ${shot}`)
    t.same(pageErrors, [], 'no script errors in the pages')
  })
}
