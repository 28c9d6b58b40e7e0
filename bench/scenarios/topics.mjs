// Scenario 7: topics (issue 10). Service only: the floor and the baseline have no topics.
//
// On the server of scenarios 1 to 5, N streams of N users (tokens), stream i subscribed in its URL to
// one shared topic and to t.<i>.0 (N + 1 topics):
// - Speed: the same events published to the shared topic (T) and as broadcasts (B) to the same streams,
//   in the order T, B, B, T, T, B: other processes' load changes within seconds, so the ratio is the
//   median of the three neighbouring pairs. The topic is a targeted send to N recipients: the goal is
//   >= 0.9x the broadcast's delivered events/s.
// - No scan: P.targetedSends sends to one topic with exactly one subscriber (as scenario 4 sends to
//   one user), with N topics (goal: p99 < 10 ms), then with N/10 and 10N topics, twice each (small,
//   large, large, small). The number of topics is changed with POST /api/sse/subscriptions on the same
//   streams, so that every figure comes from one process; p50, p99 and the server CPU per send must
//   not grow with the number of topics (an index by topic, not a scan).
// - Memory: RSS growth per stream for N idle anonymous streams with no topic and for N with 10 topics
//   each in their URL (10N distinct topics), each on a fresh server, as scenario 1 measures it (a
//   server that has held streams keeps their memory, and new ones would fill it for free). Goal <= 1.3x.
import { burst, describe } from '../lib/burst.mjs'
import { ensureConnections, openConnections } from '../lib/connections.mjs'
import { fmt, median, rssOf, sleep } from '../lib/measure.mjs'
import { closedLoop, rawPost } from '../lib/publish.mjs'
import { cpuLine, figure, limit } from '../lib/report.mjs'
import { withServer } from '../lib/runner.mjs'
import { serviceStats, warmRaw } from '../lib/targets.mjs'

export const name = 'topics'
export const number = 7
export const kinds = ['service']

const SHARED = 'all'

/** RSS growth per stream once N anonymous streams subscribed to `topics` have been open for 2 s. */
async function idleMemory(ctx, target, topics, label) {
  ctx.log(`== ${target.name}: 7 idle memory, ${ctx.N} connections with ${label}`)
  const rssBefore = rssOf(target.pid)
  const started = Date.now()
  const opened = await openConnections(ctx, target, ctx.N, 'anon', 0, topics)
  const openMs = Date.now() - started
  await sleep(2000)
  const rssAfter = rssOf(target.pid)
  const stats = await serviceStats(target)
  const result = {
    connections: opened.open,
    topicsOnServer: stats?.topics ?? null,
    openMs,
    rssBeforeMiB: rssBefore / 1048576,
    rssAfterMiB: rssAfter / 1048576,
    bytesPerConnection: opened.open > 0 ? (rssAfter - rssBefore) / opened.open : null,
  }
  ctx.log(
    `   ${fmt(result.bytesPerConnection)} bytes per connection (${opened.open} open in ${openMs} ms, ` +
      `${fmt(result.topicsOnServer)} topics on the server)`,
  )
  return result
}

/**
 * P.targetedSends sends to one topic each, t.<i>.<j> of stream i (i among the first `count`, j below
 * `per`): every send has exactly one recipient, whatever the number of topics.
 */
async function topicSends(ctx, target, { count, per }) {
  const { P } = ctx
  const stats = await serviceStats(target)
  const topics = stats?.topics ?? null
  ctx.log(
    `== ${target.name}: 7 targeted topic sends, ${P.targetedSends} at ${P.targetedRate}/s, ` +
      `${fmt(stats?.totalConnections)} connections, ${fmt(topics)} topics`,
  )
  const users = Array.from({ length: P.targetedSends }, (_, k) => (k * 7919 + 13) % count)
  const result = await burst(ctx, target, {
    mode: 'targeted',
    count: P.targetedSends,
    rate: P.targetedRate,
    users,
    toOf: (k) => ({ topic: `t.${users[k]}.${k % per}` }),
  })
  result.topicsOnServer = topics
  result.connections = stats?.totalConnections ?? null
  result.serverCpuUsPerSend = (result.cpu.serverCpuS * 1e6) / P.targetedSends
  result.faults = result.lost + result.duplicates + result.misdelivered + result.publishFailures
  ctx.log(describe(result))
  return result
}

const topicsOf = (i, from, to) => Array.from({ length: to - from }, (_, j) => `t.${i}.${from + j}`)

/**
 * Sets the topics of every user's stream with POST /api/sse/subscriptions (64 in flight): `small`
 * leaves t.<i>.0 to the first N/10 users only, `large` gives every user t.<i>.0 to t.<i>.9. The
 * shared topic stays. Every answer must count one stream changed.
 */
