import t from 'tap'
import { compareEventIds } from '../../src/sse/event-id.js'
import {
  freePort,
  OwnRedis,
  redisServerAvailable,
  skipWithoutRedis,
  TEST_REDIS_URL,
  uniquePrefix,
} from '../bus/redis.js'
import { startServer } from '../cluster/helper.js'
import {
  eventually,
  mint,
  openStream,
  PUBLISHER,
  post,
  SECRET,
  type Stream,
  serve,
  sleep,
} from '../helper.js'

const noServer = (await redisServerAvailable())
  ? false
  : 'redis-server is not installed (apt-get install -y redis-server)'
const noRedis = await skipWithoutRedis()

const ids = (s: Stream, event: string) => s.named(event).map((e) => e.id as string)

t.test(
  'Redis stopped for seconds while publishing to two instances: every accepted event arrives exactly once',
  { skip: noServer, timeout: 90_000 },
  async (t) => {
    const redis = new OwnRedis(await freePort())
    await redis.start()
    t.teardown(() => redis.stop())
    const overrides = {
      redisUrl: redis.url,
      redisPrefix: uniquePrefix(t, redis.url),
      statsReportIntervalMs: 200,
      heartbeatIntervalMs: 200,
      redisConnectTimeoutMs: 3000,
    }
    const a = await serve(t, overrides)
    const b = await serve(t, overrides)
    const streams = [
      await openStream(a.url),
      await openStream(b.url),
      await openStream(a.url, { token: mint('alice') }),
      await openStream(b.url, { token: mint('alice') }),
      await openStream(b.url, { token: mint('bob') }),
    ]
    for (const s of streams) await s.waitFor((e) => e.event === 'connected')

    const accepted: { id: string; user: string | null }[] = []
    let refused = 0
    let stop = false
    const publisher = (async () => {
      for (let n = 0; !stop; n++) {
        const user = n % 3 === 0 ? 'alice' : null
        const target = user ? { userIds: [user] } : { broadcast: true }
        const via = n % 2 === 0 ? a.url : b.url
        const res = await post(via, '/api/sse', { event: 'f', data: { n }, ...target }, PUBLISHER()).catch(
          () => null,
        )
        if (res?.status === 202) accepted.push({ id: res.body.id, user })
        else if (res?.status === 503) refused++
        else t.fail(`unexpected answer ${res?.status}`)
        await sleep(20)
      }
    })()
    await sleep(600)
    await redis.stop('SIGKILL')
    await sleep(2500)
    // Everything accepted so far was stored by the Redis that was killed; during the outage nothing is.
    const storedBeforeKill = accepted.length
    await redis.start()
    t.ok(await eventually(async () => (await fetch(`${a.url}/ready`)).status === 200, 15_000), 'ready again')
    await sleep(800)
    stop = true
    await publisher
    t.ok(refused > 0, `publishes during the outage were refused with 503 (${refused})`)
    t.ok(accepted.length > 20, `${accepted.length} accepted`)
    t.ok(accepted.length > storedBeforeKill, 'publishes were accepted after the restart')

    // That Redis kept nothing on disk: an event it had stored in its last moments and that an instance
    // had not read yet is gone for that instance's streams. So each stream gets every event accepted
    // before the kill but perhaps the last few of them, then every event accepted after the restart:
    // nothing twice, nothing out of order, nothing missing from the middle or after the restart.
    const entitled = (all: boolean, from: number, to: number) =>
      accepted
        .slice(from, to)
        .filter((e) => all || e.user === null)
        .map((e) => e.id)
    const last = accepted[accepted.length - 1]?.id as string
    const lastBroadcast = entitled(false, 0, accepted.length).at(-1) as string
    const expectations: [Stream, boolean, string][] = [
      [streams[0] as Stream, false, lastBroadcast],
      [streams[1] as Stream, false, lastBroadcast],
      [streams[2] as Stream, true, last],
      [streams[3] as Stream, true, last],
      [streams[4] as Stream, false, lastBroadcast],
    ]
    let lostAtKill = 0
    for (const [i, [stream, all, lastId]] of expectations.entries()) {
      await stream.waitFor((e) => e.id === lastId, 10_000)
      const got = ids(stream, 'f')
      const before = entitled(all, 0, storedBeforeKill)
      const after = entitled(all, storedBeforeKill, accepted.length)
      const kept = got.length - after.length
      t.ok(kept >= 0 && kept <= before.length, `stream ${i}: no event more than accepted`)
      lostAtKill = Math.max(lostAtKill, before.length - kept)
      t.same(
        got,
        [...before.slice(0, kept), ...after],
        `stream ${i}: every accepted event it is entitled to, once, in order (but ${before.length - kept} stored in the last moment before the kill)`,
      )
      t.ok(before.length - kept <= 5, `stream ${i}: what the kill took is the last few events at most`)
      t.equal(stream.ended, false, `stream ${i} stayed open through the outage`)
      stream.close()
    }
    t.comment(`${storedBeforeKill} accepted before the kill, at most ${lostAtKill} of them lost with it`)
  },
)

