import { EventEmitter } from 'node:events'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import t from 'tap'
import type { DisconnectReason, SseClient, SseSink } from '../../src/sse/client.js'
import { MemoryHistory } from '../../src/sse/history.js'
import { SseManager, type SseManagerOptions } from '../../src/sse/manager.js'
import { eventually, sleep } from '../helper.js'

/** A stand-in for a ServerResponse: records every write call, can pretend to be a slow reader. */
class FakeSink extends EventEmitter implements SseSink {
  writes: Buffer[] = []
  ended = false
  destroyed = false
  /** When true, writes pile up in writableLength as on a socket nobody reads. */
  paused = false
  #buffered = 0

  get writableLength(): number {
    return this.#buffered
  }

  get writableEnded(): boolean {
    return this.ended
  }

  write(chunk: Buffer): boolean {
    if (this.destroyed || this.ended) throw new Error('write after end/destroy')
    this.writes.push(chunk)
    if (this.paused) {
      this.#buffered += chunk.length
      return false
    }
    return true
  }

  end(): void {
    this.ended = true
    this.emit('close')
  }

  destroy(): void {
    if (this.destroyed) return
    this.destroyed = true
    this.emit('close')
  }

  /** Everything written, parsed with a spec-compliant parser. */
  events(): EventSourceMessage[] {
    const out: EventSourceMessage[] = []
    const parser = createParser({ onEvent: (e) => out.push(e) })
    for (const chunk of this.writes) parser.feed(chunk.toString('utf8'))
    return out
  }

  named(event: string): EventSourceMessage[] {
    return this.events().filter((e) => e.event === event)
  }

  retries(): number[] {
    const out: number[] = []
    const parser = createParser({ onRetry: (r) => out.push(r) })
    for (const chunk of this.writes) parser.feed(chunk.toString('utf8'))
    return out
  }
}

interface Teardown {
  teardown(fn: () => unknown): void
}

function createManager(t: Teardown, options: Partial<SseManagerOptions> = {}): SseManager {
  const manager = new SseManager({
    heartbeatIntervalMs: 0,
    cleanupIntervalMs: 0,
    retryMs: 3000,
    maxBufferedBytes: 1 << 20,
    ...options,
  })
  t.teardown(() => manager.close())
  return manager
}

function connect(manager: SseManager, userId: string | null = null, ip = '127.0.0.1') {
  const sink = new FakeSink()
  const client = manager.connect(sink, { userId, ip })
  return { sink, client }
}

t.test('connect writes retry and connected at once, in one write', async (t) => {
  const manager = createManager(t, { retryMs: 1234 })
  const { sink, client } = connect(manager, 'alice')
  t.equal(sink.writes.length, 1, 'first bytes go out synchronously')
  const text = sink.writes[0]?.toString('utf8') ?? ''
  t.match(text, /^retry: 1234\nevent: connected\ndata: /)
  const [connected] = sink.events()
  t.equal(connected?.event, 'connected')
  const data = JSON.parse(connected?.data ?? '{}')
  t.match(data, { clientId: client.id, userId: 'alice', anonymous: false })
  t.equal(new Date(data.timestamp).toISOString(), data.timestamp, 'timestamp is ISO 8601')
  t.match(client.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)

  const anon = connect(manager, null)
  t.match(JSON.parse(anon.sink.events()[0]?.data ?? '{}'), { userId: null, anonymous: true })
  t.ok(anon.client.anonymous)
  t.equal(manager.size, 2)
})

t.test('broadcast encodes once: every sink gets the same Buffer instance', async (t) => {
  const manager = createManager(t)
  const sinks = [connect(manager).sink, connect(manager, 'a').sink, connect(manager, 'b').sink]
  const result = manager.broadcast('news', { headline: 'x' })
  t.equal(result.delivered, 3)
  t.match(result.id, /^\d+-\d+$/)
  for (const sink of sinks) t.equal(sink.writes.length, 1, 'queued, not written in the same turn')
  await nextTurn()
  const frames = sinks.map((s) => s.writes[1])
  t.ok(frames[0] instanceof Buffer)
  t.equal(frames[1], frames[0], 'same Buffer instance (not just equal bytes)')
  t.equal(frames[2], frames[0], 'same Buffer instance (not just equal bytes)')
  for (const sink of sinks) {
    const news = sink.named('news')
    t.equal(news.length, 1)
    t.equal(news[0]?.id, result.id)
    t.same(JSON.parse(news[0]?.data ?? ''), { headline: 'x' })
  }
})

