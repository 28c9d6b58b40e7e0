import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { createClient } from 'redis'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { compareEventIds } from '../../src/sse/event-id.js'
import {
  freePort,
  OwnRedis,
  redisServerAvailable,
  skipWithoutRedis,
  TEST_REDIS_URL,
  uniquePrefix,
} from '../bus/redis.js'
import { eventually, mint, openStream, PUBLISHER, SECRET, type Stream, serve, sleep } from '../helper.js'

const noRedis = await skipWithoutRedis()
const noServer = (await redisServerAvailable()) ? false : 'redis-server is not installed'

const ids = (s: Stream, event: string) => s.named(event).map((e) => e.id as string)

/** `src/server.ts` as a real process; a generous start timeout, since the machine may be busy. */
async function startProcess(
  t: Test,
  env: Record<string, string>,
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let output = ''
  child.stderr?.on('data', (chunk) => {
    output += String(chunk)
  })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within 45 s:\n${output}`)), 45_000)
    child.stdout?.on('data', (chunk) => {
      output += String(chunk)
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
      if (match?.[1]) {
        clearTimeout(timer)
        resolve(match[1])
      }
    })
    child.once('exit', (code) => reject(new Error(`exited with ${code}:\n${output}`)))
  })
  return { child, url }
}

async function publishKeyed(url: string, body: unknown, key: string) {
  try {
    const res = await request(`${url}/api/sse`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${PUBLISHER()}`,
        'idempotency-key': key,
      },
      body: JSON.stringify(body),
    })
    const json = (await res.body.json()) as { id?: string }
    return { status: res.statusCode, id: json.id }
  } catch {
    return { status: 0, id: undefined }
  }
}

t.test(
  'SIGKILL of one instance of two during a broadcast: nothing lost, nothing doubled, on either side',
  { skip: noRedis, timeout: 90_000 },
  async (t) => {
    const prefix = uniquePrefix(t, TEST_REDIS_URL)
    const victim = await startProcess(t, {
      NODE_ENV: 'production',
      JWT_SECRET: SECRET,
      CORS_ORIGINS: 'http://127.0.0.1',
      HOST: '127.0.0.1',
      PORT: String(await freePort()),
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: prefix,
      LOG_LEVEL: 'info',
      RATE_LIMIT_PUBLISH: '0',
      HEARTBEAT_INTERVAL_MS: '0',
    })
    const survivor = await serve(t, {
      redisUrl: TEST_REDIS_URL,
      redisPrefix: prefix,
      rateLimitPublish: 0,
      heartbeatIntervalMs: 0,
    })
    const users = ['alice', null, 'bob', null]
    const open = (url: string) => Promise.all(users.map((u) => openStream(url, u ? { token: mint(u) } : {})))
    const onVictim = await open(victim.url)
    const onSurvivor = await open(survivor.url)
    for (const s of [...onVictim, ...onSurvivor]) await s.waitFor((e) => e.event === 'connected')

    // One publisher behind a load balancer that has not noticed the death: it alternates between
    // the two and retries a failed publish on the other with the same Idempotency-Key.
    const accepted: { id: string; user: string | null }[] = []
    let retried = 0
    let killedAt = -1
    for (let n = 0; n < 300; n++) {
      const user = n % 4 === 0 ? 'alice' : null
      const body = { event: 'b', data: { n }, ...(user ? { userIds: [user] } : { broadcast: true }) }
      const key = randomUUID()
      // The kill lands while this publish to the victim is in flight.
      if (n === 120) {
        killedAt = n
        setTimeout(() => victim.child.kill('SIGKILL'), 1)
      }
      let res = await publishKeyed(n % 2 === 0 ? victim.url : survivor.url, body, key)
      if (res.status !== 202) {
        retried++
        res = await publishKeyed(survivor.url, body, key)
      }
      if (res.status !== 202 || res.id === undefined) throw new Error(`publish ${n} failed: ${res.status}`)
      accepted.push({ id: res.id, user })
    }
    t.equal(killedAt, 120)
    const sorted = [...accepted].sort((a, b) => compareEventIds(a.id, b.id))
    const entitled = (user: string | null) =>
      sorted.filter((e) => e.user === null || e.user === user).map((e) => e.id)

    for (const [i, s] of onSurvivor.entries()) {
      const want = entitled(users[i] ?? null)
      await s.waitFor((e) => e.id === want[want.length - 1], 10_000)
      t.same(ids(s, 'b'), want, `survivor client ${i}: every event, once, in order (${want.length})`)
    }
    let replayed = 0
    const before: number[] = []
    for (const [i, s] of onVictim.entries()) {
      await s.waitForEnd(10_000)
      const got = ids(s, 'b')
      before.push(got.length)
      const user = users[i] ?? null
      const lastId = got[got.length - 1] ?? (s.named('connected')[0]?.id as string)
      const again = await openStream(survivor.url, {
        headers: { 'last-event-id': lastId },
        ...(user ? { token: mint(user) } : {}),
      })
      const hello = await again.waitFor((e) => e.event === 'connected')
      t.match(hello.json, { recovered: true }, `victim client ${i} reconnected to the survivor: recovered`)
      const want = entitled(user)
      await again.waitFor((e) => e.id === want[want.length - 1], 10_000)
      replayed += (hello.json as { replayed: number }).replayed
      t.same(
        [...got, ...ids(again, 'b')],
        want,
        `victim client ${i}: before + replayed = every event, once, in order`,
      )
      again.close()
    }
    t.comment(
      `${accepted.length} publishes (${retried} retried on the survivor with their key); the victim's 4 clients had ${before.join(', ')} events when it was killed and were replayed ${replayed} on reconnecting`,
    )
    for (const s of onSurvivor) s.close()
  },
)

