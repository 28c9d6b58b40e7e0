import { createClient } from 'redis'
import t from 'tap'
import { request } from 'undici'
import { eventsKey } from '../../src/bus/redis-entries.js'
import { redisServerAvailable, uniquePrefix } from '../bus/redis.js'
import { eventually, openStream, PUBLISHER, serve, sleep } from '../helper.js'
import { published } from './helper.js'
import { onlineReplicas, startNode } from './sentinel.js'

const noServer = (await redisServerAvailable())
  ? false
  : 'redis-server is not installed (apt-get install -y redis-server)'

async function publishKeyed(url: string, n: number, key: string) {
  const res = await request(`${url}/api/sse`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${PUBLISHER()}`,
      'idempotency-key': key,
    },
    body: JSON.stringify({ event: 'r', data: { n }, broadcast: true }),
  })
  const body = (await res.body.json()) as { id?: string; code?: string; message?: string }
  return { status: res.statusCode, body, replayed: res.headers['idempotent-replayed'] === 'true' }
}

t.test(
  'REDIS_WAIT_REPLICAS=1 on a primary with one replica',
  { skip: noServer, timeout: 60_000 },
  async (t) => {
    const primary = await startNode(t)
    const replica = await startNode(t, primary)
    t.ok(
      await eventually(async () => (await onlineReplicas(primary.port)) === 1, 15_000),
      'the replica is in sync',
    )
    const prefix = uniquePrefix(t, primary.url)
    const overrides = {
      redisUrl: primary.url,
      redisPrefix: prefix,
      redisWaitReplicas: 1,
      redisWaitTimeoutMs: 3000,
      rateLimitPublish: 0,
      heartbeatIntervalMs: 0,
    }
    const { url } = await serve(t, overrides)
    const other = (await serve(t, overrides)).url
    const stream = await openStream(url)
    await stream.waitFor((e) => e.event === 'connected')
    const onReplica = createClient({ url: replica.url })
    onReplica.on('error', () => {})
    await onReplica.connect()
    t.teardown(() => onReplica.close().catch(() => undefined))

    t.test('a 202 means the replica holds the event', async (t) => {
      const res = await publishKeyed(url, 1, 'k1')
      t.equal(res.status, 202)
      const there = await onReplica.xRange(eventsKey(prefix), res.body.id as string, res.body.id as string)
      t.equal(there?.length, 1, 'already on the replica when the 202 arrived')
    })

    t.test(
      'a replica that is slow to confirm: a repeat on the other instance waits for the first answer',
      async (t) => {
        replica.signal('SIGSTOP')
        const first = publishKeyed(url, 2, 'k2')
        await sleep(200)
        const repeat = publishKeyed(other, 2, 'k2')
        await sleep(800)
        replica.signal('SIGCONT')
        const [a, b] = await Promise.all([first, repeat])
        t.equal(a.status, 202, 'the first is confirmed once the replica acknowledges')
        t.equal(b.status, 202, 'the repeat waited for it')
        t.equal(b.replayed, true)
        t.same(b.body, a.body)
      },
    )

    t.test(
      'a replica that does not confirm: 503 (stored), a repeat meanwhile is 409, a retry later is answered once',
      async (t) => {
        replica.signal('SIGSTOP')
        t.teardown(() => replica.signal('SIGCONT'))
        const first = publishKeyed(url, 3, 'k3')
        await sleep(300)
        const during = await publishKeyed(other, 3, 'k3')
        t.equal(during.status, 409, 'a repeat while the first waits for the replica (over 2 s) is 409')
        t.equal(during.body.code, 'SSE_ERR_IDEMPOTENCY_IN_FLIGHT')
        const a = await first
        t.equal(a.status, 503, 'the first gets 503 after REDIS_WAIT_TIMEOUT_MS')
        t.equal(a.body.code, 'SSE_ERR_REPLICAS_UNAVAILABLE')
        t.match(a.body.message, /stored and may still be delivered/, 'saying that WAIT does not roll back')
        const stillStopped = await publishKeyed(url, 3, 'k3')
        t.equal(stillStopped.status, 503, 'a retry while the replica still does not confirm is 503 too')
        replica.signal('SIGCONT')
        let retry = await publishKeyed(url, 3, 'k3')
        for (let i = 0; i < 20 && retry.status !== 202; i++) {
          await sleep(250)
          retry = await publishKeyed(url, 3, 'k3')
        }
        t.equal(retry.status, 202, 'once it confirms, the retry is answered')
        t.equal(retry.replayed, true, 'with the stored event, not a new one')
        await sleep(300)
        const threes = published(stream).filter((e) => (e.json as { n: number }).n === 3)
        t.equal(threes.length, 1, 'delivered once')
        t.equal(threes[0]?.id, retry.body.id)
      },
    )

    t.test('no replica online: 503 at once, nothing stored, nothing delivered', async (t) => {
      await replica.kill()
      t.ok(
        await eventually(async () => (await onlineReplicas(primary.port)) === 0, 5000),
        'the primary sees it gone',
      )
      const before = published(stream).length
      const started = Date.now()
      const res = await publishKeyed(url, 4, 'k4')
      t.equal(res.status, 503)
      t.equal(res.body.code, 'SSE_ERR_REPLICAS_UNAVAILABLE')
      t.match(res.body.message, /nothing was stored/)
      t.ok(Date.now() - started < 1000, 'without waiting for REDIS_WAIT_TIMEOUT_MS')
      await sleep(300)
      t.equal(published(stream).length, before, 'nothing delivered')
      const admin = createClient({ url: primary.url })
      await admin.connect()
      const ids = ((await admin.xRange(eventsKey(prefix), '-', '+')) ?? []).map((e) => e.message.d)
      await admin.close()
      t.notOk(ids.includes('{"n":4}'), 'nothing stored')
    })

    t.teardown(() => stream.close())
  },
)
