import t from 'tap'
import { compareEventIds } from '../../src/sse/event-id.js'
import { skipWithoutRedis } from '../bus/redis.js'
import { ADMIN, eventually, expectError, get, mint, openStream, post, type Stream, sleep } from '../helper.js'
import { clientIdOf, instances, publish, published } from './helper.js'

const skip = await skipWithoutRedis()

/** Publishes a last broadcast and waits for it everywhere, so that anything still in flight has landed. */
async function fence(url: string, streams: Stream[]): Promise<string> {
  const { id } = await publish(url, { event: 'fence', data: null, broadcast: true })
  for (const s of streams) await s.waitFor((e) => e.id === id)
  return id
}

function ids(stream: Stream): string[] {
  return published(stream).map((e) => e.id as string)
}

t.test('three instances on one Redis', { skip }, async (t) => {
  t.test('every targeting mode reaches every matching connection on every instance, once', async (t) => {
    const [a, b, c] = await instances(t, 3)
    if (!a || !b || !c) throw new Error('three instances')
    const alice1 = await openStream(a.url, { token: mint('alice') })
    const alice2 = await openStream(b.url, { token: mint('alice') })
    const bob = await openStream(c.url, { token: mint('bob') })
    const anonA = await openStream(a.url)
    const anonB = await openStream(b.url)
    const anonC = await openStream(c.url)
    const all = [alice1, alice2, bob, anonA, anonB, anonC]
    for (const s of all) await s.waitFor((e) => e.event === 'connected')

    const broadcast = await publish(b.url, { event: 'everyone', data: { n: 1 }, broadcast: true })
    t.equal(broadcast.delivered, 2, 'delivered counts the answering instance: alice tab 2 and anonB')
    const toAlice = await publish(c.url, { event: 'for-alice', data: { n: 2 }, userIds: ['alice'] })
    t.equal(toAlice.delivered, 0, 'no connection of alice on the answering instance')
    const toBob = await publish(a.url, {
      event: 'for-bob-conn',
      data: { n: 3 },
      clientIds: [clientIdOf(bob)],
    })
    const mixed = await publish(a.url, {
      event: 'mixed',
      data: { n: 4 },
      userIds: ['alice'],
      clientIds: [clientIdOf(anonB), clientIdOf(alice2)],
    })
    t.equal(mixed.delivered, 1, 'alice tab 1 is the only recipient on A')
    const note = await a.app.cluster.sendNotification('alice', 'Hi', 'A message', 'success')
    const last = await fence(c.url, all)

    t.same(ids(alice1), [broadcast.id, toAlice.id, mixed.id, note.id, last], 'alice tab 1 (A)')
    t.same(ids(alice2), [broadcast.id, toAlice.id, mixed.id, note.id, last], 'alice tab 2 (B)')
    t.same(ids(bob), [broadcast.id, toBob.id, last], 'bob (C): broadcasts and his connection id')
    t.same(ids(anonA), [broadcast.id, last], 'anonymous on A')
    t.same(ids(anonB), [broadcast.id, mixed.id, last], 'anonymous on B: by its connection id')
    t.same(ids(anonC), [broadcast.id, last], 'anonymous on C')
    t.match(published(alice2).find((e) => e.event === 'notification')?.json, {
      title: 'Hi',
      message: 'A message',
      type: 'success',
      timestamp: String,
    })
    const order = ids(alice1)
    t.same(
      [...order].sort(compareEventIds),
      order,
      'ids from three instances are strictly increasing in delivery order',
    )
    t.equal(new Set(order).size, order.length, 'no id twice')
    for (const s of all) s.close()
  })

  t.test('a reconnect to another instance with Last-Event-ID gets exactly what it missed', async (t) => {
    const [a, b, c] = await instances(t, 3)
    if (!a || !b || !c) throw new Error('three instances')
    const first = await openStream(a.url, { token: mint('alice') })
    await first.waitFor((e) => e.event === 'connected')
    const oldClientId = clientIdOf(first)
    const seen = await publish(b.url, { event: 'tick', data: { n: 0 }, broadcast: true })
    await first.waitFor((e) => e.id === seen.id)
    first.close()

    const b1 = await publish(b.url, { event: 'tick', data: { n: 1 }, broadcast: true })
    const a1 = await publish(c.url, { event: 'mine', data: { n: 2 }, userIds: ['alice'] })
    await publish(a.url, { event: 'theirs', data: { n: 3 }, userIds: ['bob'] })
    await publish(b.url, { event: 'old-conn', data: { n: 4 }, clientIds: [oldClientId] })
    const b2 = await publish(a.url, { event: 'tick', data: { n: 5 }, broadcast: true })

    const again = await openStream(c.url, { token: mint('alice'), headers: { 'last-event-id': seen.id } })
    const hello = await again.waitFor((e) => e.event === 'connected')
    t.match(hello.json, { recovered: true, replayed: 3, lastEventId: b2.id })
    const live = await publish(b.url, { event: 'tick', data: { n: 6 }, broadcast: true })
    await again.waitFor((e) => e.id === live.id)
    t.same(
      ids(again),
      [b1.id, a1.id, b2.id, live.id],
      'broadcasts and own-user events in order, once; never another user or another connection; then live',
    )

    const bob = await openStream(b.url, { token: mint('bob'), headers: { 'last-event-id': seen.id } })
    await bob.waitFor((e) => e.id === live.id)
    t.same(
      published(bob).map((e) => e.event),
      ['tick', 'theirs', 'tick', 'tick'],
      'bob gets his own, not alice’s',
    )
    again.close()
    bob.close()
  })

  t.test('an id older than the shared history, or not an id, gives recovered: false', async (t) => {
    const [a, b] = await instances(t, 2, { historySize: 5 })
    if (!a || !b) throw new Error('two instances')
    // Watches b: the streams below connect once b has delivered the last event (a's answer says
    // only that a has), so that the newest id they are told of is the last one published.
    const watcher = await openStream(b.url)
    await watcher.waitFor((e) => e.event === 'connected')
    const first = await publish(a.url, { event: 'tick', data: 0, broadcast: true })
    let latest = first
    for (let i = 1; i <= 8; i++) latest = await publish(a.url, { event: 'tick', data: i, broadcast: true })
    await watcher.waitFor((e) => e.id === latest.id)
    watcher.close()
    for (const lastEventId of [first.id, '1-0', 'not-an-id', '9'.repeat(60)]) {
      const s = await openStream(b.url, { headers: { 'last-event-id': lastEventId } })
      const hello = await s.waitFor((e) => e.event === 'connected')
      t.match(
        hello.json,
        { recovered: false, replayed: 0, lastEventId: latest.id },
        `Last-Event-ID ${lastEventId}`,
      )
      await sleep(50)
      t.same(published(s), [], 'nothing replayed')
      s.close()
    }
    const recent = await openStream(b.url, { query: { lastEventId: latest.id } })
    t.match((await recent.waitFor((e) => e.event === 'connected')).json, { recovered: true, replayed: 0 })
    recent.close()
  })

  t.test('disconnect-all ends the streams of every instance and answers with the total', async (t) => {
    const [a, b, c] = await instances(t, 3)
    if (!a || !b || !c) throw new Error('three instances')
    const streams = [
      await openStream(a.url),
      await openStream(a.url, { token: mint('alice') }),
      await openStream(b.url),
      await openStream(c.url, { token: mint('alice') }),
      await openStream(c.url),
      await openStream(c.url, { token: mint('bob') }),
    ]
    for (const s of streams) await s.waitFor((e) => e.event === 'connected')
    const res = await post(b.url, '/api/sse/disconnect-all', undefined, ADMIN())
    t.equal(res.status, 200)
    t.same(res.body, { disconnected: 6 })
    for (const s of streams) {
      await s.waitForEnd()
      t.match(s.named('disconnected')[0]?.json, { reason: 'server_disconnect' })
    }
    t.ok(
      await eventually(() => a.app.sse.size + b.app.sse.size + c.app.sse.size === 0),
      'no stream left anywhere',
    )
    const again = await post(c.url, '/api/sse/disconnect-all', undefined, ADMIN())
    t.same(again.body, { disconnected: 0 })
  })

  t.test('stats answer for the whole deployment, and an instance that leaves drops out', async (t) => {
    const [a, b, c] = await instances(t, 3)
    if (!a || !b || !c) throw new Error('three instances')
    const streams = [
      await openStream(a.url, { token: mint('alice') }),
      await openStream(b.url, { token: mint('alice') }),
      await openStream(c.url, { token: mint('bob') }),
      await openStream(a.url),
    ]
    for (const s of streams) await s.waitFor((e) => e.event === 'connected')
    await publish(a.url, { event: 'x', data: 1, broadcast: true })
    let body: Record<string, unknown> = {}
    const settled = await eventually(async () => {
      body = (await get(c.url, '/api/sse/stats', ADMIN())).body as Record<string, unknown>
      // Reports are periodic: wait for one from each instance taken after the publish.
      return (
        body.totalConnections === 4 &&
        (body.instances as unknown[]).length === 3 &&
        body.eventsPublished === 1
      )
    }, 5000)
    t.ok(settled, `stats settle: ${JSON.stringify(body)}`)
    t.match(body, {
      totalConnections: 4,
      authenticatedConnections: 3,
      anonymousConnections: 1,
      uniqueUsers: 2,
      users: [
        { userId: 'alice', connections: 2 },
        { userId: 'bob', connections: 1 },
      ],
      eventsPublished: 1,
      instanceId: c.app.cluster.instanceId,
    })
    const list = body.instances as { instanceId: string; connections: number; reportedAt: string }[]
    const byId = new Map(list.map((i) => [i.instanceId, i.connections]))
    t.same(
      byId,
      new Map([
        [a.app.cluster.instanceId, 2],
        [b.app.cluster.instanceId, 1],
        [c.app.cluster.instanceId, 1],
      ]),
      'each instance with its connection count',
    )
    t.ok(
      list.every((i) => !Number.isNaN(Date.parse(i.reportedAt))),
      'each with its last report time',
    )

    await b.app.close()
    const dropped = await eventually(async () => {
      body = (await get(a.url, '/api/sse/stats', ADMIN())).body as Record<string, unknown>
      // Like the reports above, the view settles (under load a report can come late).
      return (body.instances as unknown[]).length === 2 && body.totalConnections === 3
    }, 5000)
    t.ok(dropped, 'a closed instance leaves the list')
    t.match(body, { totalConnections: 3, uniqueUsers: 2, users: [{ userId: 'alice', connections: 1 }] })
    for (const s of streams) s.close()
  })

  t.test('MAX_CONNECTIONS_PER_USER holds across instances', async (t) => {
    const [a, b, c] = await instances(t, 3, { maxConnectionsPerUser: 2 })
    if (!a || !b || !c) throw new Error('three instances')
    const one = await openStream(a.url, { token: mint('alice') })
    const two = await openStream(b.url, { token: mint('alice') })
    t.equal(one.status, 200)
    t.equal(two.status, 200)
    const three = await openStream(c.url, { token: mint('alice') })
    expectError(t, { status: three.status, body: three.body }, 429, 'SSE_ERR_USER_CONNECTION_LIMIT')
    const bob = await openStream(c.url, { token: mint('bob') })
    t.equal(bob.status, 200, 'another user is not limited by alice')

    // Concurrent attempts on three instances at once: exactly the free slots are taken.
    one.close()
    two.close()
    t.ok(
      await eventually(async () => {
        const probe = await openStream(c.url, { token: mint('alice') })
        probe.close()
        return probe.status === 200
      }),
      'closed tabs give their slots back',
    )
    const aliceGone = async () => {
      const stats = (await get(a.url, '/api/sse/stats', ADMIN())).body as { users: { userId: string }[] }
      return !stats.users.some((u) => u.userId === 'alice')
    }
    t.ok(await eventually(aliceGone), 'no alice slot is held anywhere')
    const attempts = await Promise.all(
      [a, b, c, a, b, c].map((s) => openStream(s.url, { token: mint('alice') })),
    )
    t.equal(attempts.filter((s) => s.status === 200).length, 2, 'two of six concurrent attempts get in')
    t.equal(attempts.filter((s) => s.status === 429).length, 4, 'the others get 429')
    for (const s of [...attempts, bob]) s.close()
  })
})
