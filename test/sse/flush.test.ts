import { EventEmitter } from 'node:events'
import t from 'tap'
import { SseManager } from '../../src/sse/manager.js'

class Sink extends EventEmitter {
  writes: Buffer[] = []
  writableLength = 0
  writableEnded = false
  destroyed = false
  write(chunk: Buffer) {
    this.writes.push(chunk)
    return true
  }
  end() {
    this.writableEnded = true
  }
  destroy() {
    this.destroyed = true
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve))
const manager = (max = 1 << 20) =>
  new SseManager({ heartbeatIntervalMs: 0, cleanupIntervalMs: 0, retryMs: 1000, maxBufferedBytes: max })

t.test('a burst to many clients is joined once and the same bytes are written to each', async (t) => {
  const m = manager()
  t.teardown(() => m.close())
  const sinks = Array.from({ length: 4 }, () => new Sink())
  for (const s of sinks) m.connect(s, { userId: null })
  for (const s of sinks) s.writes.length = 0
  for (let i = 0; i < 3; i++) m.broadcast('b', { i })
  await tick()
  for (const s of sinks) t.equal(s.writes.length, 1, 'one write per client for three events')
  const first = sinks[0]?.writes[0]
  t.ok(
    sinks.every((s) => s.writes[0] === first),
    'every client got the very same buffer',
  )
  t.match(first?.toString(), /data: \{"i":0\}[\s\S]*data: \{"i":2\}/)
})

t.test(
  'a burst bigger than the limit reaches a client that reads; a backlog that stays gets it dropped',
  async (t) => {
    const m = manager(64 * 1024)
    t.teardown(() => m.close())
    const reader = new Sink()
    const stuck = new Sink()
    m.connect(reader, { userId: null })
    m.connect(stuck, { userId: null })
    const big = 'x'.repeat(20 * 1024)
    // 100 KB in one turn: over the 64 KB limit, within the queue allowance.
    for (let i = 0; i < 5; i++) m.broadcast('big', big)
    await tick()
    t.equal(m.size, 2, 'nobody is dropped for one burst')
    // The stuck client's socket still holds it all when the next event comes; the reader's drained.
    stuck.writableLength = 100 * 1024
    m.broadcast('next', 1)
    await tick()
    t.equal(m.size, 1)
    t.equal(stuck.destroyed, true)
    t.equal(reader.destroyed, false)
    t.equal(m.stats().slowClientsDisconnected, 1)
  },
)

t.test(
  'one turn queues at most four times the limit: past it, it is written at once and judged',
  async (t) => {
    const m = manager(16 * 1024)
    t.teardown(() => m.close())
    const reader = new Sink()
    // A socket that takes nothing: what is written stays in its buffer.
    const stuck = new Sink()
    stuck.write = function (chunk: Buffer) {
      this.writes.push(chunk)
      this.writableLength += chunk.length
      return false
    }
    m.connect(reader, { userId: null })
    m.connect(stuck, { userId: null })
    for (let i = 0; i < 20; i++) m.broadcast('big', 'y'.repeat(8 * 1024))
    t.equal(stuck.destroyed, true, 'the stuck client is dropped within the burst')
    t.ok(
      stuck.writableLength <= 4 * 16 * 1024 + 9 * 1024,
      `it was given at most the allowance (${stuck.writableLength} bytes)`,
    )
    await tick()
    t.equal(reader.destroyed, false, 'a client that keeps up is not')
    const got = Buffer.concat(reader.writes)
      .toString()
      .match(/event: big/g)?.length
    t.equal(got, 20, 'and gets every event')
    t.ok(
      reader.writes.slice(1).every((w) => w.length <= 4 * 16 * 1024 + 9 * 1024),
      'in writes of at most the allowance',
    )
    t.equal(m.size, 1)
  },
)

/** A manager with FLUSH_MAX_DELAY_MS, and `slow`, which makes every write to a sink take `writeMs`. */
function timedManager(maxFlushDelayMs: number, writeMs: number) {
  const m = new SseManager({
    heartbeatIntervalMs: 0,
    cleanupIntervalMs: 0,
    retryMs: 1000,
    maxBufferedBytes: 1 << 20,
    maxFlushDelayMs,
  })
  // The fan-out times its flushes with performance.now(): a slow sink is what makes a flush long.
  const slow = (sink: Sink) => {
    const write = sink.write.bind(sink)
    sink.write = (chunk: Buffer) => {
      const until = performance.now() + writeMs
      while (performance.now() < until) {}
      return write(chunk)
    }
    return sink
  }
  return { m, slow }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

t.test(
  'after a long flush the next waits as long (up to FLUSH_MAX_DELAY_MS), events joined in order',
  async (t) => {
    const { m, slow } = timedManager(200, 30)
    t.teardown(() => m.close())
    const sinks = [slow(new Sink()), slow(new Sink())]
    for (const s of sinks) m.connect(s, { userId: null })
    await tick()
    // This flush writes two slow sockets: about 60 ms, so the next one waits about 60 ms.
    m.broadcast('a', 1)
    await tick()
    for (const s of sinks) s.writes.length = 0
    m.broadcast('b', 2)
    await tick()
    await tick()
    t.equal(sinks[0]?.writes.length, 0, 'not written on the next turn')
    m.broadcast('c', 3)
    m.sendToUsers('d', 4, ['nobody'])
    await sleep(300)
    for (const s of sinks) {
      t.equal(s.writes.length, 1, 'both events in one write, once the delay passed')
      t.match(s.writes[0]?.toString(), /event: b\n[\s\S]*event: c\n/)
    }
  },
)

t.test('a short flush, or FLUSH_MAX_DELAY_MS=0, lets the next turn write at once', async (t) => {
  for (const [delay, writeMs] of [
    [200, 0],
    [0, 30],
  ] as const) {
    const { m, slow } = timedManager(delay, writeMs)
    const sink = slow(new Sink())
    m.connect(sink, { userId: null })
    m.broadcast('a', 1)
    await tick()
    sink.writes.length = 0
    m.broadcast('b', 2)
    await tick()
    t.equal(sink.writes.length, 1, `written on the next turn (delay ${delay}, write ${writeMs} ms)`)
    m.close()
  }
})

t.test('a waiting flush still writes at once past the turn allowance and on close', async (t) => {
  const { m, slow } = timedManager(1000, 40)
  const sink = slow(new Sink())
  m.connect(sink, { userId: null })
  m.broadcast('a', 1)
  await tick()
  sink.writes.length = 0
  m.broadcast('b', 2)
  await tick()
  t.equal(sink.writes.length, 0, 'waiting')
  // 4 MiB of one turn is four times MAX_BUFFERED_BYTES: written now, not after the delay.
  const big = 'x'.repeat(60_000)
  for (let i = 0; i < 80; i++) m.broadcast('big', big)
  t.ok(sink.writes.length >= 1, 'the allowance forced a write')
  m.broadcast('last', 'z')
  const before = sink.writes.length
  m.shutdown()
  t.ok(sink.writes.length > before, 'the shutdown wrote at once')
  const all = sink.writes.map((b) => b.toString()).join('')
  const order = ['event: b\n', 'event: big\n', 'event: last\n', 'event: disconnected\n'].map((s) =>
    all.indexOf(s),
  )
  t.ok(
    order.every((at, i) => at >= 0 && (i === 0 || at > (order[i - 1] as number))),
    `what waited, then the goodbye, in order (${order.join(', ')})`,
  )
  t.equal(all.split('event: big\n').length - 1, 80, 'every big event once')
  await sleep(50)
})
