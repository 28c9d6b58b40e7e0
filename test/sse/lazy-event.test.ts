import fc from 'fast-check'
import t from 'tap'
import { decodeRaw, valuesOf } from '../../src/bus/redis-entries.js'
import { encodeFrame } from '../../src/sse/frame.js'
import { LazyStoredEvent } from '../../src/sse/lazy-event.js'

const target = { userIds: ['alice'] }

/** An entry as the read script returns it, from what the append script was given. */
function rawEntry(id: string, data: unknown, t: object = target): unknown {
  const [e, d, tt, o] = valuesOf({ event: 'note', data, target: t, origin: 'i:1' } as never)
  return [id, ['e', e, 'd', d, 't', tt, 'o', o]]
}

t.test('a frame built from the stored JSON text is byte for byte the one built from the data', async (t) => {
  // What an instance sent before: the data parsed back from Redis, then serialized again.
  const anyString = fc.string({ unit: 'binary', maxLength: 40 })
  const values = fc.oneof(
    fc.jsonValue(),
    anyString,
    fc.array(anyString, { maxLength: 5 }),
    fc.constantFrom(-0, 1e21, 5e-324, '\u2028\u2029', '\ud800', 'a\r\nb\rc\nd', null),
  )
  fc.assert(
    fc.property(values, (data) => {
      const { event } = decodeRaw(rawEntry('1-0', data))
      if (event === null) return false
      const before = encodeFrame({
        id: '1-0',
        event: 'note',
        data: JSON.parse(JSON.stringify(data) ?? 'null'),
      })
      return new LazyStoredEvent(event).frame.equals(before)
    }),
    { numRuns: 1000 },
  )
  t.pass('1,000 values')
})

t.test('the data is parsed only when asked for, and once', async (t) => {
  const { id, event } = decodeRaw(rawEntry('7-3', { n: 1, s: 'x' }))
  t.equal(id, '7-3')
  if (event === null) throw new Error('not decoded')
  t.equal(event.json, '{"n":1,"s":"x"}')
  t.equal(event.publishedAt, 7)
  t.same(event.target, target)
  t.same(event.data, { n: 1, s: 'x' })
  t.equal(event.data, event.data, 'the same object each time')
})

t.test('an event that reaches nobody is never encoded; once read, the frame is kept', async (t) => {
  let reads = 0
  const source = {
    id: '5-0',
    event: 'note',
    get data() {
      reads++
      return { n: 5 }
    },
    target,
    publishedAt: 5,
  }
  const lazy = new LazyStoredEvent(source)
  t.equal(lazy.id, '5-0')
  t.same(lazy.target, target)
  t.equal(reads, 0, 'nothing read when built')
  const frame = lazy.frame
  t.equal(reads, 1)
  t.equal(lazy.frame, frame, 'the same Buffer afterwards')
  t.equal(reads, 1)
  t.equal(frame.toString(), 'event: note\nid: 5-0\ndata: {"n":5}\n\n')
})

t.test('targets come back exactly as they were written, whatever the ids hold', async (t) => {
  const id = fc.string({ unit: 'binary', maxLength: 12 })
  const ids = fc.array(fc.oneof(id, fc.constantFrom('"', '","', '"]', ']', '\\', '\\"', '"]}', '')), {
    minLength: 1,
    maxLength: 6,
  })
  const targets = fc.oneof(
    ids.map((userIds) => ({ userIds })),
    fc.record({ userIds: ids, topics: ids }),
    fc.record({ clientIds: ids }),
  )
  fc.assert(
    fc.property(targets, (target) => {
      const { event } = decodeRaw(rawEntry('1-0', 1, target))
      return event !== null && JSON.stringify(event.target) === JSON.stringify(target)
    }),
    { numRuns: 2000 },
  )
  t.pass('2,000 targets')
  t.same(decodeRaw(['1-1', ['e', 'x', 'd', '1', 't', '{"u":[""]}']]).event?.target, { userIds: [''] })
  t.same(decodeRaw(['1-2', ['e', 'x', 'd', '1', 't', '{"u":["]}']]).event, null, 'a broken list')
  t.same(
    decodeRaw(['1-3', ['e', 'x', 'd', '1', 't', '{"u":["a"],"c":["b"]}']]).event?.target,
    { userIds: ['a'], clientIds: ['b'] },
    'more than user ids',
  )
})

t.test('entries this service did not write are refused, with their id', async (t) => {
  t.same(decodeRaw(['1-1', ['e', 'x', 'd', 'null']]), { id: '1-1', event: null }, 'no target')
  t.same(
    decodeRaw(['1-2', ['e', 'x', 'd', 'null', 't', '{"broadcast":true}']]).event,
    null,
    'an unknown target',
  )
  t.same(decodeRaw(['1-3', ['e', 'x', 'd', 'null', 't', '{not json']]).event, null, 'a broken target')
  t.same(
    decodeRaw(['1-4', ['e', 'x', 'd', 'null', 't', '{"u":[1]}']]).event,
    null,
    'user ids that are not strings',
  )
  const both = decodeRaw(['1-5', ['e', 'x', 'd', '1', 't', '{"u":["a"],"p":["t/1"]}', 'o', 'z']]).event
  t.same(both?.target, { userIds: ['a'], topics: ['t/1'] })
  t.equal(both?.origin, 'z')
  t.same(decodeRaw(['1-6', ['e', 'x', 'd', '1', 't', '*']]).event?.target, { broadcast: true }, 'no origin')
})
