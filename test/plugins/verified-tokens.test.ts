import t from 'tap'
import { VerifiedTokens } from '../../src/plugins/verified-tokens.js'

t.test('kept until exp or the TTL, whichever comes first', async (t) => {
  const cache = new VerifiedTokens<string>(10, 60_000)
  cache.set('a', 'A', 5_000, 0)
  cache.set('b', 'B', undefined, 0)
  t.equal(cache.get('a', 4_999), 'A', 'before its exp')
  t.equal(cache.get('a', 5_000), undefined, 'not at its exp')
  t.equal(cache.get('b', 59_999), 'B', 'no exp: within the TTL')
  t.equal(cache.get('b', 60_000), undefined, 'not past the TTL')
  t.equal(cache.size, 0, 'expired entries are dropped when seen')
  cache.set('c', 'C', 1_000, 1_000)
  t.equal(cache.get('c', 1_000), undefined, 'an already expired token is never stored')
})

t.test('bounded: the least recently used goes first', async (t) => {
  const cache = new VerifiedTokens<number>(3, 60_000)
  for (const [i, token] of ['a', 'b', 'c'].entries()) cache.set(token, i, undefined, 0)
  t.equal(cache.get('a', 1), 0, 'a used again')
  cache.set('d', 3, undefined, 1)
  t.equal(cache.size, 3, 'never more than its size')
  t.equal(cache.get('b', 1), undefined, 'b, the least recently used, went')
  t.same(
    ['a', 'c', 'd'].map((k) => cache.get(k, 1)),
    [0, 2, 3],
    'the others stay',
  )
  for (let i = 0; i < 10_000; i++) cache.set(`t${i}`, i, undefined, 2)
  t.equal(cache.size, 3, 'after 10,000 distinct tokens, still 3')
})

t.test('exact text only: a token differing in one byte is another key', async (t) => {
  const cache = new VerifiedTokens<string>(10, 60_000)
  cache.set('header.payload.signature', 'ok', undefined, 0)
  t.equal(cache.get('header.payload.signaturf', 1), undefined)
  t.equal(cache.get('header.payload.signatur', 1), undefined)
})

t.test('the token asked for last follows the same rules', async (t) => {
  const cache = new VerifiedTokens<string>(2, 60_000)
  cache.set('a', 'A', 1_000, 0)
  t.equal(cache.get('a', 999), 'A', 'asked again: found')
  t.equal(cache.get('a', 1_000), undefined, 'asked again at its exp: gone')
  t.equal(cache.size, 0, 'and dropped')
  cache.set('b', 'B', undefined, 0)
  t.equal(cache.get('b', 1), 'B')
  cache.set('c', 'C', undefined, 1)
  cache.set('d', 'D', undefined, 1)
  t.equal(cache.get('b', 2), undefined, 'the oldest, evicted, is not found')
  t.same([cache.get('c', 2), cache.get('d', 2)], ['C', 'D'], 'the two newest stay')
})
