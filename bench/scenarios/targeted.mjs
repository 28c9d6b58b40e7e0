// Scenario 4: N streams of N different users, P.targetedSends sends to one user each. The floor has no
// user index (it only broadcasts), so only the service and the baseline run it.
import { burst, describe } from '../lib/burst.mjs'
import { ensureConnections } from '../lib/connections.mjs'
import { sleep } from '../lib/measure.mjs'
import { below, cpuRows } from '../lib/report.mjs'

export const name = 'targeted'
export const number = 4
export const kinds = ['service', 'baseline']

export async function run(ctx, target) {
  const { P, N } = ctx
  ctx.log(`== ${target.name}: 4 targeted, ${P.targetedSends} sends at ${P.targetedRate}/s among ${N} users`)
  // The service takes the user from a token; the baseline trusts ?userId=.
  const open = await ensureConnections(ctx, target, N, target.kind === 'service' ? 'token' : 'query')
  await sleep(1000)
  const users = Array.from({ length: P.targetedSends }, (_, i) => (i * 7919 + 13) % N)
  const result = await burst(ctx, target, {
    mode: 'targeted',
    count: P.targetedSends,
    rate: P.targetedRate,
    users,
  })
  result.connections = open
  ctx.log(describe(result))
  return result
}

export function rows() {
  return [
    { metric: 'latency p50 (ms)', path: 'targeted.p50Ms' },
    { metric: 'latency p99 (ms)', path: 'targeted.p99Ms', checks: [below(10, 'ms')] },
    { metric: 'latency max (ms)', path: 'targeted.maxMs' },
    { metric: 'events lost', path: 'targeted.lost', ratios: false },
    ...cpuRows('targeted', { perDelivery: false }),
  ]
}
