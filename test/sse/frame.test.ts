import { createParser, type EventSourceMessage } from 'eventsource-parser'
import fc from 'fast-check'
import t from 'tap'
import {
  EVENT_ID_PATTERN,
  encodeComment,
  encodeFrame,
  encodeFrameText,
  isReservedEvent,
  isValidEventId,
  isValidEventName,
  MAX_EVENT_ID_LENGTH,
  RESERVED_EVENTS,
  toJson,
} from '../../src/sse/frame.js'

interface Parsed {
  events: EventSourceMessage[]
  retries: number[]
  comments: string[]
  errors: unknown[]
}

/** Parses wire text with a spec-compliant parser, optionally fed in small pieces. */
function parse(text: string, chunkSize = 0): Parsed {
  const out: Parsed = { events: [], retries: [], comments: [], errors: [] }
  const parser = createParser({
    onEvent: (e) => out.events.push(e),
    onRetry: (r) => out.retries.push(r),
    onComment: (c) => out.comments.push(c),
    onError: (err) => out.errors.push(err),
  })
  if (chunkSize <= 0) parser.feed(text)
  else for (let i = 0; i < text.length; i += chunkSize) parser.feed(text.slice(i, i + chunkSize))
  return out
}

/** Parses bytes fed one at a time through a streaming UTF-8 decoder, as a network reader would. */
function parseBytes(bytes: Buffer): Parsed {
  const out: Parsed = { events: [], retries: [], comments: [], errors: [] }
  const parser = createParser({
    onEvent: (e) => out.events.push(e),
    onRetry: (r) => out.retries.push(r),
    onError: (err) => out.errors.push(err),
  })
  const decoder = new TextDecoder('utf-8')
  for (let i = 0; i < bytes.length; i++)
    parser.feed(decoder.decode(bytes.subarray(i, i + 1), { stream: true }))
  parser.feed(decoder.decode())
  return out
}

function roundTrip(data: unknown, event = 'message-x', id?: string): EventSourceMessage {
  const text = encodeFrameText({ event, data, id })
  const parsed = parse(text)
  if (parsed.events.length !== 1) throw new Error(`expected one event, got ${parsed.events.length}: ${text}`)
  return parsed.events[0] as EventSourceMessage
}

t.test('a frame is event, data and a blank line', async (t) => {
  t.equal(encodeFrameText({ event: 'hello', data: { a: 1 } }), 'event: hello\ndata: {"a":1}\n\n')
  t.equal(
    encodeFrameText({ event: 'hello', data: 'x', id: '1700000000000-3', retry: 2500 }),
    'retry: 2500\nevent: hello\nid: 1700000000000-3\ndata: "x"\n\n',
    'retry first, then id, then event and data',
  )
})

t.test('encodeFrame returns the UTF-8 bytes of encodeFrameText', async (t) => {
  const fields = { event: 'e', data: { text: 'héllo wörld ✓ 🎉' }, id: '1-2' }
  const buf = encodeFrame(fields)
  t.ok(Buffer.isBuffer(buf))
  t.same(buf, Buffer.from(encodeFrameText(fields), 'utf8'))
})

t.test('retry is a non-negative whole number', async (t) => {
  t.same(parse(encodeFrameText({ event: 'e', data: 1, retry: 1234.9 })).retries, [1234])
  t.same(parse(encodeFrameText({ event: 'e', data: 1, retry: -5 })).retries, [0])
  t.same(parse(encodeFrameText({ event: 'e', data: 1, retry: 0 })).retries, [0])
})

t.test('data is JSON; undefined becomes null', async (t) => {
  t.equal(toJson(undefined), 'null')
  t.equal(toJson({ a: [1, 'b', null] }), '{"a":[1,"b",null]}')
  const e = roundTrip(undefined)
  t.equal(e.data, 'null')
  for (const value of [
    null,
    0,
    -1.5,
    true,
    false,
    '',
    'plain',
    [],
    {},
    [1, [2, [3]]],
    { nested: { a: null } },
  ]) {
    t.same(JSON.parse(roundTrip(value).data), value, `round trip of ${JSON.stringify(value)}`)
  }
})

