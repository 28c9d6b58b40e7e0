import t from 'tap'
import { compareEventIds, createEventIdGenerator } from '../../src/sse/event-id.js'
import { isValidEventId } from '../../src/sse/frame.js'

t.test('compareEventIds orders by milliseconds, then sequence, numerically', async (t) => {
  t.equal(compareEventIds('1-0', '1-0'), 0)
  t.ok(compareEventIds('1-0', '2-0') < 0)
  t.ok(compareEventIds('2-0', '1-0') > 0)
  t.ok(compareEventIds('9-0', '10-0') < 0, 'not lexicographic in milliseconds')
  t.ok(compareEventIds('1-9', '1-10') < 0, 'not lexicographic in sequence')
  t.ok(compareEventIds('1-99', '2-0') < 0, 'milliseconds first')
  t.ok(compareEventIds('1700000000000-5', '1700000000001-0') < 0)
  t.equal(compareEventIds('0-0', '0-0'), 0)
  const sorted = ['10-0', '2-1', '2-0', '1-10', '1-2', '100-0'].sort(compareEventIds)
  t.same(sorted, ['1-2', '1-10', '2-0', '2-1', '10-0', '100-0'])
})

t.test('the generator produces valid, strictly increasing ids', async (t) => {
  let now = 1000
  const gen = createEventIdGenerator(() => now)
  const a = gen.next()
  const b = gen.next()
  t.equal(a, '1000-0')
  t.equal(b, '1000-1', 'same millisecond: the sequence goes up')
  now = 1001
  t.equal(gen.next(), '1001-0', 'a new millisecond restarts the sequence')
  now = 500 // the clock went backwards
  const c = gen.next()
  t.equal(c, '1001-1', 'a clock step back never makes an id go backwards')
  now = 1001
  t.equal(gen.next(), '1001-2')
  now = 1002
  t.equal(gen.next(), '1002-0')
})

t.test(
  'lastTime is the millisecond part of the id made last, also after the clock stepped back',
  async (t) => {
    let now = 2000
    const gen = createEventIdGenerator(() => now)
    t.equal(gen.lastTime, 0, 'no id yet')
    gen.next()
    t.equal(gen.lastTime, 2000)
    now = 1500
    const id = gen.next()
    t.equal(id, '2000-1')
    t.equal(gen.lastTime, 2000, 'the time in the id, not the clock')
    now = 2001
    gen.next()
    t.equal(gen.lastTime, 2001)
  },
)

t.test('real clock: many ids in a row are valid and increasing', async (t) => {
  const gen = createEventIdGenerator()
  let prev = gen.next()
  t.ok(isValidEventId(prev))
  let ok = true
  for (let i = 0; i < 10_000; i++) {
    const next = gen.next()
    if (!isValidEventId(next) || compareEventIds(prev, next) >= 0) ok = false
    prev = next
  }
  t.ok(ok, '10000 ids valid and strictly increasing')
})