t.test('three events published in one turn reach a sink in one write call', async (t) => {
  const manager = createManager(t)
  const { sink, client } = connect(manager, 'alice')
  const ids = [
    manager.broadcast('a', 1).id,
    manager.sendToUsers('b', 2, ['alice']).id,
    manager.sendToClients('c', 3, [client.id]).id,
  ]
  await nextTurn()
  t.equal(sink.writes.length, 2, 'connected, then one write for the burst')
  const events = sink.events().slice(1)
  t.same(
    events.map((e) => [e.event, e.id, e.data]),
    [
      ['a', ids[0], '1'],
      ['b', ids[1], '2'],
      ['c', ids[2], '3'],
    ],
    'in publish order',
  )
  t.equal(client.eventsSent, 4, 'connected + 3 events counted')
  t.equal(
    client.bytesSent,
    sink.writes.reduce((n, b) => n + b.length, 0),
  )
})

t.test('event ids strictly increase', async (t) => {
  const manager = createManager(t)
  const ids = Array.from({ length: 50 }, () => manager.broadcast('x', null).id)
  const parsed = ids.map((id) => id.split('-').map(Number) as [number, number])
  for (let i = 1; i < parsed.length; i++) {
    const [ms0, seq0] = parsed[i - 1] as [number, number]
    const [ms1, seq1] = parsed[i] as [number, number]
    t.ok(ms1 > ms0 || (ms1 === ms0 && seq1 > seq0), `${ids[i]} > ${ids[i - 1]}`)
  }
})

t.test('sendToUsers touches only that user’s connections', async (t) => {
  const manager = createManager(t)
  const alice = [connect(manager, 'alice'), connect(manager, 'alice'), connect(manager, 'alice')]
  const bob = connect(manager, 'bob')
  const anon = connect(manager, null)
  const result = manager.sendToUsers('private', { for: 'alice' }, ['alice'])
  t.equal(result.delivered, 3)
  await nextTurn()
  for (const { sink } of alice) t.equal(sink.named('private').length, 1, 'every tab of alice')
  t.equal(bob.sink.writes.length, 1, 'bob got nothing after connected')
  t.equal(anon.sink.writes.length, 1, 'anonymous got nothing after connected')

  const both = manager.sendToUsers('pair', 1, ['alice', 'bob', 'nobody'])
  t.equal(both.delivered, 4, 'unknown users are skipped')
  const none = manager.sendToUsers('void', 1, ['nobody'])
  t.equal(none.delivered, 0)
  await nextTurn()
  t.equal(bob.sink.named('pair').length, 1)
  t.equal(anon.sink.named('pair').length, 0)
})

t.test('sendToClients reaches the named connections only', async (t) => {
  const manager = createManager(t)
  const a1 = connect(manager, 'alice')
  const a2 = connect(manager, 'alice')
  const anon = connect(manager, null)
  const result = manager.sendToClients('direct', 'hi', [a2.client.id, anon.client.id, 'no-such-client'])
  t.equal(result.delivered, 2)
  await nextTurn()
  t.equal(a1.sink.named('direct').length, 0)
  t.equal(a2.sink.named('direct').length, 1)
  t.equal(anon.sink.named('direct').length, 1)
})

t.test('a user and one of their clients targeted together get the event once', async (t) => {
  const manager = createManager(t)
  const a1 = connect(manager, 'alice')
  const a2 = connect(manager, 'alice')
  const b = connect(manager, 'bob')
  const result = manager.publish('both', 1, { userIds: ['alice'], clientIds: [a1.client.id, b.client.id] })
  t.equal(result.delivered, 3)
  await nextTurn()
  t.equal(a1.sink.named('both').length, 1)
  t.equal(a2.sink.named('both').length, 1)
  t.equal(b.sink.named('both').length, 1)
})

