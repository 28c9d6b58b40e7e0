import { EventEmitter } from 'node:events'
import { createParser } from 'eventsource-parser'
import t from 'tap'
import { SseManager } from '../../src/sse/manager.js'
import type { Teardown } from '../helper.js'
import { SlowHistory } from './slow-history.js'

class FakeSink extends EventEmitter {
  chunks: Buffer[] = []
  writableLength = 0
  writableEnded = false
  destroyed = false
  write(chunk: Buffer) {
    this.chunks.push(chunk)
    return true
  }
  end() {
    this.writableEnded = true
  }
  destroy() {
    this.destroyed = true
  }
  events() {
    const out: { event: string; id: string | undefined; data: string }[] = []
    const parser = createParser({
      onEvent: (e) => out.push({ event: e.event ?? 'message', id: e.id, data: e.data }),
    })
    parser.feed(Buffer.concat(this.chunks).toString('utf8'))
    return out
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

/** A manager whose history answers when the test says so; closed when the test ends. */
function managerWithSlowHistory(t: Teardown) {
  const history = new SlowHistory()
  const manager = new SseManager({
    heartbeatIntervalMs: 0,
    cleanupIntervalMs: 0,
    retryMs: 1000,
    maxBufferedBytes: 1 << 20,
    history,
  })
  t.teardown(() => manager.close())
  return { history, manager }
}

t.test(
  'events published while an asynchronous replay is pending are written after it, once each',
  async (t) => {
    const { history, manager } = managerWithSlowHistory(t)
    const first = manager.broadcast('e', 0).id
    const missed = manager.broadcast('e', 1).id
    const sink = new FakeSink()
    manager.connect(sink, { userId: 'u', lastEventId: first })
    // Published while the replay is being fetched: held, not written yet.
    const during = manager.broadcast('e', 2).id
    await tick()
    t.equal(sink.chunks.length, 0, 'nothing is written before the connected event')
    history.release?.()
    await tick()
    await tick()
    const events = sink.events()
    t.same(
      events.map((e) => e.event),
      ['connected', 'e', 'e'],
    )
    t.same(
      events.slice(1).map((e) => e.id),
      [missed, during],
    )
    t.match(JSON.parse(events[0]?.data ?? '{}'), { recovered: true, replayed: 1 })
    const after = manager.broadcast('e', 3).id
    await tick()
    t.same(
      sink.events().map((e) => e.id),
      [undefined, missed, during, after],
      'the connected event carries no id when events were replayed; then each event once',
    )
  },
)

t.test(
  'nothing to replay: connected names the id the stream was caught up to before the held events, which follow',
  async (t) => {
    const { history, manager } = managerWithSlowHistory(t)
    const before = manager.broadcast('e', 0).id
    const sink = new FakeSink()
    // An id the history never had: recovered: false, nothing replayed.
    manager.connect(sink, { userId: 'u', lastEventId: '1-0' })
    const during = manager.broadcast('e', 1).id
    history.release?.()
    await tick()
    await tick()
    const events = sink.events()
    t.same(
      events.map((e) => e.event),
      ['connected', 'e'],
    )
    t.match(JSON.parse(events[0]?.data ?? '{}'), { recovered: false, replayed: 0, lastEventId: before })
    t.equal(events[0]?.id, before, 'the id a reconnect resumes from is the one before the held event')
    t.equal(events[1]?.id, during, 'the held event follows, newer than what connected named')
  },
)

t.test(
  'a client that leaves during an asynchronous replay is released, and nothing is written to it',
  async (t) => {
    const { history, manager } = managerWithSlowHistory(t)
    const first = manager.broadcast('e', 0).id
    const sink = new FakeSink()
    manager.connect(sink, { userId: 'u', lastEventId: first })
    t.equal(manager.size, 1)
    sink.emit('close')
    t.equal(manager.size, 0)
    history.release?.()
    await tick()
    t.equal(sink.chunks.length, 0)
  },
)

t.test(
  'a replay whose history fails starts the stream unrecovered, and the held events still follow once',
  async (t) => {
    const { history, manager } = managerWithSlowHistory(t)
    const first = manager.broadcast('e', 0).id
    const before = manager.broadcast('e', 1).id
    history.fail = true
    const sink = new FakeSink()
    manager.connect(sink, { userId: 'u', lastEventId: first })
    const during = manager.broadcast('e', 2).id
    await tick()
    t.equal(sink.chunks.length, 0, 'nothing is written while the history is asked')
    history.release?.()
    await tick()
    await tick()
    const events = sink.events()
    t.same(
      events.map((e) => [e.event, e.id]),
      [
        ['connected', before],
        ['e', during],
      ],
      'connected names the id caught up to before the held event; nothing is replayed',
    )
    t.match(JSON.parse(events[0]?.data ?? '{}'), { recovered: false, replayed: 0, lastEventId: before })
    const after = manager.broadcast('e', 3).id
    await tick()
    t.same(
      sink.events().map((e) => e.id),
      [before, during, after],
      'live events flow again after the failure',
    )
  },
)