async function reshape(ctx, target, shape, small) {
  const started = Date.now()
  let wrong = 0
  await warmRaw(ctx, target)
  await closedLoop(ctx.N, Number(ctx.opt['publish-connections']), async (i) => {
    const change =
      shape === 'large' ? { add: topicsOf(i, 0, 10) } : { remove: topicsOf(i, i < small ? 1 : 0, 10) }
    const { status, body } = await rawPost(
      target,
      '/api/sse/subscriptions',
      JSON.stringify({ userIds: [`u${i}`], ...change }),
    )
    if (status !== 200 || JSON.parse(body).matched !== 1) wrong++
  })
  // The `subscriptions` frames the streams got are flushed before anything is measured.
  await sleep(500)
  const topics = (await serviceStats(target))?.topics
  ctx.log(
    `   ${shape}: ${fmt(topics)} topics after ${Date.now() - started} ms${wrong ? `, ${wrong} failed` : ''}`,
  )
  return wrong
}

/** The same events to one topic all N streams share, and as broadcasts: T, B, B, T, T, B. */
async function topicVersusBroadcast(ctx, target) {
  const { P } = ctx
  const out = { viaTopic: [], viaBroadcast: [] }
  for (const how of ['topic', 'broadcast', 'broadcast', 'topic', 'topic', 'broadcast']) {
    ctx.log(
      `== ${target.name}: 7 ${P.broadcastEvents} events at ${P.broadcastRate}/s ` +
        `${how === 'topic' ? `to topic "${SHARED}"` : 'as broadcasts'}, ${target.streams.open} connections`,
    )
    const result = await burst(ctx, target, {
      mode: 'broadcast',
      count: P.broadcastEvents,
      rate: P.broadcastRate,
      toOf: how === 'topic' ? () => ({ topic: SHARED }) : () => null,
    })
    ctx.log(describe(result))
    ;(how === 'topic' ? out.viaTopic : out.viaBroadcast).push(result)
  }
  const med = (list, key) => median(list.map((m) => m[key]))
  for (const key of ['deliveredPerSec', 'p50Ms', 'p99Ms', 'serverCpuUsPerDelivery']) {
    out[`topic_${key}`] = med(out.viaTopic, key)
    out[`broadcast_${key}`] = med(out.viaBroadcast, key)
  }
  // Pairs measured next to each other: (T, B), (B, T), (T, B).
  out.speedRatio = median(out.viaTopic.map((t, i) => t.deliveredPerSec / out.viaBroadcast[i].deliveredPerSec))
  out.cpuRatio = median(
    out.viaTopic.map((t, i) => t.serverCpuUsPerDelivery / out.viaBroadcast[i].serverCpuUsPerDelivery),
  )
  out.faults = [...out.viaTopic, ...out.viaBroadcast].reduce(
    (n, m) => n + m.lost + m.duplicates + m.publishFailures,
    0,
  )
  // The CPU line shows the first topic burst.
  out.cpu = out.viaTopic[0].cpu
  return out
}

export async function run(ctx, target) {
  const { N } = ctx
  const small = Math.max(1, Math.floor(N / 10))
  const r = { small, mid: N, large: 10 * N }

  // On the server of scenarios 1 to 5: one shared topic and one of its own per stream (N + 1 topics).
  await ensureConnections(ctx, target, N, 'token', { shared: [SHARED], per: 1 })
  await sleep(1000)
  r.speed = await topicVersusBroadcast(ctx, target)
  r.targetedMid = await topicSends(ctx, target, { count: N, per: 1 })
  // N/10 and 10N topics on the same streams, alternating: small, large, large, small.
  r.reshapeFailures = await reshape(ctx, target, 'small', small)
  const smallRuns = [await topicSends(ctx, target, { count: small, per: 1 })]
  r.reshapeFailures += await reshape(ctx, target, 'large', small)
  const largeRuns = [await topicSends(ctx, target, { count: N, per: 10 })]
  largeRuns.push(await topicSends(ctx, target, { count: N, per: 10 }))
  r.reshapeFailures += await reshape(ctx, target, 'small', small)
  smallRuns.push(await topicSends(ctx, target, { count: small, per: 1 }))
  r.targetedSmall = summary(smallRuns)
  r.targetedLarge = summary(largeRuns)
  // Pairs measured next to each other: (small, large), then (large, small).
  const pairs = (key) => median(largeRuns.map((m, i) => m[key] / smallRuns[i][key]))
  r.largeVsSmall = {
    p50: pairs('p50Ms'),
    p99: pairs('p99Ms'),
    serverCpuUsPerSend: pairs('serverCpuUsPerSend'),
  }
  // The fresh servers need the load process's sockets.
  await ensureConnections(ctx, target, 0, 'anon')

  r.none = await withServer(ctx, 'service', { name: 'topics-none' }, async (fresh) => ({
    idle: await idleMemory(ctx, fresh, null, 'no topic'),
  }))
  r.ten = await withServer(ctx, 'service', { name: 'topics-ten' }, async (fresh) => ({
    idle: await idleMemory(ctx, fresh, { per: 10 }, '10 topics each'),
  }))
  r.memoryRatio = r.ten.idle.bytesPerConnection / r.none.idle.bytesPerConnection
  ctx.log(
    `   topic ÷ broadcast ${fmt(r.speed.speedRatio)}x events/s; memory with 10 topics ÷ none ` +
      `${fmt(r.memoryRatio)}x; ${fmt(r.large)} ÷ ${fmt(r.small)} topics: p50 ${fmt(r.largeVsSmall.p50)}x, ` +
      `p99 ${fmt(r.largeVsSmall.p99)}x, CPU per send ${fmt(r.largeVsSmall.serverCpuUsPerSend)}x`,
  )
  return r
}