t.test('sendNotification sends notification with {title, message, type, timestamp}', async (t) => {
  const now = Date.parse('2030-01-02T03:04:05.678Z')
  const manager = createManager(t, { now: () => now })
  const alice = connect(manager, 'alice')
  const bob = connect(manager, 'bob')
  const result = manager.sendNotification('alice', 'Saved', 'Your file was saved', 'success')
  t.equal(result.delivered, 1)
  manager.sendNotification('alice', 'Plain', 'Default type')
  await nextTurn()
  const notes = alice.sink.named('notification').map((e) => JSON.parse(e.data))
  t.same(notes, [
    {
      title: 'Saved',
      message: 'Your file was saved',
      type: 'success',
      timestamp: '2030-01-02T03:04:05.678Z',
    },
    { title: 'Plain', message: 'Default type', type: 'info', timestamp: '2030-01-02T03:04:05.678Z' },
  ])
  t.equal(bob.sink.named('notification').length, 0)
})

t.test('disconnectAll ends every stream with disconnected', async (t) => {
  const manager = createManager(t)
  const reasons: DisconnectReason[] = []
  const m2 = new SseManager({
    heartbeatIntervalMs: 0,
    cleanupIntervalMs: 0,
    retryMs: 3000,
    maxBufferedBytes: 1 << 20,
    hooks: { onDisconnect: (_c, reason) => reasons.push(reason) },
  })
  t.teardown(() => m2.close())
  const clients = [connect(m2, 'alice'), connect(m2, 'alice'), connect(m2, null)]
  m2.broadcast('pending', 1)
  t.equal(m2.disconnectAll(), 3)
  for (const { sink } of clients) {
    t.ok(sink.ended, 'response ended')
    const events = sink.events()
    const last = events[events.length - 1]
    t.equal(last?.event, 'disconnected', 'disconnected is the last event')
    const data = JSON.parse(last?.data ?? '{}')
    t.same(Object.keys(data).sort(), ['message', 'reason', 'timestamp'])
    t.equal(data.reason, 'server_disconnect')
    t.equal(data.message, 'All clients have been disconnected by the server')
    t.equal(new Date(data.timestamp).toISOString(), data.timestamp)
  }
  t.equal(m2.size, 0)
  t.same(reasons, ['server_disconnect', 'server_disconnect', 'server_disconnect'])
  t.equal(m2.stats().totalConnections, 0)
  t.equal(m2.userConnectionCount('alice'), 0)
  t.equal(m2.anonymousConnectionCount('127.0.0.1'), 0)
  for (const { sink } of clients) {
    t.same(
      sink.events().map((e) => e.event),
      ['connected', 'pending', 'disconnected'],
      'what was queued goes out before the goodbye',
    )
  }
  t.equal(m2.broadcast('after', 1).delivered, 0, 'nobody left to deliver to')
  t.equal(manager.disconnectAll(), 0, 'an empty manager disconnects nobody')
})

t.test('shutdown refuses new work and tells clients to come back later', async (t) => {
  const manager = createManager(t, { retryMs: 1000 })
  const clients = [connect(manager), connect(manager, 'alice')]
  t.notOk(manager.closing)
  t.equal(manager.shutdown(), 2)
  t.ok(manager.closing)
  for (const { sink } of clients) {
    t.ok(sink.ended)
    const last = sink.events().at(-1)
    t.equal(last?.event, 'disconnected')
    t.match(JSON.parse(last?.data ?? '{}'), { reason: 'server_shutdown' })
    const retry = sink.retries().at(-1) ?? -1
    t.ok(retry >= 1000 && retry < 3000, `a spread retry hint (${retry})`)
  }
})

t.test('a sink that closes or errors is removed at once', async (t) => {
  const reasons: string[] = []
  const manager = createManager(t, { hooks: { onDisconnect: (_c, r) => reasons.push(r) } })
  const a = connect(manager, 'alice')
  const b = connect(manager, null)
  const c = connect(manager, 'carol')
  a.sink.emit('close')
  b.sink.emit('error', new Error('ECONNRESET'))
  t.equal(manager.size, 1)
  t.equal(manager.getClient(a.client.id), undefined)
  t.equal(manager.getClient(c.client.id), c.client)
  t.equal(manager.userConnectionCount('alice'), 0)
  t.equal(manager.anonymousConnectionCount('127.0.0.1'), 0)
  t.same(reasons, ['client', 'client'])
  t.same(manager.stats().users, [{ userId: 'carol', connections: 1 }])
  t.equal(manager.broadcast('x', 1).delivered, 1)
})

