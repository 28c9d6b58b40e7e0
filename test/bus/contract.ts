import type { Test } from 'tap'
import type { Bus, BusEvent, BusMessage } from '../../src/bus/bus.js'
import { compareEventIds } from '../../src/sse/event-id.js'
import { isValidEventId } from '../../src/sse/frame.js'
import { eventually, sleep } from '../helper.js'

/** Makes buses that share one backend (one hub, one Redis prefix), closed in the test's teardown. */
export type BusFactory = (t: Test) => Promise<{ create(): Promise<Bus> }>

interface Recorder {
  bus: Bus
  got: BusEvent[]
}

async function subscribed(bus: Bus): Promise<Recorder> {
  const got: BusEvent[] = []
  await bus.subscribe((event) => got.push(event))
  return { bus, got }
}

function message(n: number, origin = 'test:1'): BusMessage {
  return { event: 'tick', data: { n }, target: { broadcast: true }, origin }
}

function increasing(t: Test, ids: string[], what: string): void {
  for (let i = 1; i < ids.length; i++) {
    if (compareEventIds(ids[i - 1] as string, ids[i] as string) >= 0) {
      t.fail(`${what}: ${ids[i - 1]} is not before ${ids[i]}`)
      return
    }
  }
  t.pass(`${what}: strictly increasing`)
}

/**
 * The one behaviour every bus must have. Run against the memory bus and the Redis
 * bus alike; `skip` is the reason to skip it (Redis not reachable).
 */
export function busContract(t: Test, name: string, factory: BusFactory, skip: string | false = false): void {
  t.test(`${name}: the bus contract`, { skip }, async (t) => {
    t.test('publish resolves with a <ms>-<seq> id, strictly increasing across publishers', async (t) => {
      const { create } = await factory(t)
      const a = await create()
      const b = await create()
      const ids: string[] = []
      for (let i = 0; i < 20; i++) ids.push(await (i % 2 === 0 ? a : b).publish(message(i)))
      t.ok(
        ids.every((id) => isValidEventId(id)),
        'every id has the <ms>-<seq> shape',
      )
      increasing(t, ids, 'ids in publish order')
      t.equal(a.status().ready, true, 'ready while open')
    })

    t.test('every subscriber gets every message, its own included, once and in id order', async (t) => {
      const { create } = await factory(t)
      const a = await subscribed(await create())
      const b = await subscribed(await create())
      const published = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          (i % 2 === 0 ? a : b).bus.publish(message(i, `bus-${i % 2}:${i}`)),
        ),
      )
      t.ok(await eventually(() => a.got.length >= 60 && b.got.length >= 60, 5000), 'both got all 60')
      await sleep(100)
      for (const [label, rec] of [
        ['a', a],
        ['b', b],
      ] as const) {
        t.equal(rec.got.length, 60, `${label}: nothing doubled`)
        t.same(new Set(rec.got.map((e) => e.id)), new Set(published), `${label}: exactly the published ids`)
        increasing(
          t,
          rec.got.map((e) => e.id),
          `${label}: delivery order`,
        )
      }
      t.same(
        a.got.map((e) => e.id),
        b.got.map((e) => e.id),
        'the same order everywhere',
      )
      const byId = new Map(a.got.map((e) => [e.id, e]))
      published.forEach((id, i) => {
        const e = byId.get(id)
        if (e?.origin !== `bus-${i % 2}:${i}` || (e.data as { n: number }).n !== i) {
          t.fail(`message ${i} came back as ${JSON.stringify(e)}`)
        }
      })
      t.pass('each id carries its own message and origin')
    })

    t.test('data and targets survive the trip unchanged', async (t) => {
      const { create } = await factory(t)
      const a = await subscribed(await create())
      const cases: BusMessage[] = [
        { event: 'a', data: null, target: { broadcast: true }, origin: 'o:1' },
        { event: 'b', data: 0, target: { userIds: ['alice', 'bob'] }, origin: 'o:2' },
        { event: 'c', data: 'line1\nline2\r\nline3\r', target: { clientIds: ['c-1'] }, origin: 'o:3' },
        {
          event: 'd:e/f.g-h_i',
          data: { text: 'unicode: é 漢字 🚀', nested: [1, { deep: [true, false, null] }] },
          target: { userIds: ['u"1'], clientIds: ['c,2'] },
          origin: 'o:4',
        },
        { event: 'big', data: 'x'.repeat(60_000), target: { broadcast: true }, origin: 'o:5' },
      ]
      const before = Date.now()
      const ids: string[] = []
      for (const c of cases) ids.push(await a.bus.publish(c))
      t.ok(await eventually(() => a.got.length >= cases.length, 5000), 'all arrived')
      cases.forEach((c, i) => {
        const e = a.got[i] as BusEvent
        t.same(
          { event: e.event, data: e.data, target: e.target, origin: e.origin, id: e.id },
          { ...c, id: ids[i] },
          `case ${c.event}`,
        )
        t.equal(e.publishedAt, Number(e.id.split('-')[0]), 'publishedAt is the time part of the id')
        t.ok(Math.abs(e.publishedAt - before) < 60_000, 'publishedAt is now')
      })
    })

    t.test('a new subscriber gets what is published after it subscribed, not before', async (t) => {
      const { create } = await factory(t)
      const a = await create()
      const early = await a.publish(message(1))
      const b = await subscribed(await create())
      const late = await a.publish(message(2))
      t.ok(await eventually(() => b.got.length >= 1, 5000), 'the later one arrived')
      await sleep(100)
      t.same(
        b.got.map((e) => e.id),
        [late],
        `only ${late}, not ${early}`,
      )
    })

    t.test(
      'close stops delivery, refuses publish with SSE_ERR_BUS_UNAVAILABLE, and is idempotent',
      async (t) => {
        const { create } = await factory(t)
        const a = await subscribed(await create())
        const b = await subscribed(await create())
        await b.bus.close()
        await b.bus.close()
        t.equal(b.bus.status().ready, false, 'not ready once closed')
        t.match(b.bus.status().reason, /\S/, 'says why')
        await t.rejects(b.bus.publish(message(1)), { code: 'SSE_ERR_BUS_UNAVAILABLE', statusCode: 503 })
        const id = await a.bus.publish(message(2))
        t.ok(await eventually(() => a.got.some((e) => e.id === id), 5000), 'the open bus still works')
        await sleep(100)
        t.equal(b.got.length, 0, 'the closed bus delivered nothing')
      },
    )
  })
}
