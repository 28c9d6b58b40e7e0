import t from 'tap'
import { MemoryHistory, type StoredEvent } from '../../src/sse/history.js'

function stored(id: string, publishedAt = 0): StoredEvent {
  return { id, event: 'e', frame: Buffer.from(id), target: { broadcast: true }, publishedAt }
}

const ids = (events: readonly StoredEvent[]) => events.map((e) => e.id)

t.test('an empty history knows nothing', async (t) => {
  const h = new MemoryHistory({ maxEvents: 10, ttlMs: 0 })
  t.equal(h.size, 0)
  t.equal(h.latestId(), null)
  t.same(h.since('1-0'), { recovered: false, events: [] })
})

t.test('since() returns what came after, oldest first', async (t) => {
  const h = new MemoryHistory({ maxEvents: 10, ttlMs: 0 })
  for (const id of ['1-0', '1-1', '2-0', '10-0']) h.append(stored(id))
  t.equal(h.size, 4)
  t.equal(h.latestId(), '10-0')
  t.same(h.since('1-0'), { recovered: true, events: h.since('1-0').events })
  t.same(ids(h.since('1-0').events), ['1-1', '2-0', '10-0'])
  t.same(ids(h.since('2-0').events), ['10-0'], 'numeric, not lexicographic, order')
  const newest = h.since('10-0')
  t.equal(newest.recovered, true, 'the newest id: nothing missed')
  t.same(newest.events, [])
  for (const unknown of ['1-2', '3-0', '0-5', '11-0', '9999999999999-0']) {
    t.same(h.since(unknown), { recovered: false, events: [] }, `${unknown} is unknown`)
  }
})

t.test('bounded by count: the oldest events are pushed out', async (t) => {
  const h = new MemoryHistory({ maxEvents: 3, ttlMs: 0 })
  for (let i = 0; i < 5; i++) h.append(stored(`${i}-0`))
  t.equal(h.size, 3)
  t.equal(h.latestId(), '4-0')
  t.same(ids(h.since('2-0').events), ['3-0', '4-0'])
  t.same(h.since('1-0').recovered, true, 'the last id pushed out: every later event is still here')
  t.same(ids(h.since('1-0').events), ['2-0', '3-0', '4-0'])
  t.same(h.since('0-0'), { recovered: false, events: [] }, 'older than that: 1-0 is lost')
})

t.test('the ring stays correct across many wrap-arounds', async (t) => {
  const h = new MemoryHistory({ maxEvents: 4, ttlMs: 0 })
  for (let i = 1; i <= 23; i++) {
    h.append(stored(`${i}-0`))
    const kept = Array.from({ length: Math.min(i, 4) }, (_, k) => `${i - Math.min(i, 4) + 1 + k}-0`)
    t.equal(h.size, kept.length)
    t.equal(h.latestId(), `${i}-0`)
    for (let k = 0; k < kept.length; k++) {
      t.same(ids(h.since(kept[k] as string).events), kept.slice(k + 1))
    }
  }
})

t.test('bounded by age', async (t) => {
  let now = 1_000
  const h = new MemoryHistory({ maxEvents: 100, ttlMs: 500, now: () => now })
  h.append(stored('1000-0', 1000))
  now = 1200
  h.append(stored('1200-0', 1200))
  now = 1400
  h.append(stored('1400-0', 1400))
  t.equal(h.size, 3)
  now = 1600 // 1000-0 is now 600 ms old
  t.equal(h.size, 2)
  t.same(
    ids(h.since('1000-0').events),
    ['1200-0', '1400-0'],
    'the expired id was the last evicted: recovered',
  )
  t.equal(h.since('1000-0').recovered, true)
  now = 1750 // 1200-0 expired too: whoever holds 1000-0 missed it
  t.same(h.since('1000-0'), { recovered: false, events: [] })
  t.same(ids(h.since('1200-0').events), ['1400-0'])
  now = 5000 // everything expired
  t.equal(h.size, 0)
  t.equal(h.latestId(), '1400-0', 'the newest id is still known after expiry')
  t.same(h.since('1400-0'), { recovered: true, events: [] }, 'holding the newest id: nothing missed')
  t.same(h.since('1200-0'), { recovered: false, events: [] })
})

t.test('expiry also happens on append', async (t) => {
  let now = 0
  const h = new MemoryHistory({ maxEvents: 100, ttlMs: 100, now: () => now })
  for (let i = 0; i < 10; i++) {
    now = i * 50
    h.append(stored(`${now}-0`, now))
  }
  // At 450: events older than 350 are gone, 350, 400, 450 remain.
  t.same(ids(h.since('300-0').events), ['350-0', '400-0', '450-0'])
  t.equal(h.size, 3)
})

t.test('maxEvents 0 keeps nothing but still knows the newest id', async (t) => {
  const h = new MemoryHistory({ maxEvents: 0, ttlMs: 0 })
  h.append(stored('1-0'))
  h.append(stored('2-0'))
  t.equal(h.size, 0)
  t.equal(h.latestId(), '2-0')
  t.same(h.since('2-0'), { recovered: true, events: [] })
  t.same(h.since('1-0'), { recovered: false, events: [] })
})

