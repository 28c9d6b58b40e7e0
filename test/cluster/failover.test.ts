import { randomUUID } from 'node:crypto'
import t from 'tap'
import { request } from 'undici'
import { compareEventIds } from '../../src/sse/event-id.js'
import { redisServerAvailable, uniquePrefix } from '../bus/redis.js'
import { eventually, mint, openStream, PUBLISHER, type Stream, serve, sleep } from '../helper.js'
import { onlineReplicas, primaryPort, sentinelsReady, startNode, startSentinel } from './sentinel.js'

const noServer = (await redisServerAvailable())
  ? false
  : 'redis-server is not installed (apt-get install -y redis-server); it also runs the sentinels (--sentinel)'

const NAME = 'mymaster'

interface Attempt {
  n: number
  via: 'a' | 'b'
  key: string
  user: string | null
  startedAt: number
  answeredAt: number
  status: number
  id?: string
  /** A 503 that says the event was stored but its replicas did not confirm in time. */
  stored?: boolean
}

async function publishOnce(
  url: string,
  body: unknown,
  key: string,
): Promise<{ status: number; id?: string; stored?: boolean }> {
  try {
    const res = await request(`${url}/api/sse`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${PUBLISHER()}`,
        'idempotency-key': key,
      },
      body: JSON.stringify(body),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    })
    const json = (await res.body.json()) as { id?: string; message?: string }
    return {
      status: res.statusCode,
      ...(json.id ? { id: json.id } : {}),
      ...(json.message?.includes('it was stored') ? { stored: true } : {}),
    }
  } catch {
    return { status: 0 }
  }
}

const dataN = (s: Stream) => s.named('f').map((e) => ({ id: e.id as string, n: (e.json as { n: number }).n }))

t.test(
  'Sentinel failover under two instances publishing: nothing accepted is lost or doubled',
  { skip: noServer, timeout: 90_000 },
  async (t) => {
    // A primary, two replicas (so that the new primary still has one for REDIS_WAIT_REPLICAS=1),
    // three sentinels, all real processes on free loopback ports.
    const primary = await startNode(t)
    const replicas = [await startNode(t, primary), await startNode(t, primary)]
    t.ok(await eventually(async () => (await onlineReplicas(primary.port)) === 2, 15_000), 'replicas in sync')
    const sentinels = [
      await startSentinel(t, primary, NAME),
      await startSentinel(t, primary, NAME),
      await startSentinel(t, primary, NAME),
    ]
    t.ok(
      await sentinelsReady(sentinels, NAME, 2),
      'the sentinels know the primary, its replicas and each other',
    )

    const overrides = {
      redisUrl: null,
      redisSentinels: sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })),
      redisSentinelName: NAME,
      redisPrefix: uniquePrefix(t, primary.url),
      redisWaitReplicas: 1,
      redisWaitTimeoutMs: 500,
      statsReportIntervalMs: 200,
      heartbeatIntervalMs: 250,
      redisConnectTimeoutMs: 5000,
      rateLimitPublish: 0,
    }
    const a = await serve(t, overrides)
    const b = await serve(t, overrides)
    for (const s of [a, b]) {
      t.ok(await eventually(async () => (await fetch(`${s.url}/ready`)).status === 200, 10_000), 'ready')
    }
    const streams: [Stream, string | null][] = [
      [await openStream(a.url), null],
      [await openStream(b.url), null],
      [await openStream(a.url, { token: mint('alice') }), 'alice'],
      [await openStream(b.url, { token: mint('alice') }), 'alice'],
      [await openStream(b.url, { token: mint('bob') }), 'bob'],
    ]
    for (const [s] of streams) await s.waitFor((e) => e.event === 'connected')

    // Two publishers, one per instance, each one request at a time, without pause.
    const attempts: Attempt[] = []
    let next = 0
    let stop = false
    const loop = async (via: 'a' | 'b', url: string) => {
      while (!stop) {
        const n = next++
        const user = n % 3 === 0 ? 'alice' : null
        const key = randomUUID()
        const startedAt = Date.now()
        const body = { event: 'f', data: { n }, ...(user ? { userIds: [user] } : { broadcast: true }) }
        const res = await publishOnce(url, body, key)
        attempts.push({ n, via, key, user, startedAt, answeredAt: Date.now(), ...res })
        if (res.status !== 202) await sleep(20)
      }
    }
    const publishers = [loop('a', a.url), loop('b', b.url)]
    await sleep(1500)
    const killedAt = Date.now()
    await primary.kill()
    const deadAt = Date.now()
    // Publishing resumes on both instances once they follow the new primary.
    const resumed = (via: 'a' | 'b') =>
      attempts.some((x) => x.via === via && x.status === 202 && x.startedAt > deadAt)
    t.ok(
      await eventually(() => resumed('a') && resumed('b'), 30_000, 50),
      'publishing resumes on both instances',
    )
    await sleep(1000)
    stop = true
    await Promise.all(publishers)
    const newPrimary = await primaryPort(sentinels[0] as (typeof sentinels)[0], NAME)
    t.ok(
      replicas.some((r) => r.port === newPrimary),
      `the sentinels promoted a replica (${newPrimary})`,
    )

    // The numbers: what each side saw.
    const ok = attempts.filter((x) => x.status === 202)
    const refused = attempts.filter((x) => x.status !== 202)
    const inFlight = refused.filter((x) => x.startedAt < deadAt)
    const during = refused.filter((x) => x.startedAt >= deadAt)
    for (const via of ['a', 'b'] as const) {
      const lastBefore = Math.max(
        ...ok.filter((x) => x.via === via && x.answeredAt <= deadAt).map((x) => x.answeredAt),
      )
      const firstAfter = Math.min(
        ...ok.filter((x) => x.via === via && x.startedAt > deadAt).map((x) => x.answeredAt),
      )
      t.comment(
        `instance ${via}: no publish accepted for ${firstAfter - lastBefore} ms (from ${lastBefore - killedAt} ms to ${firstAfter - killedAt} ms after the SIGKILL)`,
      )
    }
    t.comment(
      `${attempts.length} publishes: ${ok.length} answered 202, ${during.length} refused during the failover (503), ${inFlight.length} in flight at the kill`,
    )
    t.ok(ok.length > 50, 'many accepted')
    t.ok(during.length > 0, 'publishes during the failover were refused')
    t.ok(
      during.every((x) => x.status === 503),
      `each with 503 (${[...new Set(during.map((x) => x.status))]})`,
    )

    // Every stream: exactly the accepted events it is entitled to, once, in id order; and no
    // publish refused during the failover with nothing stored. A 503 that says the event was stored
    // (WAIT timed out while the new primary's other replica was still syncing) may be delivered: its
    // retry below answers it, and it must still arrive at most once.
    const expected = (user: string | null) =>
      ok
        .filter((x) => x.user === null || x.user === user)
        .map((x) => x.id as string)
        .sort(compareEventIds)
    const storedUnconfirmed = during.filter((x) => x.stored)
    const refusedDuring = new Set(during.filter((x) => !x.stored).map((x) => x.n))
    t.comment(`${storedUnconfirmed.length} refused as stored but unconfirmed by the replicas`)
    for (const [i, [stream, user]] of streams.entries()) {
      const want = expected(user)
      await stream.waitFor((e) => e.id === want[want.length - 1], 10_000).catch(() => undefined)
      const got = dataN(stream)
      const acceptedIds = new Set(ok.map((x) => x.id))
      t.same(
        got.filter((e) => acceptedIds.has(e.id)).map((e) => e.id),
        want,
        `stream ${i}: every accepted event, once, in order (${want.length})`,
      )
      t.equal(
        got.filter((e) => refusedDuring.has(e.n)).length,
        0,
        `stream ${i}: none of the ${refusedDuring.size} publishes refused during the failover`,
      )
      t.equal(stream.ended, false, `stream ${i} stayed open`)
    }

    // A refused publish is retried with its Idempotency-Key, as the SDK does (with backoff, while
    // 503): whether Redis kept it (a reply lost at the kill) or not, it is delivered exactly once.
    let replayed = 0
    for (const x of refused) {
      const body = { event: 'f', data: { n: x.n }, ...(x.user ? { userIds: [x.user] } : { broadcast: true }) }
      let status = 0
      let last = ''
      // For up to about 20 s, as an SDK configured with retries would.
      for (let attempt = 0; attempt < 25 && status !== 202; attempt++) {
        if (attempt > 0) await sleep(Math.min(100 * attempt, 1000))
        const res = await request(`${x.via === 'a' ? a.url : b.url}/api/sse`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${PUBLISHER()}`,
            'idempotency-key': x.key,
          },
          body: JSON.stringify(body),
        })
        last = await res.body.text()
        status = res.statusCode
        if (status === 202 && res.headers['idempotent-replayed'] === 'true') replayed++
      }
      if (status !== 202) t.fail(`the retries of ${x.n} answered ${status}`, { last, attempt: x, killedAt })
    }
    t.comment(`${refused.length} refused publishes retried with their key: ${replayed} had been stored`)
    await sleep(500)
    const all = attempts.filter((x) => x.status === 202 || refused.includes(x))
    for (const [i, [stream, user]] of streams.entries()) {
      const ns = dataN(stream).map((e) => e.n)
      const want = all.filter((x) => x.user === null || x.user === user).length
      t.equal(new Set(ns).size, ns.length, `stream ${i}: no publish delivered twice`)
      t.equal(ns.length, want, `stream ${i}: every publish delivered once after the retries (${want})`)
      stream.close()
    }
  },
)
