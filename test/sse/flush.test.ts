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
