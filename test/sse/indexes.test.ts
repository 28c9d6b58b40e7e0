import fc from 'fast-check'
import t from 'tap'
import type { SseClient } from '../../src/sse/client.js'
import { ClientSetIndex } from '../../src/sse/indexes.js'

const clients = Array.from({ length: 4 }, (_, i) => ({ id: `c${i}` }) as unknown as SseClient)

t.test('a key with one connection, then more, then one again, then none', async (t) => {
  const index = new ClientSetIndex()
  const [a, b, c] = clients as [SseClient, SseClient, SseClient]
  t.equal(index.add('k', a), true, 'the first')
  t.equal(index.add('k', a), true, 'the same one again is still the only one')
  t.same([...(index.get('k') ?? [])], [a])
  t.equal(index.entry('k'), a, 'one connection is held as it is')
  t.equal(index.add('k', b), false)
  t.ok(index.entry('k') instanceof Set, 'two make a Set')
  t.equal(index.add('k', c), false)
  t.same([...(index.get('k') ?? [])], [a, b, c], 'in the order they came')
  t.equal(index.count('k'), 3)
  t.equal(index.remove('k', a), false)
  t.equal(index.remove('k', a), false, 'a connection that is not there')
  t.equal(index.remove('k', c), false)
  t.same([...(index.get('k') ?? [])], [b])
  t.equal(index.count('k'), 1)
  t.equal(index.remove('k', c), false, 'not the one left')
  t.equal(index.remove('k', b), true, 'the last one')
  t.equal(index.get('k'), undefined)
  t.equal(index.count('k'), 0)
  t.equal(index.size, 0)
  t.equal(index.remove('k', b), false)
})

t.test('the same answers as a Map of Sets, whatever the order of adds and removes', async (t) => {
  const op = fc.record({
    add: fc.boolean(),
    key: fc.constantFrom('x', 'y', 'z'),
    client: fc.integer({ min: 0, max: clients.length - 1 }),
  })
  fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const index = new ClientSetIndex()
      const model = new Map<string, Set<SseClient>>()
      for (const { add, key, client: i } of ops) {
        const client = clients[i] as SseClient
        const set = model.get(key) ?? new Set<SseClient>()
        if (add) {
          set.add(client)
          model.set(key, set)
          if (index.add(key, client) !== (set.size === 1)) return false
        } else {
          const had = set.delete(client)
          const emptied = had && set.size === 0
          if (set.size === 0) model.delete(key)
          if (index.remove(key, client) !== emptied) return false
        }
        for (const k of ['x', 'y', 'z']) {
          const want = [...(model.get(k) ?? [])]
          if (index.count(k) !== want.length) return false
          if (JSON.stringify([...(index.get(k) ?? [])]) !== JSON.stringify(want)) return false
        }
        if (index.size !== model.size) return false
      }
      const top = index.top(2)
      const wantTop = [...model]
        .map(([key, set]) => ({ key, connections: set.size }))
        .sort((a, b) => b.connections - a.connections || (a.key < b.key ? -1 : 1))
        .slice(0, 2)
      return JSON.stringify(top) === JSON.stringify(wantTop)
    }),
    { numRuns: 500 },
  )
  t.pass('500 sequences')
})
