// Scenario 3: fewer streams (P.satN), P.satEvents published all at once: how fast a server can go.
import { burst, describe } from '../lib/burst.mjs'
import { ensureConnections } from '../lib/connections.mjs'
import { cpuRows, vsBaseline, vsFloor } from '../lib/report.mjs'

export const name = 'saturation'
export const number = 3
export const kinds = ['service', 'floor', 'baseline']

export async function run(ctx, target) {
  const { P } = ctx
  ctx.log(`== ${target.name}: 3 saturation, ${P.satEvents} events at once to ${P.satN}`)
  // Kept from scenarios 1 and 2 when they ran: the first P.satN of those streams.
  const open = await ensureConnections(ctx, target, P.satN, 'anon')
  const result = await burst(ctx, target, { mode: 'broadcast', count: P.satEvents, rate: 0 })
  result.connections = open
  ctx.log(describe(result))
  return result
}

export function rows() {
  return [
    {
      metric: 'delivered events/s',
      path: 'saturation.deliveredPerSec',
      checks: [vsFloor('>=', 0.9), vsBaseline('>=', 3)],
    },
    { metric: 'time to deliver all (s)', path: 'saturation.spanS' },
    { metric: 'latency p50 (ms)', path: 'saturation.p50Ms' },
    { metric: 'latency p99 (ms)', path: 'saturation.p99Ms', checks: [vsFloor('<=', 1.2)] },
    { metric: 'events lost', path: 'saturation.lost', ratios: false },
    ...cpuRows('saturation'),
  ]
}
