import t from 'tap'
import { appendArgs, appendReplyOf } from '../../src/bus/redis-scripts.js'

t.test("APPEND's answers decode to what the bus acts on", async (t) => {
  t.same(appendReplyOf(['mismatch']), { status: 'mismatch' })
  t.same(
    appendReplyOf(['seen', '1-0,2-0', '{"id":"1-0"}', '', '250']),
    { status: 'seen', record: { ids: ['1-0', '2-0'], answer: '{"id":"1-0"}', failed: false, ageMs: 250 } },
    'a record with its answer',
  )
  t.same(
    appendReplyOf(['seen', '', '', '1', '9']),
    { status: 'seen', record: { ids: [], answer: null, failed: true, ageMs: 9 } },
    'a failed record without ids or answer',
  )
  t.same(appendReplyOf(['replicas', '1']), { status: 'replicas', online: 1 })
  t.same(
    appendReplyOf(['ok', '5-0,5-1', '12', '10', '4096']),
    { status: 'ok', ids: ['5-0', '5-1'], added: 12, length: 10, bytes: 4096 },
    'stored: ids in order, then what the pacer learns',
  )
})

t.test('APPEND takes its bounds, the record fields and the count as its first nine arguments', async (t) => {
  const args = appendArgs({ maxLength: 1000, maxBytes: 2048, replicas: 1 }, '7-0', 'fp', 60_000, 3)
  t.equal(args.length, 9)
  t.same(args.slice(0, 4), ['1000', '2048', '7-0', '1'])
  t.same(args.slice(6), ['fp', '60000', '3'])
})
