// Scenario 8: targeted events in bulk (issue 14). N streams of N different users (scenario 4's, reused
// when it ran just before), then, with as many requests in flight as the publisher pool has connections
// (64) and every event sent to one user, each user getting the same number:
// - P.batchEvents in POST /api/sse/batch of P.batchSize events: goal >= 100,000 delivered events/s;
// - P.singleEvents as single POST /api/sse: goal >= 2x the 6,114/s measured before the verified-token
//   cache, pre-framed chunks and O(1) broadcasts, and next to it, in the same run, the same on a fresh
//   service with JWT_VERIFY_CACHE_SIZE=0 (every publish verifies its token) and on one at the default
//   LOG_LEVEL=info (the others run at warn);
// - over Redis (runRedis, on scenario 6's two instances, N/2 users on each): the batches again,
//   alternating between the instances: goal >= 50,000 delivered events/s.
// The floor (bench/floor.mjs) runs the same batches and single POSTs on streams opened with `?userId=`:
// what Node itself allows for targeted sends on this machine, measured in the same run.
// The load processes check every event: it must reach its user's stream once, and no other stream.
// The closed loop publishes through raw keep-alive sockets (bench/lib/raw-http.mjs), not undici.
import { burst, describe } from '../lib/burst.mjs'
import { ensureConnections, openConnections } from '../lib/connections.mjs'
import { fmt, sleep } from '../lib/measure.mjs'
import { cpuLine, figure, limit, ownRatio, pick } from '../lib/report.mjs'
import { withServer } from '../lib/runner.mjs'

export const name = 'batch'
export const number = 8
/** The service in memory, the floor, and the Redis pair of scenario 6 (see runRedis). */
export const kinds = ['service', 'floor', 'redis']

/** Single POST /api/sse events/s with 64 in flight on 10,000 connected users, before this work (issue 14). */
export const SINGLE_BEFORE = 6114

/** Event k goes to user (k * 7919 + 13) mod N: every block of N events reaches every user once. */
const usersFor = (count, N) => Array.from({ length: count }, (_, k) => (k * 7919 + 13) % N)

/** One measured burst of targeted events, `batch` per request, as many in flight as pool connections. */
async function targetedBurst(ctx, target, count, batch, label) {
  const inFlight = Number(ctx.opt['publish-connections'])
  const names = Array.isArray(target) ? target.map((t) => t.name).join(' + ') : target.name
  ctx.log(
    `== ${names}: 8 ${label}, ${fmt(count)} events to one user each, ${batch === 1 ? 'single POSTs' : `batches of ${batch}`}, ` +
      `${inFlight} requests in flight`,
  )
  const result = await burst(ctx, target, {
    mode: 'targeted',
    count,
    users: usersFor(count, ctx.N),
    inFlight,
    batch,
  })
  result.faults = result.lost + result.duplicates + result.misdelivered + result.publishFailures
  // Over Redis an instance that finds events trimmed before it read them ends all its streams.
  result.streamsEnded = result.endedByServer + result.closedDuring
  ctx.log(describe(result))
  return result
}

/**
 * The single POSTs again on a fresh server of the same kind with `extraEnv` (a reference of the same
 * run); `target`'s streams are closed first, since the fresh server needs the load process's sockets.
 */
async function freshSingles(ctx, target, name, extraEnv, label) {
  await ensureConnections(ctx, target, 0, 'anon')
  return withServer(ctx, target.kind, { name, extraEnv }, async (fresh) => {
    await openConnections(ctx, fresh, ctx.N, target.kind === 'service' ? 'token' : 'query')
    await sleep(1000)
    // Warmed up as the main server is by its batches before its single POSTs: compiled code on both sides.
    await targetedBurst(ctx, fresh, Math.ceil(ctx.P.singleEvents / 3), 1, `single POSTs, ${label}, warm-up`)
    await sleep(500)
    return { single: await targetedBurst(ctx, fresh, ctx.P.singleEvents, 1, `single POSTs, ${label}`) }
  })
}

export async function run(ctx, target) {
  const { P, N } = ctx
  const r = {}
  // The service takes the user from a token; the floor trusts ?userId=.
  r.connections = await ensureConnections(ctx, target, N, target.kind === 'service' ? 'token' : 'query')
  await sleep(1000)
  r.batch = await targetedBurst(ctx, target, P.batchEvents, P.batchSize, 'batches')
  r.single = await targetedBurst(ctx, target, P.singleEvents, 1, 'single POSTs')
  if (target.kind === 'floor') {
    // The same floor behind Fastify's request handling: what any Fastify service pays per request here.
    r.fastify = await freshSingles(
      ctx,
      target,
      'floor-fastify',
      { FLOOR_HTTP: 'fastify' },
      'floor on Fastify',
    )
    return r
  }
  if (target.kind !== 'service') return r
  r.noCache = await freshSingles(
    ctx,
    target,
    'batch-nocache',
    { JWT_VERIFY_CACHE_SIZE: '0' },
    'no token cache',
  )
  // The service runs at LOG_LEVEL=warn here; a new user's service logs at info.
  r.info = await freshSingles(ctx, target, 'batch-info', { LOG_LEVEL: 'info' }, 'LOG_LEVEL=info')
  r.singleVsBefore = r.single.deliveredPerSec / SINGLE_BEFORE
  r.singleVsNoCache = r.single.deliveredPerSec / r.noCache.single.deliveredPerSec
  ctx.log(
    `   single POSTs: ${fmt(r.singleVsBefore)}x the ${fmt(SINGLE_BEFORE)}/s of before, ` +
      `${fmt(r.singleVsNoCache)}x the same without the token cache`,
  )
  return r
}

