import { readdirSync, readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { type AddressInfo, connect, createServer as createTcp } from 'node:net'
import t, { type Test } from 'tap'
import { createPublisher, type NotificationData, PublisherError } from '../../src/client/publisher.js'
import { ADMIN, mint, openStream, PUBLISHER, serve } from '../helper.js'

const BOTH = () => mint('backend', { scopes: ['sse:publish', 'sse:admin'] })

/** A tiny HTTP server whose answers the test scripts, to see what the SDK sends and how it retries. */
async function fakeService(t: Test, handler: (req: IncomingMessage, res: ServerResponse, n: number) => void) {
  let n = 0
  const sockets = new Set<unknown>()
  const seen: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => {
      body += c
    })
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
      handler(req, res, n++)
    })
  })
  server.on('connection', (s) => sockets.add(s))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}`, seen, sockets, server }
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

t.test('the SDK imports nothing from the server or Fastify', async (t) => {
  const dir = new URL('../../src/client/', import.meta.url)
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'))
  t.same(files.sort(), ['publisher.ts', 'types.ts'])
  for (const file of files) {
    const source = readFileSync(new URL(file, dir), 'utf8')
    const all = [...source.matchAll(/^import (type )?[^;']*? from '([^']+)'/gm)]
    const runtime = all.filter((m) => m[1] === undefined).map((m) => m[2])
    t.ok(
      runtime.every((from) => from === 'undici'),
      `${file}: undici only at run time (${runtime.join(', ') || 'nothing'})`,
    )
    const types = all.filter((m) => m[1] !== undefined).map((m) => m[2] as string)
    t.ok(
      types.every((from) => from.startsWith('../sse/') || from.startsWith('./') || from === 'undici'),
      `${file}: type-only imports come from the framework-free core, the SDK itself or undici (${types.join(', ')})`,
    )
  }
})

t.test('against the real service', async (t) => {
  const { url } = await serve(t)
  type Events = { 'order.updated': { orderId: string; status: 'paid' | 'shipped' }; chat: string }
  const publisher = createPublisher<Events>({ url, token: BOTH(), timeoutMs: 5000, retries: 1 })
  t.teardown(() => publisher.close())

  const alice1 = await openStream(url, { token: mint('alice') })
  const alice2 = await openStream(url, { token: mint('alice') })
  const bob = await openStream(url, { token: mint('bob') })
  const anon = await openStream(url)
  const streams = [alice1, alice2, bob, anon]
  t.teardown(() => {
    for (const s of streams) s.close()
  })
  const connected = await Promise.all(streams.map((s) => s.waitFor((e) => e.event === 'connected')))

  t.test('broadcastMessage reaches every stream', async (t) => {
    const result = await publisher.broadcastMessage('order.updated', { orderId: 'o-1', status: 'paid' })
    t.match(result, { id: /\S/, delivered: 4 })
    for (const s of streams) {
      const e = await s.waitFor((e) => e.event === 'order.updated')
      t.same(e.json, { orderId: 'o-1', status: 'paid' })
      t.equal(e.id, result.id)
    }
  })

  t.test('sendToUsers reaches every tab of those users and nobody else', async (t) => {
    const result = await publisher.sendToUsers('chat', 'hi alice', ['alice'])
    t.equal(result.delivered, 2)
    for (const s of [alice1, alice2]) t.equal((await s.waitFor((e) => e.event === 'chat')).json, 'hi alice')
    // A later broadcast has arrived, so an event for bob or anonymous would have arrived first.
    await publisher.broadcastMessage('chat', 'everyone')
    for (const s of [bob, anon]) {
      await s.waitFor((e) => e.event === 'chat' && e.json === 'everyone')
      t.equal(s.named('chat').length, 1, 'only the broadcast')
    }
  })

  t.test('sendNotification sends event notification with title, message, type and timestamp', async (t) => {
    const result = await publisher.sendNotification('bob', 'Build', 'It passed', 'success')
    t.equal(result.delivered, 1)
    const e = await bob.waitFor((e) => e.event === 'notification')
    const data = e.json as NotificationData
    t.match(data, { title: 'Build', message: 'It passed', type: 'success' })
    t.ok(!Number.isNaN(Date.parse(data.timestamp)), 'an ISO timestamp')
    const fallback = await publisher.sendNotification('bob', 'Hi', 'there')
    t.equal(fallback.delivered, 1)
    const second = await bob.waitForCount('notification', 2)
    t.match(second[1]?.json, { type: 'info' }, 'type defaults to info')
  })

  t.test('sendToClients reaches one connection', async (t) => {
    const clientId = String((connected[3]?.json as { clientId?: string } | undefined)?.clientId)
    const result = await publisher.sendToClients('chat', 'just you', [clientId])
    t.equal(result.delivered, 1)
    t.equal((await anon.waitFor((e) => e.json === 'just you')).event, 'chat')
  })

  t.test('stats', async (t) => {
    const stats = await publisher.stats()
    t.match(stats, {
      totalConnections: 4,
      authenticatedConnections: 3,
      anonymousConnections: 1,
      uniqueUsers: 2,
    })
  })

  t.test('errors carry the service status and code, and are not retried', async (t) => {
    const publishOnly = createPublisher({ url, token: PUBLISHER(), retries: 3, retryDelayMs: 1 })
    t.teardown(() => publishOnly.close())
    const denied = await publishOnly.stats().catch((err: unknown) => err)
    t.ok(denied instanceof PublisherError)
    t.match(denied, { statusCode: 403, code: 'SSE_ERR_MISSING_SCOPE', error: 'Forbidden', attempts: 1 })
    const reserved = await publisher.broadcastMessage('heartbeat' as 'chat', 'x').catch((err: unknown) => err)
    t.match(reserved, { statusCode: 400, code: 'SSE_ERR_RESERVED_EVENT', attempts: 1 })
    t.match((reserved as Error).message, /reserved/)
    const badToken = createPublisher({ url, token: 'not.a.jwt', retries: 3 })
    t.teardown(() => badToken.close())
    t.match(await badToken.broadcastMessage('x', 1).catch((err: unknown) => err), {
      statusCode: 401,
      code: 'SSE_ERR_INVALID_TOKEN',
    })
  })

  t.test('a token function is called for each request', async (t) => {
    let calls = 0
    const rotating = createPublisher({
      url: `${url}/`,
      token: async () => {
        calls++
        return ADMIN()
      },
    })
    t.teardown(() => rotating.close())
    await rotating.stats()
    await rotating.stats()
    t.equal(calls, 2)
  })

  t.test('disconnectAll ends every stream', async (t) => {
    t.same(await publisher.disconnectAll(), { disconnected: 4 })
    for (const s of streams) {
      await s.waitForEnd()
      t.match(s.named('disconnected')[0]?.json, { reason: 'server_disconnect' })
    }
  })
})

t.test('requests share keep-alive connections', async (t) => {
  const fake = await fakeService(t, (_req, res) => json(res, 202, { id: '1-0', delivered: 0 }))
  const publisher = createPublisher({ url: fake.url, token: 'tok', connections: 1 })
  t.teardown(() => publisher.close())
  for (let i = 0; i < 5; i++) await publisher.broadcastMessage('e', i)
  t.equal(fake.seen.length, 5)
  t.equal(fake.sockets.size, 1, 'five requests, one socket')
  const first = fake.seen[0]
  t.equal(first?.method, 'POST')
  t.equal(first?.url, '/api/sse')
  t.equal(first?.headers.authorization, 'Bearer tok')
  t.match(first?.headers['content-type'], /^application\/json/)
  t.same(JSON.parse(first?.body ?? ''), { event: 'e', data: 0, broadcast: true })
})

t.test('a path prefix in the url is kept', async (t) => {
  const fake = await fakeService(t, (_req, res) => json(res, 200, { disconnected: 0 }))
  const publisher = createPublisher({ url: `${fake.url}/sse`, token: 'tok' })
  t.teardown(() => publisher.close())
  await publisher.disconnectAll()
  t.equal(fake.seen[0]?.url, '/sse/api/sse/disconnect-all')
})

t.test('503 is retried with backoff, then succeeds', async (t) => {
  const fake = await fakeService(t, (_req, res, n) =>
    n < 2
      ? json(res, 503, {
          statusCode: 503,
          error: 'Service Unavailable',
          message: 'busy',
          code: 'SSE_ERR_SHUTTING_DOWN',
        })
      : json(res, 202, { id: '9-0', delivered: 3 }),
  )
  const publisher = createPublisher({ url: fake.url, token: 'tok', retries: 2, retryDelayMs: 5 })
  t.teardown(() => publisher.close())
  t.same(await publisher.broadcastMessage('e', {}), { id: '9-0', delivered: 3 })
  t.equal(fake.seen.length, 3, 'two retries')
})

t.test('503 past the retries is a PublisherError with the last answer', async (t) => {
  const fake = await fakeService(t, (_req, res) =>
    json(
      res,
      503,
      {
        statusCode: 503,
        error: 'Service Unavailable',
        message: 'full',
        code: 'SSE_ERR_TOO_MANY_CONNECTIONS',
      },
      { 'retry-after': '0' },
    ),
  )
  const publisher = createPublisher({ url: fake.url, token: 'tok', retries: 2, retryDelayMs: 1 })
  t.teardown(() => publisher.close())
  const err = await publisher.broadcastMessage('e', {}).catch((e: unknown) => e)
  t.ok(err instanceof PublisherError)
  t.match(err, { statusCode: 503, code: 'SSE_ERR_TOO_MANY_CONNECTIONS', attempts: 3, message: 'full' })
  t.equal(fake.seen.length, 3)
})

t.test('other statuses are not retried', async (t) => {
  for (const status of [400, 401, 403, 413, 429, 500]) {
    const fake = await fakeService(t, (_req, res) =>
      json(res, status, { statusCode: status, error: 'x', message: 'no', code: `CODE_${status}` }),
    )
    const publisher = createPublisher({ url: fake.url, token: 'tok', retries: 3, retryDelayMs: 1 })
    const err = await publisher.broadcastMessage('e', {}).catch((e: unknown) => e)
    await publisher.close()
    t.match(err, { statusCode: status, code: `CODE_${status}`, attempts: 1 }, `${status}`)
    t.equal(fake.seen.length, 1, `${status} sent once`)
  }
})

t.test('an answer that is not the service error shape still fails clearly', async (t) => {
  const fake = await fakeService(t, (_req, res) => {
    res.writeHead(502, { 'content-type': 'text/html' })
    res.end('<html>bad gateway</html>')
  })
  const publisher = createPublisher({ url: fake.url, token: 'tok', retries: 0 })
  t.teardown(() => publisher.close())
  t.match(await publisher.stats().catch((e: unknown) => e), {
    statusCode: 502,
    code: 'SSE_CLIENT_BAD_RESPONSE',
    message: 'GET api/sse/stats answered 502',
  })
})

t.test('network errors are retried, then reported', async (t) => {
  // A port that was just open and is now closed: connection refused.
  const fake = await fakeService(t, () => {})
  const url = fake.url
  await new Promise<void>((resolve) => fake.server.close(() => resolve()))
  const publisher = createPublisher({ url, token: 'tok', retries: 2, retryDelayMs: 1 })
  t.teardown(() => publisher.close())
  const err = await publisher.broadcastMessage('e', {}).catch((e: unknown) => e)
  t.ok(err instanceof PublisherError)
  t.match(err, { statusCode: null, code: 'SSE_CLIENT_NETWORK', attempts: 3, message: /ECONNREFUSED/ })
  t.match((err as Error).cause, { code: 'ECONNREFUSED' })
})

t.test('a reset connection is retried and the next attempt succeeds', async (t) => {
  const fake = await fakeService(t, (req, res, n) => {
    if (n === 0) req.socket.destroy()
    else json(res, 202, { id: '2-0', delivered: 1 })
  })
  const publisher = createPublisher({ url: fake.url, token: 'tok', retries: 1, retryDelayMs: 1 })
  t.teardown(() => publisher.close())
  t.same(await publisher.broadcastMessage('e', {}), { id: '2-0', delivered: 1 })
  t.equal(fake.seen.length, 2)
})

t.test('a call that is not a publish is not retried after a timeout', async (t) => {
  const fake = await fakeService(t, () => {
    // never answers
  })
  const publisher = createPublisher({ url: fake.url, token: 'tok', timeoutMs: 200, retries: 3 })
  t.teardown(() => publisher.close())
  const err = await publisher.disconnectAll().catch((e: unknown) => e)
  t.match(err, { statusCode: null, code: 'SSE_CLIENT_TIMEOUT', attempts: 1 })
  t.equal(fake.seen.length, 1)
})

t.test(
  'every publish carries a fresh Idempotency-Key; its retries reuse it, after a timeout too',
  async (t) => {
    const fake = await fakeService(t, (_req, res, n) => {
      // The first attempt of each call never answers; the second does.
      if (n % 2 === 0) return
      json(res, 202, { id: `${n}-0`, delivered: 1 })
    })
    const publisher = createPublisher({
      url: fake.url,
      token: 'tok',
      timeoutMs: 200,
      retries: 2,
      retryDelayMs: 1,
    })
    t.teardown(() => publisher.close())
    t.same(await publisher.broadcastMessage('e', {}), { id: '1-0', delivered: 1 })
    t.same(await publisher.publishBatch([{ event: 'e', data: 1, broadcast: true }]), {
      id: '3-0',
      delivered: 1,
    })
    const keys = fake.seen.map((r) => r.headers['idempotency-key'])
    t.match(keys[0], /^[0-9a-f-]{36}$/, 'a UUID')
    t.equal(keys[1], keys[0], 'the retry after a timeout sends the same key')
    t.equal(keys[3], keys[2], 'so does the batch')
    t.not(keys[2], keys[0], 'each call has its own')
    t.equal(fake.seen.length, 4)
  },
)

t.test('a 503 retry reuses the key; a 409 in flight is retried; a key of your own is sent', async (t) => {
  const fake = await fakeService(t, (_req, res, n) => {
    if (n === 0)
      json(res, 503, { statusCode: 503, error: 'x', message: 'busy', code: 'SSE_ERR_BUS_UNAVAILABLE' })
    else if (n === 1)
      json(res, 409, { statusCode: 409, error: 'x', message: 'wait', code: 'SSE_ERR_IDEMPOTENCY_IN_FLIGHT' })
    else json(res, 202, { id: '5-0', delivered: 0 })
  })
  const publisher = createPublisher({ url: fake.url, token: 'tok', retries: 3, retryDelayMs: 1 })
  t.teardown(() => publisher.close())
  t.same(await publisher.publish('e', 1, { topics: ['t'] }, { idempotencyKey: 'order-7-paid' }), {
    id: '5-0',
    delivered: 0,
  })
  t.same(
    fake.seen.map((r) => r.headers['idempotency-key']),
    ['order-7-paid', 'order-7-paid', 'order-7-paid'],
  )
  const other = await fakeService(t, (_req, res) =>
    json(res, 409, { statusCode: 409, error: 'x', message: 'no', code: 'SSE_ERR_TOO_MANY_TOPICS' }),
  )
  const plain = createPublisher({ url: other.url, token: 'tok', retries: 3, retryDelayMs: 1 })
  t.teardown(() => plain.close())
  t.match(await plain.changeSubscriptions({ userIds: ['u'], add: ['t'] }).catch((e: unknown) => e), {
    statusCode: 409,
    attempts: 1,
  })
})

t.test('against the real service: a reply lost on the way back is retried and delivered once', async (t) => {
  const { url } = await serve(t)
  const { port } = new URL(url)
  // A TCP hop that forwards the first request whole but drops its answer and resets the connection.
  let connections = 0
  const hop = createTcp((client) => {
    const first = connections++ === 0
    const upstream = connect(Number(port), '127.0.0.1')
    client.on('data', (c) => upstream.write(c))
    upstream.on('data', (c) => {
      if (first) {
        client.destroy()
        upstream.destroy()
      } else client.write(c)
    })
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
  })
  await new Promise<void>((resolve) => hop.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => hop.close(() => resolve())))
  const stream = await openStream(url)
  await stream.waitFor((e) => e.event === 'connected')
  const publisher = createPublisher({
    url: `http://127.0.0.1:${(hop.address() as AddressInfo).port}`,
    token: PUBLISHER(),
    retries: 2,
    retryDelayMs: 1,
  })
  t.teardown(() => publisher.close())
  const result = await publisher.broadcastMessage('once', { n: 1 })
  const event = await stream.waitFor((e) => e.event === 'once')
  t.equal(result.id, event.id, 'the retry answered the id of the event the first attempt published')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(stream.named('once').length, 1, 'delivered once')
  t.ok(connections >= 2, 'the first answer was lost, a second attempt was made')
  stream.close()
})

t.test('a closed publisher refuses calls; bad urls are refused at once', async (t) => {
  const publisher = createPublisher({ url: 'http://127.0.0.1:9', token: 'tok' })
  await publisher.close()
  await publisher.close()
  t.match(await publisher.stats().catch((e: unknown) => e), { code: 'SSE_CLIENT_CLOSED', attempts: 0 })
  t.throws(() => createPublisher({ url: 'not a url', token: 'x' }), TypeError)
  t.throws(() => createPublisher({ url: 'ftp://example.com', token: 'x' }), TypeError)
})
