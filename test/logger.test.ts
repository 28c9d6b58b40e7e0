import t from 'tap'
import { memoryLogger, PUBLISHER, serve } from './helper.js'

interface Line {
  level: number
  msg: string
  reqId?: string
  req?: { method: string; url: string }
  res?: { statusCode: number }
  responseTime?: number
  err?: { code?: string }
}

const post = (url: string, path: string, body: unknown, token = PUBLISHER()) =>
  fetch(`${url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })

t.test('at info, publishes are logged only when refused; other requests as they come and go', async (t) => {
  const { logger, lines } = memoryLogger('info')
  const { url } = await serve(t, {}, logger)
  const parsed = () => lines.map((l) => JSON.parse(l) as Line)
  const mark = lines.length

  t.equal((await post(url, '/api/sse', { event: 'e', data: 1, broadcast: true })).status, 202)
  t.equal(
    (await post(url, '/api/sse/batch', { events: [{ event: 'e', data: 1, broadcast: true }] })).status,
    202,
  )
  t.equal((await fetch(`${url}/nowhere?token=secret-value`)).status, 404)
  t.equal((await post(url, '/api/sse', { event: 'connected', data: 1, broadcast: true })).status, 400)
  t.equal((await post(url, '/api/sse', { event: 'e', data: 1, broadcast: true }, 'forged')).status, 401)

  const after = parsed().slice(mark)
  const shown = (msg: string) =>
    after.filter((l) => l.msg === msg).map((l) => [l.req?.method, l.req?.url, l.res?.statusCode])
  t.same(
    shown('incoming request'),
    [['GET', '/nowhere?token=[REDACTED]', undefined]],
    'an incoming line for the other request only (its token redacted)',
  )
  t.same(
    shown('request completed'),
    [
      ['GET', '/nowhere?token=[REDACTED]', 404],
      ['POST', '/api/sse', 400],
      ['POST', '/api/sse', 401],
    ],
    'a completion line, with method, URL and status, for the other request and both refusals; none for the two accepted publishes',
  )
  t.ok(
    after
      .filter((l) => l.msg === 'request completed')
      .every((l) => typeof l.responseTime === 'number' && typeof l.reqId === 'string'),
    'each with its time and request id',
  )
  t.same(
    after.filter((l) => l.msg === 'request rejected').map((l) => l.err?.code),
    ['SSE_ERR_RESERVED_EVENT', 'SSE_ERR_INVALID_TOKEN'],
    'each refusal says why, once',
  )
})

t.test('at debug, every request is logged as it comes in and as it completes', async (t) => {
  const { logger, lines } = memoryLogger('debug')
  const { url } = await serve(t, { logLevel: 'debug' }, logger)
  const mark = lines.length
  t.equal((await post(url, '/api/sse', { event: 'e', data: 1, broadcast: true })).status, 202)
  const after = lines.slice(mark).map((l) => JSON.parse(l) as Line)
  t.same(
    after
      .filter((l) => l.msg === 'incoming request' || l.msg === 'request completed')
      .map((l) => [l.msg, l.level]),
    [
      ['incoming request', 20],
      ['request completed', 20],
    ],
  )
})