t.test('line breaks in data never start a field or end the event early', async (t) => {
  const nasty = [
    'line one\nline two',
    'lone\rcarriage\rreturns',
    'windows\r\nline\r\nends',
    'mixed\n\r\r\n\n\rend',
    '\n\nevent: admin\ndata: x',
    '\r\n\r\nevent: admin\r\ndata: x\r\n\r\n',
    '\r\revent: admin\rid: 999-0\rretry: 1\rdata: x\r\r',
    'data: fake\n\nid: 1\n\n',
    '\n',
    '\r',
    '\r\n',
    ':comment\n\n',
  ]
  for (const value of nasty) {
    for (const data of [value, { text: value }, [value, value]]) {
      const parsed = parse(encodeFrameText({ event: 'safe', data, id: '5-0' }))
      t.equal(parsed.events.length, 1, `one event for ${JSON.stringify(data)}`)
      const e = parsed.events[0] as EventSourceMessage
      t.equal(e.event, 'safe', 'the event name is not overridden')
      t.equal(e.id, '5-0', 'the id is not overridden')
      t.same(JSON.parse(e.data), data, 'the payload comes back intact')
      t.same(parsed.retries, [], 'no retry field was injected')
    }
  }
})

t.test('the wire text has exactly one data line per JSON line and no stray CR', async (t) => {
  const text = encodeFrameText({ event: 'e', data: 'a\rb\nc\r\nd' })
  t.notMatch(text, /\r/, 'no raw carriage return reaches the wire')
  t.equal(text.split('\n').filter((l) => l.startsWith('data:')).length, 1)
  t.ok(text.endsWith('\n\n'))
  t.notOk(text.slice(0, -2).includes('\n\n'), 'the only blank line is the terminator')
})

t.test('unicode, NUL and other control characters survive', async (t) => {
  const values = [
    'héllo wörld',
    'emoji 🎉👩‍👩‍👧‍👦 and flags 🇫🇷',
    '日本語のテキスト',
    'right-to-left עברית العربية',
    'combining e\u0301 and zero\u200bwidth',
    'line\u2028separator\u2029paragraph',
    'NUL \u0000 in the middle',
    '\u0000',
    'bell\u0007 tab\t vt\u000b ff\u000c esc\u001b del\u007f',
    '\uFEFFleading byte order mark',
    'lone surrogates \uD800 and \uDFFF',
    'x'.repeat(100_000),
  ]
  for (const [i, value] of values.entries()) {
    const e = roundTrip({ value })
    // The message names the index only: some values would garble the TAP output.
    t.same((JSON.parse(e.data) as { value: string }).value, value, `round trip of value #${i}`)
  }
  const bytes = encodeFrame({ event: 'u', data: { value: 'NUL \u0000 🎉' } })
  t.notOk(bytes.includes(0), 'no NUL byte on the wire')
})

t.test('frames decode the same when the bytes arrive one at a time', async (t) => {
  const frames = [
    encodeFrame({ event: 'a', data: { s: 'multi\nline\rwith 🎉 and é' }, id: '1-0', retry: 1000 }),
    encodeFrame({ event: 'b', data: 'ünïcödé ✓', id: '1-1' }),
    encodeComment('keep-alive'),
    encodeFrame({ event: 'c', data: null, id: '2-0' }),
  ]
  const parsed = parseBytes(Buffer.concat(frames))
  t.same(parsed.errors, [])
  t.same(parsed.retries, [1000])
  t.same(
    parsed.events.map((e) => [e.event, e.id, JSON.parse(e.data)]),
    [
      ['a', '1-0', { s: 'multi\nline\rwith 🎉 and é' }],
      ['b', '1-1', 'ünïcödé ✓'],
      ['c', '2-0', null],
    ],
  )
})

