import t from 'tap'
import { skipWithoutRedis, TEST_REDIS_URL, uniquePrefix } from '../bus/redis.js'
import { memoryLogger, serve } from '../helper.js'

const skip = await skipWithoutRedis()

t.test('a graceful stop on Redis is not reported as an outage', { skip }, async (t) => {
  const { logger, lines } = memoryLogger('info')
  const { app } = await serve(t, { redisUrl: TEST_REDIS_URL, redisPrefix: uniquePrefix(t) }, logger)
  t.ok(lines.some((l) => l.includes('connected to redis')))
  await app.close()
  const warnings = lines.filter((l) => /"level":(40|50)/.test(l) && /redis/i.test(l))
  t.same(warnings, [], 'no warning on a normal shutdown')
})