t.test('sweep removes clients whose sink can no longer be written', async (t) => {
  const manager = createManager(t)
  const dead = connect(manager, 'alice')
  const ended = connect(manager, 'bob')
  const alive = connect(manager, 'carol')
  // Gone without a close event, as a socket may be.
  dead.sink.destroyed = true
  ended.sink.ended = true
  t.equal(manager.sweep(), 2)
  t.equal(manager.size, 1)
  t.ok(manager.getClient(alive.client.id))
  t.equal(manager.sweep(), 0)
})

t.test('the cleanup timer sweeps by itself', async (t) => {
  const manager = createManager(t, { cleanupIntervalMs: 10 })
  const dead = connect(manager, 'alice')
  connect(manager, 'bob')
  dead.sink.destroyed = true
  t.ok(await eventually(() => manager.size === 1), 'swept')
})

t.test('stats: shape and counts', async (t) => {
  let now = Date.parse('2030-01-01T00:00:00.000Z')
  const manager = createManager(t, { now: () => now, instanceId: 'instance-1' })
  connect(manager, 'alice')
  connect(manager, 'alice')
  connect(manager, 'bob')
  connect(manager, null)
  connect(manager, null, '10.0.0.2')
  manager.broadcast('a', 1)
  manager.sendToUsers('b', 1, ['alice'])
  now += 61_500
  const stats = manager.stats()
  t.same(stats, {
    totalConnections: 5,
    authenticatedConnections: 3,
    anonymousConnections: 2,
    uniqueUsers: 2,
    users: [
      { userId: 'alice', connections: 2 },
      { userId: 'bob', connections: 1 },
    ],
    topics: 0,
    topTopics: [],
    eventsPublished: 2,
    eventsDelivered: 7,
    slowClientsDisconnected: 0,
    uptimeSeconds: 61,
    instanceId: 'instance-1',
    startedAt: '2030-01-01T00:00:00.000Z',
  })
  t.equal(manager.anonymousConnectionCount('127.0.0.1'), 1)
  t.equal(manager.anonymousConnectionCount('10.0.0.2'), 1)
  t.same([...manager.userIds()].sort(), ['alice', 'bob'])
})

t.test('stats lists the top 100 users by connections', async (t) => {
  const manager = createManager(t)
  for (let i = 0; i < 150; i++) {
    const userId = `user-${String(i).padStart(3, '0')}`
    // user-000..user-009 get three connections, user-010..user-029 two, the rest one.
    const count = i < 10 ? 3 : i < 30 ? 2 : 1
    for (let c = 0; c < count; c++) connect(manager, userId)
  }
  const stats = manager.stats()
  t.equal(stats.uniqueUsers, 150)
  t.equal(stats.totalConnections, 10 * 3 + 20 * 2 + 120)
  t.equal(stats.users.length, 100)
  t.same(
    stats.users.slice(0, 10).map((u) => u.connections),
    Array(10).fill(3),
  )
  t.same(
    stats.users.slice(10, 30).map((u) => u.connections),
    Array(20).fill(2),
  )
  t.ok(stats.users.slice(30).every((u) => u.connections === 1))
  for (let i = 1; i < stats.users.length; i++) {
    t.ok((stats.users[i - 1]?.connections ?? 0) >= (stats.users[i]?.connections ?? 0), 'sorted')
  }
})

t.test('a slow sink is destroyed and counted; the others still get every event', async (t) => {
  const disconnected: [SseClient, DisconnectReason][] = []
  const manager = createManager(t, {
    maxBufferedBytes: 4096,
    hooks: { onDisconnect: (c, r) => disconnected.push([c, r]) },
  })
  const slow = connect(manager, 'slow')
  const fast = connect(manager, 'fast')
  slow.sink.paused = true
  const ids: string[] = []
  const payload = 'x'.repeat(1000)
  for (let i = 0; i < 20; i++) {
    ids.push(manager.broadcast('big', { i, payload }).id)
    await nextTurn()
  }
  t.ok(slow.sink.destroyed, 'slow sink destroyed')
  t.notOk(slow.sink.ended, 'no goodbye for a client that does not read')
  t.equal(manager.stats().slowClientsDisconnected, 1)
  t.equal(manager.size, 1)
  t.same(
    disconnected.map(([c, r]) => [c.userId, r]),
    [['slow', 'slow']],
  )
  t.same(
    fast.sink.named('big').map((e) => e.id),
    ids,
    'the fast sink got every event, once, in order',
  )
  t.ok(slow.sink.writes.length < 20, 'nothing is written to the slow sink once it is gone')
})

