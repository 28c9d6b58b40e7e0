// Scenario 6: two instances of the service on one Redis, N streams split N/2 + N/2, then scenario 2's
// broadcast with the publishes alternating between the instances. Its figures go in the service column
// (the floor and the baseline have no Redis), and a second table puts them next to scenario 2's.
// The same two instances then serve the Redis part of other selected scenarios (`runRedis`: 8's batches).
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { request } from 'undici'
import { burst, describe } from '../lib/burst.mjs'
import { closeConnections, openConnections } from '../lib/connections.mjs'
import { fmt, median, rssOf, sleep, table } from '../lib/measure.mjs'
import { eventBody, post } from '../lib/publish.mjs'
import { deleteKeys, REDIS_URL, redisServer, rememberPrefix } from '../lib/redis.mjs'
import { get, has, pick, ratio } from '../lib/report.mjs'
import { publisherToken, startTarget, stopTarget, waitReady } from '../lib/targets.mjs'

export const name = 'redis'
export const number = 6
/** Not a server of its own: the runner calls run(ctx) once per round, without a target. */
export const kinds = ['redis']

/** GET /api/sse/stats until it counts `n` streams on 2 instances (the others report every 2 s). */
async function clusterStats(target, n) {
  const start = Date.now()
  let stats = null
  let error = null
  while (Date.now() - start < 15_000) {
    try {
      const res = await request(`${target.base}/api/sse/stats`, {
        headers: { authorization: `Bearer ${publisherToken}` },
      })
      if (res.statusCode === 200) {
        stats = await res.body.json()
        error = null
        if (stats.totalConnections === n && stats.instances.length === 2) break
      } else error = `${res.statusCode} ${(await res.body.text()).slice(0, 200)}`
    } catch (err) {
      error = err.message
    }
    await sleep(250)
  }
  return {
    asked: target.name,
    expectedConnections: n,
    totalConnections: stats?.totalConnections ?? null,
    instances: stats?.instances ?? null,
    ok: stats !== null && stats.totalConnections === n && stats.instances.length === 2,
    waitedMs: Date.now() - start,
    error,
  }
}

/** Closes every stream without waiting on the cluster's stats, which lag. */
export async function dropConnections(ctx) {
  await closeConnections(ctx, null, 0)
  await sleep(300)
}

/** Warm-up, as for one instance: not measured. */
async function warmUpPair(ctx, targets) {
  for (const target of targets) await openConnections(ctx, target, Math.min(25, ctx.N), 'anon')
  for (let i = 0; i < 10; i++) await post(targets[i % 2], eventBody(0, null))
  await sleep(200)
  await dropConnections(ctx)
  await sleep(500)
}

async function measure(ctx, targets, r) {
  const { P, N } = ctx
  const halves = [Math.ceil(N / 2), Math.floor(N / 2)]
  ctx.log(`== redis: 6 two instances, ${halves.join(' + ')} connections`)
  const rssBefore = targets.reduce((n, t) => n + rssOf(t.pid), 0)
  // The load processes count every stream they hold, to either instance.
  const perInstance = []
  let openMs = 0
  let open = 0
  for (const [i, target] of targets.entries()) {
    const opened = await openConnections(ctx, target, halves[i], 'anon')
    perInstance.push(opened.open - open)
    open = opened.open
    openMs += opened.ms
  }
  await sleep(2000)
  const rssAfter = targets.reduce((n, t) => n + rssOf(t.pid), 0)
  r.idle = {
    connections: open,
    perInstance,
    openMs,
    rssBeforeMiB: rssBefore / 1048576,
    rssAfterMiB: rssAfter / 1048576,
    bytesPerConnection: open > 0 ? (rssAfter - rssBefore) / open : null,
  }
  ctx.log(`   ${fmt(r.idle.bytesPerConnection)} bytes per connection (${perInstance.join(' + ')} open)`)

  ctx.log(
    `== redis: 6 broadcast over Redis, ${P.broadcastEvents} events at ${P.broadcastRate}/s to ${open}, ` +
      'publishes alternating between the instances',
  )
  r.broadcast = await burst(ctx, targets, {
    mode: 'broadcast',
    count: P.broadcastEvents,
    rate: P.broadcastRate,
  })
  r.broadcast.connections = open
  ctx.log(describe(r.broadcast))

  r.stats = await clusterStats(targets[0], open)
  const per = r.stats.instances?.map((i) => fmt(i.connections)).join(' + ') ?? 'n/a'
  ctx.log(
    `   stats from ${r.stats.asked}: totalConnections ${fmt(r.stats.totalConnections)} (expected ${fmt(open)}), ` +
      `${r.stats.instances?.length ?? 'n/a'} instances (${per}): ${r.stats.ok ? 'ok' : 'NOT OK'}` +
      `${r.stats.error ? `, ${r.stats.error}` : ''}`,
  )
  const failures = targets.reduce((n, t) => n + t.publishFailures, 0)
  if (failures > 0)
    ctx.log(`   ${failures} publishes failed, last: ${targets.find((t) => t.lastFailure)?.lastFailure}`)
  r.publishFailures = failures
}