/** Two runs of the same sends: the medians, and both runs for results.json. */
function summary(runs) {
  const out = { runs }
  for (const key of ['p50Ms', 'p99Ms', 'maxMs', 'serverCpuUsPerSend', 'topicsOnServer'])
    out[key] = median(runs.map((m) => m[key]))
  out.faults = runs.reduce((n, m) => n + m.faults, 0)
  // The CPU line shows the first run.
  out.cpu = runs[0].cpu
  return out
}

export function rows(ctx, runs) {
  const { N } = ctx
  const small = fmt(Math.max(1, Math.floor(N / 10)))
  const f = (metric, path, extra = {}) => figure(metric, { runs, path: `topics.${path}`, ...extra })
  const ratio = (metric, path, checks = []) =>
    figure(metric, { runs, path: `topics.${path}`, asRatio: true, checks })
  const sends = (label, at) => [
    f(`topic send, ${label}: latency p50 (ms)`, `${at}.p50Ms`),
    f(`topic send, ${label}: latency p99 (ms)`, `${at}.p99Ms`, {
      checks: at === 'targetedMid' ? [limit('<', 10, ' ms')] : [],
    }),
    f(`topic send, ${label}: server CPU per send (µs)`, `${at}.serverCpuUsPerSend`),
    f(`topic send, ${label}: events lost, twice, misdelivered`, `${at}.faults`),
    cpuLine(
      runs,
      'service',
      `topics.${at}`,
      `topic send, ${label}: CPU (s): server / load / publisher; others`,
    ),
  ]
  return [
    f(`one topic, ${fmt(N)} subscribers: delivered events/s`, 'speed.topic_deliveredPerSec'),
    f(`  broadcast, same streams: delivered events/s`, 'speed.broadcast_deliveredPerSec'),
    ratio('  topic / broadcast, events/s', 'speed.speedRatio', [limit('>=', 0.9, 'x', { quickSkip: true })]),
    f(`one topic: latency p50 (ms)`, 'speed.topic_p50Ms'),
    f(`  broadcast: latency p50 (ms)`, 'speed.broadcast_p50Ms'),
    f(`one topic: latency p99 (ms)`, 'speed.topic_p99Ms'),
    f(`  broadcast: latency p99 (ms)`, 'speed.broadcast_p99Ms'),
    f(`one topic: server CPU per delivery (µs)`, 'speed.topic_serverCpuUsPerDelivery'),
    f(`  broadcast: server CPU per delivery (µs)`, 'speed.broadcast_serverCpuUsPerDelivery'),
    ratio('  topic / broadcast, CPU per delivery', 'speed.cpuRatio'),
    f('one topic and broadcasts: events lost or twice', 'speed.faults'),
    cpuLine(runs, 'service', 'topics.speed', 'one topic: CPU (s): server / load / publisher; others'),
    f(`idle, no topic: memory per connection (bytes)`, 'none.idle.bytesPerConnection'),
    f(`idle, 10 topics each: memory per connection (bytes)`, 'ten.idle.bytesPerConnection'),
    ratio('  10 topics / none, memory', 'memoryRatio', [limit('<=', 1.3, 'x')]),
    ...sends(`${fmt(N)} topics`, 'targetedMid'),
    ...sends(`${small} topics (2 runs)`, 'targetedSmall'),
    ...sends(`${fmt(10 * N)} topics (2 runs)`, 'targetedLarge'),
    ratio(`  ${fmt(10 * N)} / ${small} topics: p50`, 'largeVsSmall.p50'),
    ratio(`  ${fmt(10 * N)} / ${small} topics: p99`, 'largeVsSmall.p99'),
    ratio(`  ${fmt(10 * N)} / ${small} topics: CPU per send`, 'largeVsSmall.serverCpuUsPerSend', [
      limit('<=', 1.5, 'x (no scan)'),
    ]),
    f('  streams whose topics could not be changed', 'reshapeFailures'),
  ]
}
