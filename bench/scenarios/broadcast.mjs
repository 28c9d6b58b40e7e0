// Scenario 2: N streams, a steady broadcast (P.broadcastEvents at P.broadcastRate per second, ~100 B).
import { burst, describe } from '../lib/burst.mjs'
import { ensureConnections } from '../lib/connections.mjs'
import { below, cpuRows, vsBaseline, vsFloor } from '../lib/report.mjs'

export const name = 'broadcast'
export const number = 2
export const kinds = ['service', 'floor', 'baseline']

export async function run(ctx, target) {
  const { P } = ctx
  const open = await ensureConnections(ctx, target, ctx.N, 'anon')
  ctx.log(`== ${target.name}: 2 broadcast, ${P.broadcastEvents} events at ${P.broadcastRate}/s to ${open}`)
  const result = await burst(ctx, target, {
    mode: 'broadcast',
    count: P.broadcastEvents,
    rate: P.broadcastRate,
  })
  result.connections = open
  ctx.log(describe(result))
  return result
}

export function rows() {
  return [
    {
      metric: 'delivered events/s',
      path: 'broadcast.deliveredPerSec',
      // In quick mode every server keeps up with N x 100 events/s: there is nothing to compare.
      checks: [
        { ...vsFloor('>=', 0.9), quickSkip: true },
        { ...vsBaseline('>=', 3), quickSkip: true },
      ],
    },
    { metric: 'latency p50 (ms)', path: 'broadcast.p50Ms' },
    { metric: 'latency p99 (ms)', path: 'broadcast.p99Ms', checks: [vsFloor('<=', 1.2), below(1000, 'ms')] },
    { metric: 'latency max (ms)', path: 'broadcast.maxMs' },
    { metric: 'first recipient (ms, median)', path: 'broadcast.firstRecipientMsMedian' },
    { metric: 'fan-out (ms, median)', path: 'broadcast.fanoutMsMedian' },
    { metric: 'events lost', path: 'broadcast.lost', ratios: false },
    ...cpuRows('broadcast'),
  ]
}