async function runOnce(ctx) {
  const prefix = `bench:${randomUUID()}:`
  ctx.log(`\n== redis: starting two instances on ${redisServer.url}, prefix ${prefix}`)
  const extraEnv = { REDIS_URL, REDIS_PREFIX: prefix }
  const r = { kind: 'redis', prefix, pids: [] }
  const targets = []
  rememberPrefix(prefix)
  try {
    for (const name of ['redis-a', 'redis-b']) {
      const target = await startTarget(ctx, 'service', { name, extraEnv })
      targets.push(target)
      r.pids.push(target.pid)
    }
    await Promise.all(targets.map(waitReady))
    await warmUpPair(ctx, targets)
    // Scenario 6's broadcast, then the Redis part of every other selected scenario that has one.
    if (ctx.scenarios.some((s) => s.name === name)) await measure(ctx, targets, r)
    for (const scenario of ctx.scenarios) {
      if (scenario.runRedis === undefined) continue
      await dropConnections(ctx)
      r[scenario.name] = await scenario.runRedis(ctx, targets)
    }
  } finally {
    await dropConnections(ctx)
    for (const target of targets) await stopTarget(target)
    r.keys = await deleteKeys(prefix)
    ctx.log(
      r.keys.error
        ? `   could not delete ${prefix}*: ${r.keys.error}`
        : `   deleted ${r.keys.deleted} keys under ${prefix}${r.keys.left > 0 ? `, ${r.keys.left} left` : ''}`,
    )
  }
  r.serverLogLines = 0
  for (const target of targets) {
    const serverLog = readFileSync(target.logFile, 'utf8').trim()
    const lines = serverLog === '' ? 0 : serverLog.split('\n').length
    r.serverLogLines += lines
    if (lines > 0) ctx.log(`   ${target.name} logged ${lines} lines: ${target.logFile}`)
  }
  return r
}

/** Scenario 6 failing (Redis gone mid-run, an instance not ready) does not cost the other scenarios. */
export async function run(ctx) {
  try {
    return await runOnce(ctx)
  } catch (err) {
    ctx.log(`   scenario 6 failed: ${err.message}`)
    ctx.notes.push(`scenario 6 failed: ${err.message}`)
    return { kind: 'redis', error: err.message }
  }
}

/** Per round, scenario 6 against scenario 2 of the same round (difference or ratio); the median. */
function against(runs, path, how) {
  const values = (runs.redis ?? []).map((run, k) => {
    const one = get(runs.service?.[k], path)
    const two = get(run, path)
    if (!has(one) || !has(two)) return null
    return how === 'ratio' ? ratio(two, one) : two - one
  })
  return median(values)
}

const signed = (x) => (has(x) ? `${x >= 0 ? '+' : ''}${fmt(x)}` : 'n/a')

/** The comparison stored in results.json. */
const measured = (runs) => (runs.redis ?? []).some((run) => run.broadcast !== undefined)

export function comparison(runs) {
  if (!measured(runs)) return null
  return {
    extraP50Ms: against(runs, 'broadcast.p50Ms', 'diff'),
    extraP99Ms: against(runs, 'broadcast.p99Ms', 'diff'),
    extraMaxMs: against(runs, 'broadcast.maxMs', 'diff'),
    deliveredPerSecRatio: against(runs, 'broadcast.deliveredPerSec', 'ratio'),
    serverCpuRatio: against(runs, 'broadcast.cpu.serverCpuS', 'ratio'),
  }
}