t.test('returned windows are not views of the ring', async (t) => {
  const h = new MemoryHistory({ maxEvents: 3, ttlMs: 0 })
  for (let i = 1; i <= 3; i++) h.append(stored(`${i}-0`))
  const window = h.since('1-0')
  for (let i = 4; i <= 6; i++) h.append(stored(`${i}-0`))
  t.same(ids(window.events), ['2-0', '3-0'], 'a window taken earlier does not change')
})

t.test('HISTORY_MAX_BYTES: the history is bounded by bytes, oldest out first', async (t) => {
  const { loadConfig } = await import('../../src/config.js')
  const { SseManager } = await import('../../src/sse/manager.js')
  const config = loadConfig({})
  t.equal(config.historyMaxBytes, 64 * 1024 * 1024, 'default 64 MiB')
  const history = new MemoryHistory({
    maxEvents: config.historySize,
    maxBytes: config.historyMaxBytes,
    ttlMs: config.historyTtlMs,
  })
  const manager = new SseManager({
    heartbeatIntervalMs: 0,
    cleanupIntervalMs: 0,
    retryMs: 1000,
    maxBufferedBytes: 1 << 20,
    history,
  })
  t.teardown(() => manager.close())
  const payload = 'x'.repeat(60_000)
  const ids: string[] = []
  for (let i = 0; i < 10_000; i++) ids.push(manager.broadcast('big', { i, payload }).id)
  t.ok(history.bytes <= config.historyMaxBytes, `${history.bytes} bytes held after 10,000 x 60 KB`)
  t.ok(history.size > 1000 && history.size < 1200, `${history.size} events kept (about 64 MiB / 60 KB)`)
  t.equal(history.latestId(), ids[9999])
  t.same(history.since(ids[0] as string), { recovered: false, events: [] }, 'a dropped id is not recovered')
  const kept = history.since(ids[9999 - history.size] as string)
  t.equal(kept.recovered, true, 'the id just before the oldest kept one: everything after it is here')
  t.equal(kept.events.length, history.size)
})

t.test('one event larger than HISTORY_MAX_BYTES is not kept, and pushes out the rest', async (t) => {
  const history = new MemoryHistory({ maxEvents: 10, maxBytes: 2000, ttlMs: 0 })
  const make = (id: string, size: number) => ({
    id,
    event: 'e',
    frame: Buffer.alloc(size),
    target: { broadcast: true as const },
    publishedAt: 0,
  })
  history.append(make('1-0', 100))
  history.append(make('2-0', 100))
  t.equal(history.size, 2)
  history.append(make('3-0', 5000))
  t.equal(history.size, 0)
  t.equal(history.bytes, 0)
  t.same(history.since('3-0'), { recovered: true, events: [] }, 'its id: nothing after it was missed')
  t.same(history.since('2-0').recovered, false, 'an older id: 3-0 was missed and is gone')
})

t.test("a target's ids count toward HISTORY_MAX_BYTES: sends to 1,000 users stay within it", async (t) => {
  const gc = (globalThis as { gc?: () => void }).gc
  const maxBytes = 8 * 1_048_576
  const history = new MemoryHistory({ maxEvents: 10_000, maxBytes, ttlMs: 0 })
  // As a publish parses them: every event's ids are strings of their own.
  const userIdsJson = JSON.stringify(
    Array.from({ length: 1000 }, (_, i) => `user-${String(i).padStart(4, '0')}-${'x'.repeat(50)}`),
  )
  gc?.()
  const before = process.memoryUsage().heapUsed
  for (let i = 0; i < 2000; i++) {
    const userIds = JSON.parse(userIdsJson) as string[]
    history.append({
      id: `${i + 1}-0`,
      event: 'e',
      frame: Buffer.from('data: 1\n\n'),
      target: { userIds },
      publishedAt: 0,
    })
  }
  gc?.()
  const grown = process.memoryUsage().heapUsed - before
  t.ok(history.bytes <= maxBytes, `${history.bytes} bytes counted`)
  // Each event holds about 90 KB of ids: 2,000 of them would be about 180 MB.
  t.ok(history.size > 40 && history.size < 100, `${history.size} events kept`)
  if (gc !== undefined) t.ok(grown < 2 * maxBytes, `the heap grew ${(grown / 1_048_576).toFixed(1)} MiB`)
  t.equal(history.latestId(), '2000-0')
  t.equal(history.since(`${2000 - history.size}-0`).events.length, history.size)

  // What was counted for each event is what is given back when it goes.
  history.append({
    id: '2001-0',
    event: 'e',
    frame: Buffer.alloc(maxBytes),
    target: { broadcast: true },
    publishedAt: 0,
  })
  t.equal(history.size, 0)
  t.equal(history.bytes, 0)
})