/** On scenario 6's two instances over Redis: N/2 users on each, the batches alternating between them. */
export async function runRedis(ctx, targets) {
  const { P, N } = ctx
  const halves = [Math.ceil(N / 2), Math.floor(N / 2)]
  await openConnections(ctx, targets[0], halves[0], 'token', 0)
  await openConnections(ctx, targets[1], halves[1], 'token', halves[0])
  await sleep(2000)
  const result = await targetedBurst(ctx, targets, P.redisBatchEvents, P.batchSize, 'batches over Redis')
  return { connections: halves, batch: result }
}

/** Single POSTs: the service against the floor served through Fastify (FLOOR_HTTP=fastify). */
function onFastifyRows(runs) {
  if (!(runs.floor ?? []).some((run) => run.batch?.fastify !== undefined)) return []
  const both = (metric, key) => ({
    metric: `single POSTs, floor on Fastify: ${metric}`,
    values: {
      service: pick(runs, 'service', `batch.single.${key}`),
      floor: pick(runs, 'floor', `batch.fastify.single.${key}`),
    },
  })
  const onFastify = ownRatio(
    runs,
    'floor',
    'batch.fastify.single.deliveredPerSec',
    'batch.single.deliveredPerSec',
  )
  return [
    both('delivered events/s', 'deliveredPerSec'),
    both('latency p99 (ms)', 'p99Ms'),
    both('server CPU per delivery (µs)', 'serverCpuUsPerDelivery'),
    {
      metric: '  floor on Fastify / floor on node:http, single POSTs',
      values: { floor: onFastify },
      text: { floor: `${fmt(onFastify)}x` },
      ratios: false,
    },
  ]
}

export function rows(ctx, runs) {
  const { P } = ctx
  const both = ['service', 'floor']
  const f = (metric, kind, path, extra = {}) =>
    figure(metric, { runs, kind, path: `batch.${path}`, ...extra })
  // Service and floor side by side (the table's ratio columns), or one kind's own figures.
  const burstRows = (label, at, { kind = null, checks = [] } = {}) => {
    const row = (metric, key, extra = {}) =>
      kind === null
        ? { metric: `${label}: ${metric}`, path: `batch.${at}.${key}`, ...extra }
        : f(`${label}: ${metric}`, kind, `${at}.${key}`, extra)
    return [
      row('delivered events/s', 'deliveredPerSec', { checks }),
      row('accepted events/s', 'acceptedPerSec'),
      row('latency p50 (ms)', 'p50Ms'),
      row('latency p99 (ms)', 'p99Ms'),
      row('server CPU per delivery (µs)', 'serverCpuUsPerDelivery'),
      row('events lost, twice, misdelivered, refused', 'faults', kind === null ? { ratios: false } : {}),
      row('streams ended by the server', 'streamsEnded', kind === null ? { ratios: false } : {}),
      cpuLine(
        runs,
        kind ?? both,
        `batch.${at}`,
        `${label}: CPU (s): server / load (%) / publisher; others %`,
      ),
    ]
  }
  const out = []
  if ((runs.service ?? []).some((run) => run.batch !== undefined)) {
    out.push(
      ...burstRows(`batches of ${P.batchSize}`, 'batch', { checks: [limit('>=', 100_000, '/s')] }),
      ...burstRows('single POSTs', 'single'),
      figure(`  single POSTs / ${fmt(SINGLE_BEFORE)}/s before`, {
        runs,
        path: 'batch.singleVsBefore',
        asRatio: true,
        checks: [limit('>=', 2, 'x', { quickSkip: true })],
      }),
      ...burstRows('single POSTs, JWT_VERIFY_CACHE_SIZE=0', 'noCache.single', { kind: 'service' }),
      ...burstRows('single POSTs, LOG_LEVEL=info', 'info.single', { kind: 'service' }),
      figure('  single POSTs: LOG_LEVEL=info / warn', {
        runs,
        value: ownRatio(runs, 'service', 'batch.info.single.deliveredPerSec', 'batch.single.deliveredPerSec'),
        asRatio: true,
      }),
      ...onFastifyRows(runs),
      figure('  single POSTs: token cache / none', {
        runs,
        value: ownRatio(
          runs,
          'service',
          'batch.single.deliveredPerSec',
          'batch.noCache.single.deliveredPerSec',
        ),
        asRatio: true,
      }),
    )
  }
  if ((runs.redis ?? []).some((run) => run.batch !== undefined)) {
    out.push(
      ...burstRows(`2 on Redis, batches of ${P.batchSize}`, 'batch', {
        kind: 'redis',
        checks: [limit('>=', 50_000, '/s')],
      }),
      f('2 on Redis: redis-server CPU (s)', 'redis', 'batch.cpu.redisCpuS'),
    )
  }
  return out
}