export function rows(_ctx, runs) {
  if ((runs.redis ?? []).length === 0) return []
  const own = (metric, path) => ({ metric, values: { service: pick(runs, 'redis', path) }, ratios: false })
  const given = (metric, value, text) => ({
    metric,
    values: { service: value },
    text: { service: text },
    ratios: false,
  })
  const statsOk = runs.redis.every((run) => run.stats?.ok === true)
  const instances = median(runs.redis.map((run) => run.stats?.instances?.length))
  const wanted = `== ${fmt(pick(runs, 'redis', 'idle.connections'))} on 2`
  const perInstance = [0, 1].map((i) => median(runs.redis.map((run) => run.broadcast?.cpu?.serversCpuS?.[i])))
  const diff = against(runs, 'broadcast.p50Ms', 'diff')
  const diff99 = against(runs, 'broadcast.p99Ms', 'diff')
  const speed = against(runs, 'broadcast.deliveredPerSec', 'ratio')
  if (!measured(runs)) return []
  return [
    own('delivered events/s', 'broadcast.deliveredPerSec'),
    {
      ...given('events/s: 2 on Redis / 1 in memory', speed, has(speed) ? `${fmt(speed)}x` : 'n/a'),
      checks: [
        { text: '>= 0.9x (issue 14)', pass: () => (has(speed) ? speed >= 0.9 : null), quickSkip: true },
      ],
    },
    own('latency p50 (ms)', 'broadcast.p50Ms'),
    own('latency p99 (ms)', 'broadcast.p99Ms'),
    own('latency max (ms)', 'broadcast.maxMs'),
    given('p50 (ms): 2 on Redis - 1 in memory', diff, signed(diff)),
    given('p99 (ms): 2 on Redis - 1 in memory', diff99, signed(diff99)),
    own('server CPU, both instances (s)', 'broadcast.cpu.serverCpuS'),
    given('server CPU, each instance (s)', null, perInstance.map((x) => fmt(x)).join(' + ')),
    own('server CPU per delivery (µs)', 'broadcast.serverCpuUsPerDelivery'),
    own('redis-server CPU (s)', 'broadcast.cpu.redisCpuS'),
    own('load client CPU (s)', 'broadcast.cpu.loadCpuS'),
    own('load client CPU (% of a core)', 'broadcast.cpu.loadCpuPctMax'),
    own('publisher CPU (s)', 'broadcast.cpu.publisherCpuS'),
    own('other processes (% of a core)', 'broadcast.cpu.otherCpuPct'),
    own('events lost', 'broadcast.lost'),
    own('events duplicated', 'broadcast.duplicates'),
    {
      metric: 'stats: connections on instances',
      values: { service: null },
      text: { service: `${fmt(pick(runs, 'redis', 'stats.totalConnections'))} on ${fmt(instances)}` },
      ratios: false,
      checks: [{ text: wanted, pass: () => statsOk }],
    },
  ]
}

/** Scenario 6 next to scenario 2 of the same rounds. */
export function extraTable(ctx, runs) {
  if (!measured(runs)) return null
  const lines = [
    ['delivered events/s', 'broadcast.deliveredPerSec', 'ratio'],
    ['latency p50 (ms)', 'broadcast.p50Ms', 'diff'],
    ['latency p99 (ms)', 'broadcast.p99Ms', 'diff'],
    ['latency max (ms)', 'broadcast.maxMs', 'diff'],
    ['first recipient (ms, median)', 'broadcast.firstRecipientMsMedian', 'diff'],
    ['fan-out (ms, median)', 'broadcast.fanoutMsMedian', 'diff'],
    ['server CPU (s)', 'broadcast.cpu.serverCpuS', 'ratio'],
    ['server CPU per delivery (µs)', 'broadcast.serverCpuUsPerDelivery', 'ratio'],
    ['events lost', 'broadcast.lost', 'diff'],
    ['events duplicated', 'broadcast.duplicates', 'diff'],
  ].map(([metric, path, how]) => {
    const change = against(runs, path, how)
    return [
      metric,
      fmt(pick(runs, 'service', path)),
      fmt(pick(runs, 'redis', path)),
      how === 'ratio' ? (has(change) ? `${fmt(change)}x` : 'n/a') : signed(change),
    ]
  })
  return (
    `scenario 6 next to scenario 2 (${fmt(pick(runs, 'redis', 'broadcast.connections'))} connections, ` +
    `${ctx.P.broadcastEvents} events at ${ctx.P.broadcastRate}/s, publishes alternating between the two instances):\n` +
    table(lines, ['metric', '1 instance, in memory', '2 instances, Redis', 'Redis adds'])
  )
}
