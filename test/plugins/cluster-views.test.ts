import t from 'tap'
import type { InstanceReport } from '../../src/bus/redis-presence.js'
import { reportOf, sumPresence, sumStats, TOP_USERS } from '../../src/plugins/cluster-views.js'
import type { SseStats } from '../../src/sse/manager.js'

t.test('presence: the instances add up; users by connections, then id; the top 100', async (t) => {
  const p = sumPresence('room/1', [
    {
      connections: 3,
      anonymous: 1,
      users: [
        ['bob', 1],
        ['alice', 1],
      ],
    },
    { connections: 2, anonymous: 0, users: [['alice', 2]] },
  ])
  t.same(p, {
    topic: 'room/1',
    connections: 5,
    anonymous: 1,
    uniqueUsers: 2,
    users: [
      { userId: 'alice', connections: 3 },
      { userId: 'bob', connections: 1 },
    ],
  })
  const many = Array.from({ length: 150 }, (_, i): [string, number] => [`u${String(i).padStart(3, '0')}`, 1])
  const cut = sumPresence('t', [{ connections: 150, anonymous: 0, users: many }])
  t.equal(cut.uniqueUsers, 150)
  t.equal(cut.users.length, TOP_USERS)
  t.equal(cut.users[0]?.userId, 'u000', 'ties in id order')
  t.same(sumPresence('t', []), { topic: 't', connections: 0, anonymous: 0, uniqueUsers: 0, users: [] })
})

const local: SseStats = {
  totalConnections: 2,
  authenticatedConnections: 1,
  anonymousConnections: 1,
  uniqueUsers: 1,
  users: [{ userId: 'alice', connections: 1 }],
  eventsPublished: 10,
  eventsDelivered: 20,
  slowClientsDisconnected: 1,
  startedAt: '2026-01-01T00:00:00.000Z',
  topics: 0,
  topTopics: [],
} as unknown as SseStats

t.test('stats: counters summed over every report, users across instances, instances by id', async (t) => {
  const self = reportOf('b', local, 7)
  t.equal(self.eventsPublished, 7, 'an instance reports the events published through it')
  t.equal(self.totalConnections, 2)
  const other: InstanceReport = {
    ...self,
    instanceId: 'a',
    totalConnections: 5,
    eventsPublished: 3,
    eventsDelivered: 1,
  }
  const users = new Map([
    ['alice', 4],
    ['bob', 9],
  ])
  const s = sumStats(local, [self, other], users)
  t.equal(s.totalConnections, 7)
  t.equal(s.eventsPublished, 10)
  t.equal(s.eventsDelivered, 21)
  t.equal(s.uniqueUsers, 2)
  t.same(s.users, [
    { userId: 'bob', connections: 9 },
    { userId: 'alice', connections: 4 },
  ])
  t.same(
    s.instances.map((i) => [i.instanceId, i.connections]),
    [
      ['a', 5],
      ['b', 2],
    ],
  )
  t.equal(s.startedAt, local.startedAt, 'what is not summed is this instance own')
})