t.test(
  'SIGTERM during a broadcast: each client ends cleanly and a reconnect elsewhere loses nothing',
  { skip: noRedis, timeout: 90_000 },
  async (t) => {
    const prefix = uniquePrefix(t, TEST_REDIS_URL)
    const port = await freePort()
    const proc = await startServer(t, {
      NODE_ENV: 'production',
      JWT_SECRET: SECRET,
      CORS_ORIGINS: 'http://127.0.0.1',
      HOST: '127.0.0.1',
      PORT: String(port),
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: prefix,
      LOG_LEVEL: 'info',
      RATE_LIMIT_PUBLISH: '0',
    })
    const fresh = await serve(t, { redisUrl: TEST_REDIS_URL, redisPrefix: prefix, rateLimitPublish: 0 })
    const clients = await Promise.all(
      Array.from({ length: 6 }, (_, i) => openStream(proc.url, i % 2 ? { token: mint(`u${i}`) } : {})),
    )
    for (const c of clients) await c.waitFor((e) => e.event === 'connected')

    // A burst of broadcasts, published through the surviving instance, with SIGTERM in the middle.
    const accepted: string[] = []
    const burst = (async () => {
      for (let n = 0; n < 300; n++) {
        const res = await post(
          fresh.url,
          '/api/sse',
          { event: 'burst', data: { n }, broadcast: true },
          PUBLISHER(),
        )
        if (res.status === 202) accepted.push(res.body.id)
        if (n === 100) proc.child.kill('SIGTERM')
      }
    })()
    const exit = new Promise<number | null>((resolve) => proc.child.once('exit', (code) => resolve(code)))
    await burst
    t.equal(await exit, 0, 'the process exits 0')
    t.equal(accepted.length, 300)

    for (const [i, c] of clients.entries()) {
      await c.waitForEnd(10_000)
      const got = ids(c, 'burst')
      const last = c.events[c.events.length - 1]
      t.ok(
        (last?.event === 'disconnected' && (last.json as { reason: string }).reason === 'server_shutdown') ||
          got[got.length - 1] === accepted[accepted.length - 1],
        `client ${i} got the shutdown event or the last event`,
      )
      // Reconnect to the fresh instance with the id it saw last.
      const lastId = got[got.length - 1] ?? (c.named('connected')[0]?.id as string)
      const again = await openStream(fresh.url, {
        headers: { 'last-event-id': lastId },
        ...(i % 2 ? { token: mint(`u${i}`) } : {}),
      })
      const hello = await again.waitFor((e) => e.event === 'connected')
      t.match(hello.json, { recovered: true }, `client ${i} recovered`)
      const final = accepted[accepted.length - 1] as string
      if (compareEventIds(lastId, final) < 0) await again.waitFor((e) => e.id === final, 10_000)
      const union = [...got, ...ids(again, 'burst')]
      t.same(union, accepted, `client ${i}: before + replayed = every event, once, in order`)
      again.close()
    }
  },
)
