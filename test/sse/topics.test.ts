import fc from 'fast-check'
import t from 'tap'
import {
  compilePattern,
  isValidPattern,
  isValidTopic,
  matchesPattern,
  planSubscriptions,
  TopicPolicy,
} from '../../src/sse/topics.js'

const segment = fc.stringMatching(/^[A-Za-z0-9_.:@-]{1,12}$/)
const topic = fc.array(segment, { minLength: 1, maxLength: 6 }).map((s) => s.join('/'))
const matches = (pattern: string, value: string, sub: string | null = null) =>
  matchesPattern(compilePattern(pattern, sub), value)

t.test('topic names', async (t) => {
  for (const ok of ['orders/42', 'chat:room-7', 'users/alice/inbox', 'a', 'x@y.z', 'a'.repeat(256)]) {
    t.ok(isValidTopic(ok), ok.slice(0, 40))
  }
  for (const bad of ['', '/a', 'a/', 'a//b', 'a b', 'a*', 'é', 'a'.repeat(257), 'a|b', 'a?b', 'a%2Fb']) {
    t.notOk(isValidTopic(bad), JSON.stringify(bad.slice(0, 40)))
  }
  t.notOk(isValidTopic(42))
})

t.test('patterns', async (t) => {
  for (const ok of ['orders/*', 'public/**', 'users/{sub}/**', '*', '**', 'a/*/b', 'user-{sub}', '{sub}']) {
    t.ok(isValidPattern(ok), ok)
  }
  for (const bad of ['', 'a/**/b', 'a*', 'a/***', 'a//b', '/a', '{sub', 'a b'])
    t.notOk(isValidPattern(bad), bad)
  t.ok(matches('orders/*', 'orders/42'))
  t.notOk(matches('orders/*', 'orders'), '* is exactly one segment')
  t.notOk(matches('orders/*', 'orders/42/items'))
  t.ok(matches('public/**', 'public/a'))
  t.ok(matches('public/**', 'public/a/b/c'))
  t.notOk(matches('public/**', 'public'), '** is one or more segments')
  t.notOk(matches('public/**', 'publicx/a'))
  t.ok(matches('users/{sub}/**', 'users/alice/inbox', 'alice'))
  t.notOk(matches('users/{sub}/**', 'users/bob/inbox', 'alice'))
  t.notOk(matches('users/{sub}/**', 'users/alice/inbox', null), 'no subject: {sub} matches nothing')
  t.ok(matches('chat:{sub}', 'chat:alice', 'alice'), '{sub} inside a segment')
})

t.test('a subject never widens a pattern', async (t) => {
  for (const sub of ['*', '**', 'a/b', '', 'a b', 'auth0|123']) {
    t.notOk(matches('users/{sub}/**', 'users/x/inbox', sub), `sub ${JSON.stringify(sub)}`)
    t.notOk(matches('users/{sub}', 'users/*', sub))
  }
})

t.test('properties', async (t) => {
  fc.assert(
    fc.property(topic, (value) => isValidTopic(value) && matches(value, value)),
    { numRuns: 300 },
  )
  // `*` replaces exactly one segment; `**` any non-empty tail.
  fc.assert(
    fc.property(topic, fc.nat(), (value, n) => {
      const parts = value.split('/')
      const i = n % parts.length
      const star = parts.map((p, j) => (j === i ? '*' : p)).join('/')
      const tail = [...parts.slice(0, i), '**'].join('/')
      return (
        matches(star, value) &&
        matches(tail, value) &&
        !matches(star, `${value}/extra`) === true &&
        (i === 0 || !matches(tail, parts.slice(0, i).join('/')))
      )
    }),
    { numRuns: 300 },
  )
  // A literal pattern matches only its own topic.
  fc.assert(
    fc.property(topic, topic, (a, b) => matches(a, b) === (a === b)),
    { numRuns: 300 },
  )
  // {sub} with a valid segment is the same as writing the segment.
  fc.assert(
    fc.property(topic, segment, (value, sub) => {
      const withSub = `users/{sub}/${value}`
      return (
        matches(withSub, `users/${sub}/${value}`, sub) && !matches(withSub, `users/${sub}x/${value}`, sub)
      )
    }),
    { numRuns: 300 },
  )
  t.pass('1,200 generated cases hold')
})

t.test('TopicPolicy', async (t) => {
  const policy = new TopicPolicy(['public/**', 'users/{sub}/**', 'not a pattern'], 'alice')
  t.ok(policy.allows('public/news'))
  t.ok(policy.allows('users/alice/inbox'))
  t.notOk(policy.allows('users/bob/inbox'))
  t.notOk(policy.allows('bad topic'))
  t.equal(policy.firstForbidden(['public/a', 'private/b', 'private/c']), 'private/b')
  t.equal(policy.firstForbidden(['public/a']), undefined)
  t.equal(new TopicPolicy([], null).firstForbidden(['a']), 'a', 'no pattern: nothing allowed')
})

t.test('planSubscriptions', async (t) => {
  t.same(planSubscriptions(['a', 'b'], ['c', 'a'], ['b']), {
    topics: ['a', 'c'],
    added: ['c'],
    removed: ['b'],
  })
  t.same(planSubscriptions([], ['x', 'x'], []), { topics: ['x'], added: ['x'], removed: [] })
  t.same(planSubscriptions(['a'], ['a'], ['a']), { topics: [], added: [], removed: ['a'] }, 'remove wins')
})
