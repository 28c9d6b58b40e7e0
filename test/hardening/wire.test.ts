import { createParser, type EventSourceMessage } from 'eventsource-parser'
import fc from 'fast-check'
import t from 'tap'
import { EVENT_NAME_PATTERN, encodeFrame, isReservedEvent } from '../../src/sse/frame.js'
import { build, openStream, PUBLISHER, post, serve } from '../helper.js'

function parseAll(bytes: Buffer): { messages: EventSourceMessage[]; text: string } {
  const messages: EventSourceMessage[] = []
  const parser = createParser({ onEvent: (m) => messages.push(m) })
  const text = bytes.toString('utf8')
  parser.feed(text)
  return { messages, text }
}

const nameChars = fc.constantFrom(
  ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/'.split(''),
)
const validName = fc
  .array(nameChars, { minLength: 1, maxLength: 64 })
  .map((chars) => chars.join(''))
  .filter((n) => !isReservedEvent(n))

/** Strings built to break a naive encoder. */
const hostileString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.constantFrom(
    '\n\nevent: admin\ndata: x',
    'line1\rline2',
    'a\r\nb\nc\rd',
    '\r',
    '\n',
    '\r\n\r\n',
    'data: injected',
    'id: 999-0',
    'retry: 1',
    ': comment',
    '\u0000',
    '\uFEFFbom',
    '\u2028\u2029',
    '\uD800',
    'x'.repeat(70_000),
  ),
)

const hostileJson = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    hostileString,
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(hostileString, tie('value'), { maxKeys: 4 }),
  ),
})).value

t.test('any accepted name and any JSON payload round-trips as exactly one event', async (t) => {
  fc.assert(
    fc.property(
      validName,
      hostileJson,
      fc.option(fc.constant('1795806828377-42'), { nil: undefined }),
      (event, data, id) => {
        const bytes = encodeFrame({ event, data, id })
        const { messages, text } = parseAll(bytes)
        if (text.charCodeAt(0) === 0xfeff) return false
        if (messages.length !== 1) return false
        const [m] = messages
        return (
          m !== undefined &&
          m.event === event &&
          m.id === id &&
          JSON.stringify(JSON.parse(m.data)) === JSON.stringify(data)
        )
      },
    ),
    { numRuns: 500 },
  )
  t.pass('500 random events survived the parser')
})

t.test('a heartbeat never fires a message event', async (t) => {
  const { url, app } = await serve(t, { heartbeatIntervalMs: 50 })
  const s = await openStream(url)
  await s.waitForCount('heartbeat', 2)
  app.sse.heartbeat()
  t.equal(s.events.filter((e) => e.event === 'message').length, 0)
  t.notOk(s.text.startsWith('\uFEFF'), 'no BOM')
  t.match(s.text, /^retry: \d+\n/, 'the stream starts with the retry hint')
  s.close()
})

t.test('names the API refuses are 400 and nothing is sent', async (t) => {
  const app = await build(t)
  const token = PUBLISHER()
  const refused = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 80 }).filter((s) => !EVENT_NAME_PATTERN.test(s)),
    fc.constantFrom('', 'x'.repeat(65), 'a b', 'a\nb', 'a\rb', 'é', 'connected', 'heartbeat', 'disconnected'),
  )
  await fc.assert(
    fc.asyncProperty(refused, async (event) => {
      const before = app.sse.stats().eventsPublished
      const res = await app.inject({
        method: 'POST',
        url: '/api/sse',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ event, data: 1, broadcast: true }),
      })
      return (
        res.statusCode === 400 && app.sse.stats().eventsPublished === before && res.json().code !== undefined
      )
    }),
    { numRuns: 300 },
  )
  t.pass('300 refused names')
})

t.test('over real HTTP, hostile payloads arrive intact and alone', async (t) => {
  const { url } = await serve(t, { maxPayloadBytes: 1 << 20 })
  const s = await openStream(url)
  await s.waitFor((e) => e.event === 'connected')
  const samples = fc.sample(hostileJson, 60)
  samples.push('\n\nevent: admin\ndata: x', { nested: '\r\nid: 1\r\n\r\n' }, 'a\u0000b')
  const ids: string[] = []
  for (const data of samples) {
    const res = await post(url, '/api/sse', { event: 'probe', data, broadcast: true }, PUBLISHER())
    if (res.status !== 202) t.fail(`publish answered ${res.status}: ${JSON.stringify(res.body)}`)
    ids.push(res.body.id)
  }
  await s.waitForCount('probe', samples.length)
  const got = s.named('probe')
  t.equal(
    s.events.filter((e) => !['connected', 'probe', 'heartbeat'].includes(e.event)).length,
    0,
    'no injected event',
  )
  t.same(
    got.map((e) => e.id),
    ids,
  )
  t.same(
    got.map((e) => JSON.stringify(e.json)),
    samples.map((d) => JSON.stringify(JSON.parse(JSON.stringify(d) ?? 'null'))),
  )
  s.close()
})