t.test(
  'Redis CLIENT PAUSE for 3 s during publishing: publishes wait, none is lost or doubled, streams stay open',
  { skip: noServer, timeout: 60_000 },
  async (t) => {
    const redis = new OwnRedis(await freePort())
    await redis.start()
    t.teardown(() => redis.stop())
    const overrides = {
      redisUrl: redis.url,
      redisPrefix: uniquePrefix(t, redis.url),
      rateLimitPublish: 0,
      heartbeatIntervalMs: 250,
      statsReportIntervalMs: 200,
    }
    const a = await serve(t, overrides)
    const b = await serve(t, overrides)
    const streams = [
      await openStream(a.url),
      await openStream(b.url),
      await openStream(b.url, { token: mint('alice') }),
    ]
    for (const s of streams) await s.waitFor((e) => e.event === 'connected')

    const results: { id?: string; status: number; ms: number; during: boolean }[] = []
    let stop = false
    let paused: { from: number; to: number } | null = null
    const loop = async (url: string) => {
      for (let n = 0; !stop; n++) {
        const started = Date.now()
        const res = await publishKeyed(url, { event: 'p', data: { n }, broadcast: true }, randomUUID())
        const during = paused !== null && started >= paused.from && started < paused.to
        results.push({ ...res, ms: Date.now() - started, during })
        await sleep(10)
      }
    }
    const publishers = [loop(a.url), loop(b.url)]
    await sleep(1000)
    const admin = createClient({ url: redis.url })
    admin.on('error', () => {})
    await admin.connect()
    const beatsBefore = streams.map((s) => s.named('heartbeat').length)
    paused = { from: Date.now(), to: Date.now() + 3000 }
    await admin.sendCommand(['CLIENT', 'PAUSE', '3000', 'WRITE'])
    // More publishers arrive during the pause, twenty at once.
    await sleep(500)
    const burst = Promise.all(
      Array.from({ length: 20 }, async (_, n) => {
        const started = Date.now()
        const res = await publishKeyed(
          n % 2 ? a.url : b.url,
          { event: 'p', data: { n: -n }, broadcast: true },
          randomUUID(),
        )
        results.push({ ...res, ms: Date.now() - started, during: true })
      }),
    )
    await sleep(2500)
    const beatsDuring = streams.map((s, i) => s.named('heartbeat').length - (beatsBefore[i] as number))
    await sleep(1500)
    stop = true
    await Promise.all([...publishers, burst])
    await admin.close()

    const ok = results.filter((r) => r.status === 202)
    const slowest = Math.max(...ok.map((r) => r.ms))
    t.comment(
      `${results.length} publishes: ${ok.length} accepted, ${results.filter((r) => r.during).length} sent during the pause, the slowest took ${slowest} ms; heartbeats during the pause: ${beatsDuring.join(', ')}`,
    )
    t.equal(
      ok.length,
      results.length,
      'every publish was accepted (they waited, within REDIS_MAX_PENDING_BYTES)',
    )
    t.ok(slowest >= 2000, 'the ones sent during the pause waited for it')
    t.ok(
      beatsDuring.every((n) => n >= 8),
      'heartbeats went on during the pause',
    )
    const want = ok.map((r) => r.id as string).sort(compareEventIds)
    for (const [i, s] of streams.entries()) {
      await s.waitFor((e) => e.id === want[want.length - 1], 10_000)
      t.same(ids(s, 'p'), want, `stream ${i}: every event, once, in order (${want.length})`)
      t.equal(s.ended, false, `stream ${i} stayed open`)
      s.close()
    }
    t.ok(
      await eventually(async () => (await fetch(`${a.url}/ready`)).status === 200),
      'ready after the pause',
    )
  },
)
