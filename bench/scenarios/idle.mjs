// Scenario 1: what an idle stream costs. The server's RSS growth divided by N, after N anonymous
// streams have been open for 2 s (the connections stay open for scenario 2).
import { ensureConnections } from '../lib/connections.mjs'
import { fmt, rssOf, sleep } from '../lib/measure.mjs'
import { vsBaseline, vsFloor } from '../lib/report.mjs'

export const name = 'idle'
export const number = 1
export const kinds = ['service', 'floor', 'baseline']

export async function run(ctx, target) {
  ctx.log(`== ${target.name}: 1 idle memory, ${ctx.N} connections`)
  // From no stream at all, so that the growth is the streams' only.
  await ensureConnections(ctx, target, 0, 'anon')
  const rssBefore = rssOf(target.pid)
  const started = Date.now()
  const open = await ensureConnections(ctx, target, ctx.N, 'anon')
  const openMs = Date.now() - started
  await sleep(2000)
  const rssAfter = rssOf(target.pid)
  const result = {
    connections: open,
    openMs,
    rssBeforeMiB: rssBefore / 1048576,
    rssAfterMiB: rssAfter / 1048576,
    bytesPerConnection: open > 0 ? (rssAfter - rssBefore) / open : null,
  }
  ctx.log(`   ${fmt(result.bytesPerConnection)} bytes per connection (${open} open in ${openMs} ms)`)
  return result
}

export function rows() {
  return [
    {
      metric: 'memory per connection (bytes)',
      path: 'idle.bytesPerConnection',
      checks: [vsFloor('<=', 1.1), vsBaseline('<=', 1.2)],
    },
    { metric: `time to open them (ms)`, path: 'idle.openMs' },
    { metric: 'server CPU to open them (s)', path: 'idle.cpu.serverCpuS' },
    { metric: 'load client CPU (s)', path: 'idle.cpu.loadCpuS' },
  ]
}
