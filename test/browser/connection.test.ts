// The client's reconnect rules, in Node against a scripted server: Node 20 has the same fetch,
// streams and timers as a browser, and a script can answer each request exactly as a test needs.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { backoff, runConnection } from '../../src/browser/connection.js'
import type { ConnectionState, StateDetail } from '../../src/browser/types.js'

type Answer = (res: ServerResponse) => void

const stream =
  (text: string): Answer =>
  (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.end(text)
  }

const refuse =
  (status: number, code: string, headers: Record<string, string> = {}): Answer =>
  (res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers })
    res.end(JSON.stringify({ statusCode: status, error: 'Error', message: `refused ${status}`, code }))
  }

interface Seen {
  at: number
  authorization: string | undefined
  lastEventId: string | undefined
  url: string
}

/** A server that answers the n-th request with `answers[n]`, and records what each asked. */
async function scripted(t: Test, answers: Answer[]) {
  const seen: Seen[] = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    seen.push({
      at: Date.now(),
      authorization: req.headers.authorization,
      lastEventId: req.headers['last-event-id'] as string | undefined,
      url: req.url ?? '',
    })
    const answer = answers[seen.length - 1] ?? refuse(500, 'OUT_OF_SCRIPT')
    answer(res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}/api/sse?topic=a`, seen }
}

function run(
  url: string,
  token: string | (() => Promise<string>) | undefined,
  signal = new AbortController().signal,
) {
  let last: string | undefined
  const states: [ConnectionState, StateDetail][] = []
  const names: string[] = []
  const done = runConnection(
    {
      url: () => url,
      token,
      lastEventId: () => last,
      onMessage(m) {
        names.push(m.event)
        if (m.id) last = m.id
      },
      onState: (s, d) => states.push([s, d]),
    },
    signal,
  )
  return { done, states, names }
}

const gaps = (seen: Seen[]) => seen.slice(1).map((s, i) => s.at - (seen[i] as Seen).at)

t.test(
  'retry hint, backoff on refusals, a fresh token after token_expired and a 401, no return after server_disconnect',
  async (t) => {
    const { url, seen } = await scripted(t, [
      stream('retry: 100\nevent: connected\ndata: {}\nid: 1-0\n\n'), // then it drops
      refuse(503, 'SSE_ERR_SHUTTING_DOWN'),
      refuse(503, 'SSE_ERR_SHUTTING_DOWN'),
      refuse(503, 'SSE_ERR_SHUTTING_DOWN'),
      stream(
        'event: connected\ndata: {}\n\nevent: note\ndata: 1\nid: 2-0\n\nevent: disconnected\ndata: {"reason":"token_expired"}\n\n',
      ),
      refuse(401, 'SSE_ERR_INVALID_TOKEN'),
      stream('event: disconnected\ndata: {"reason":"server_disconnect","message":"bye"}\n\n'),
    ])
    let calls = 0
    const { done, names } = run(url, async () => `token-${++calls}`)
    const end = await done
    t.same(end, { reason: 'server_disconnect', message: 'bye' }, 'it ends for good after server_disconnect')
    t.equal(seen.length, 7, 'and asks no more')
    t.same(names, ['connected', 'connected', 'note', 'disconnected', 'disconnected'])
    // Lower bounds are the rule; upper bounds leave room for a busy machine but not for the next step.
    const [drop = 0, r1 = 0, r2 = 0, r3 = 0, expired = 0, unauthorized = 0] = gaps(seen)
    t.ok(drop >= 95 && drop < 400, `after a drop it waits the retry hint, 100 ms (${drop})`)
    t.ok(r1 >= 45 && r1 < 300, `then backs off: 50-100 ms (${r1})`)
    t.ok(r2 >= 95 && r2 < 400, `100-200 ms (${r2})`)
    t.ok(r3 >= 195 && r3 < 700, `200-400 ms (${r3})`)
    t.ok(expired < 150, `after token_expired it is back at once (${expired})`)
    t.ok(unauthorized >= 45 && unauthorized < 300, `a 401 for a token just fetched waits (${unauthorized})`)
    t.same(
      seen.map((s) => s.authorization),
      ['token-1', 'token-1', 'token-1', 'token-1', 'token-1', 'token-2', 'token-3'].map((x) => `Bearer ${x}`),
      'a new token after token_expired, and again after the 401',
    )
    t.same(
      seen.map((s) => s.lastEventId),
      [undefined, '1-0', '1-0', '1-0', '1-0', '2-0', '2-0'],
      'every reconnect resumes after the last id',
    )
    t.ok(
      seen.every((s) => s.url === '/api/sse?topic=a'),
      'the same URL, topics included',
    )
  },
)

t.test('refusals that a retry cannot cure end it; a stale token is replaced at once', async (t) => {
  const fixed = await scripted(t, [refuse(401, 'SSE_ERR_INVALID_TOKEN')])
  t.same(
    await run(fixed.url, 'a-string-token').done,
    { status: 401, code: 'SSE_ERR_INVALID_TOKEN', message: 'refused 401' },
    'a 401 for a token it cannot refresh: closed, never anonymous',
  )
  t.equal(fixed.seen.length, 1)
  t.equal(fixed.seen[0]?.authorization, 'Bearer a-string-token')

  const forbidden = await scripted(t, [refuse(403, 'SSE_ERR_TOPIC_FORBIDDEN')])
  t.match(await run(forbidden.url, undefined).done, { status: 403, code: 'SSE_ERR_TOPIC_FORBIDDEN' })
  t.equal(forbidden.seen[0]?.authorization, undefined, 'anonymous when given no token')

  const lifetime = await scripted(t, [
    stream('event: disconnected\ndata: {"reason":"lifetime"}\n\n'),
    stream('event: disconnected\ndata: {"reason":"server_disconnect"}\n\n'),
  ])
  const again = run(lifetime.url, 'same')
  await again.done
  t.ok((gaps(lifetime.seen)[0] ?? 1e9) < 150, 'after lifetime it is back at once, with the same token')
  t.equal(lifetime.seen[1]?.authorization, 'Bearer same')
})

t.test('Retry-After on a 429 is honoured', async (t) => {
  const { url, seen } = await scripted(t, [
    // A 10 ms retry hint first, so that the backoff alone would be far shorter than a second.
    stream('retry: 10\n\n'),
    refuse(429, 'SSE_ERR_RATE_LIMITED', { 'retry-after': '1' }),
    stream('event: disconnected\ndata: {"reason":"server_disconnect"}\n\n'),
  ])
  await run(url, undefined).done
  const waited = gaps(seen)[1] ?? 0
  t.ok(waited >= 995 && waited < 1500, `it waited the second it was told (${waited} ms)`)
})

t.test('close: an abort ends it without another request', async (t) => {
  const { url, seen } = await scripted(t, [
    (res) => res.writeHead(200, { 'content-type': 'text/event-stream' }),
  ])
  const controller = new AbortController()
  const { done, states } = run(url, undefined, controller.signal)
  while (seen.length === 0) await new Promise((resolve) => setTimeout(resolve, 10))
  controller.abort()
  t.equal(await done, undefined, 'aborted, not ended by the server')
  t.equal(seen.length, 1)
  t.same(
    states.map(([s]) => s),
    ['connecting'],
  )
})

t.test('backoff: exponential from the retry hint, capped at 30 s, with jitter', async (t) => {
  for (const failures of [1, 2, 3, 4]) {
    const samples = Array.from({ length: 200 }, () => backoff(1000, failures))
    const top = 1000 * 2 ** (failures - 1)
    t.ok(
      samples.every((d) => d >= top / 2 && d <= top),
      `failure ${failures}: within ${top / 2}-${top} ms`,
    )
    t.ok(new Set(samples).size > 100, 'spread out')
  }
  t.ok(backoff(1000, 20) <= 30_000, 'capped')
})