t.test('bytes queued within one turn count toward the limit of a reader that does not drain', async (t) => {
  const manager = createManager(t, { maxBufferedBytes: 4096 })
  const slow = connect(manager, 'slow')
  slow.sink.paused = true
  const fast = connect(manager, 'fast')
  // Two 1 KB events a turn: within the limit for a reader that drains, over it after a few turns for one that does not.
  for (let turn = 0; turn < 4; turn++) {
    manager.broadcast('big', 'y'.repeat(1000))
    manager.broadcast('big', 'y'.repeat(1000))
    await nextTurn()
  }
  t.ok(slow.sink.destroyed)
  t.equal(manager.stats().slowClientsDisconnected, 1)
  t.notOk(fast.sink.destroyed)
  t.equal(fast.sink.named('big').length, 8)
  t.equal(fast.sink.writes.length, 1 + 4, 'one write per turn')
})

t.test('heartbeat: one frame, same bytes for all, not counted as events', async (t) => {
  const now = Date.parse('2030-05-05T05:05:05.005Z')
  const manager = createManager(t, { now: () => now })
  manager.heartbeat() // no clients: nothing to do, no throw
  const a = connect(manager, 'alice')
  const b = connect(manager, null)
  manager.heartbeat()
  await nextTurn()
  t.equal(a.sink.writes[1], b.sink.writes[1], 'one shared frame')
  const [hb] = a.sink.named('heartbeat')
  t.same(JSON.parse(hb?.data ?? ''), { timestamp: '2030-05-05T05:05:05.005Z' })
  t.equal(hb?.id, undefined, 'a heartbeat has no id, so it does not move Last-Event-ID')
  t.equal(a.client.eventsSent, 1, 'only connected counted')
  t.equal(manager.stats().eventsPublished, 0)
})

t.test('the heartbeat timer fires by itself, and close() stops it', async (t) => {
  const manager = createManager(t, { heartbeatIntervalMs: 10 })
  const { sink } = connect(manager)
  t.ok(await eventually(() => sink.named('heartbeat').length >= 3), 'heartbeats arrive')
  manager.close()
  await nextTurn()
  const count = sink.named('heartbeat').length
  await sleep(60)
  t.equal(sink.named('heartbeat').length, count, 'no more heartbeats after close()')
})

t.test('published events go to the history, with their frame', async (t) => {
  const history = new MemoryHistory({ maxEvents: 10, ttlMs: 0 })
  const delivered: Buffer[] = []
  const manager = createManager(t, { history, hooks: { onDeliver: (e) => delivered.push(e.frame) } })
  t.equal(manager.history, history)
  t.equal(manager.latestEventId(), null)
  const { sink } = connect(manager)
  const r1 = manager.broadcast('a', 1)
  const r2 = manager.sendToUsers('b', 2, ['nobody'])
  t.equal(history.size, 2, 'recorded even with no recipient')
  t.equal(manager.latestEventId(), r2.id)
  const window = history.since(r1.id)
  t.same(
    window.events.map((e) => [e.id, e.event, e.target]),
    [[r2.id, 'b', { userIds: ['nobody'] }]],
  )
  t.equal(window.events[0]?.frame, delivered[1], 'the history keeps the very frame that was sent')
  await nextTurn()
  t.equal(sink.writes[1], delivered[0], 'the recipient got the same Buffer')
})

t.test('writes after a client is gone are dropped, not thrown', async (t) => {
  const manager = createManager(t)
  const a = connect(manager, 'alice')
  manager.broadcast('queued', 1)
  a.sink.emit('close')
  await nextTurn()
  t.equal(a.sink.writes.length, 1, 'the queued frame was dropped with the client')
  t.equal(manager.broadcast('later', 1).delivered, 0)
  manager.disconnect(a.client, 'server_disconnect')
  t.notOk(a.sink.ended, 'disconnecting a closed client does nothing')
})