t.test('property: any JSON value round-trips as exactly one event', async (t) => {
  const names = fc.stringMatching(/^[A-Za-z0-9_\-.:/]{1,64}$/)
  fc.assert(
    fc.property(fc.jsonValue(), names, fc.integer({ min: 0, max: 1e9 }), (value, event, ms) => {
      const id = `${ms}-0`
      const text = encodeFrameText({ event, data: value, id })
      const parsed = parse(text, 7)
      if (parsed.events.length !== 1) return false
      const e = parsed.events[0] as EventSourceMessage
      // JSON cannot tell -0 from 0; compare through JSON.
      return e.event === event && e.id === id && e.data === JSON.stringify(value)
    }),
    { numRuns: 300 },
  )
  fc.assert(
    fc.property(fc.string({ unit: 'binary' }), (value) => {
      const parsed = parse(encodeFrameText({ event: 'e', data: value }))
      return parsed.events.length === 1 && JSON.parse((parsed.events[0] as EventSourceMessage).data) === value
    }),
    { numRuns: 300 },
  )
  t.pass('no counterexample')
})

t.test('event and id fields must be one line', async (t) => {
  t.throws(() => encodeFrameText({ event: 'a\nb', data: 1 }), TypeError)
  t.throws(() => encodeFrameText({ event: 'a\rb', data: 1 }), TypeError)
  t.throws(() => encodeFrameText({ event: 'ok', data: 1, id: '1-0\nevent: admin' }), TypeError)
  t.throws(() => encodeFrameText({ event: 'ok', data: 1, id: '1-0\r' }), TypeError)
  t.throws(
    () => encodeFrameText({ event: 'ok', data: 1, id: '1\u00000' }),
    TypeError,
    'NUL in an id is refused',
  )
})

t.test('comments are ignored by parsers and cannot break out', async (t) => {
  const parsed = parse(Buffer.concat([encodeComment('ping\n\nevent: admin\ndata: x\r\r')]).toString('utf8'))
  t.same(parsed.events, [], 'no event fired')
  t.equal(parsed.comments.length, 1)
  t.notMatch(parsed.comments[0] ?? '', /[\r\n]/)
})

t.test('event names: 1 to 64 letters, digits and _ - . : /', async (t) => {
  for (const ok of ['a', 'A', '0', 'hello', 'user.updated', 'ns:event/sub.v1-x_y', 'x'.repeat(64), '_-.:/']) {
    t.ok(isValidEventName(ok), `${ok} is valid`)
  }
  for (const bad of [
    '',
    'x'.repeat(65),
    'with space',
    'tab\tname',
    'new\nline',
    'cr\rname',
    'café',
    'a;b',
    'a,b',
    'a"b',
    'a{b}',
    'emoji🎉',
    '\u0000',
    'trailing\n',
  ]) {
    t.notOk(isValidEventName(bad), `${JSON.stringify(bad)} is invalid`)
  }
})

t.test('the names the service sends itself are reserved', async (t) => {
  t.same([...RESERVED_EVENTS].sort(), ['connected', 'disconnected', 'heartbeat', 'presence', 'subscriptions'])
  for (const name of ['connected', 'heartbeat', 'disconnected', 'subscriptions', 'presence'])
    t.ok(isReservedEvent(name), name)
  for (const name of ['Connected', 'heartbeats', 'notification', 'message'])
    t.notOk(isReservedEvent(name), name)
  for (const name of RESERVED_EVENTS) t.ok(isValidEventName(name), 'reserved names are otherwise valid names')
})

t.test('event ids: <ms>-<seq>, bounded length', async (t) => {
  for (const ok of ['0-0', '1700000000000-0', '1700000000000-42', '1234567890123456-1234567890123456']) {
    t.ok(isValidEventId(ok), ok)
    t.match(ok, EVENT_ID_PATTERN)
  }
  for (const bad of [
    '',
    '1',
    '-1',
    '1-',
    'a-1',
    '1-a',
    '1-1-1',
    ' 1-1',
    '1-1\n',
    '12345678901234567-1',
    'x'.repeat(MAX_EVENT_ID_LENGTH + 1),
    1,
    null,
    undefined,
    {},
  ]) {
    t.notOk(isValidEventId(bad), JSON.stringify(bad) ?? String(bad))
  }
})
