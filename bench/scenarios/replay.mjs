// Scenario 5: a reconnect with Last-Event-ID. P.replayEvents are published, then a client connects
// with the id of the event just before them; the time from connect to the last replayed event is
// measured P.replayRuns times (median). Service only: the floor and the baseline keep no history.
import net from 'node:net'
import { ensureConnections } from '../lib/connections.mjs'
import { fmt, median, nowUs } from '../lib/measure.mjs'
import { eventBody, post, publish, reserve } from '../lib/publish.mjs'
import { below } from '../lib/report.mjs'

export const name = 'replay'
export const number = 5
export const kinds = ['service']

const PATTERN = Buffer.from('data: {"s":')

/** One reconnect on a raw socket; counts the benchmark's events until `want` have arrived. */
function replayOnce(target, lastEventId, want) {
  return new Promise((resolve) => {
    const start = nowUs()
    let count = 0
    let carry = Buffer.alloc(0)
    let head = ''
    const sock = net.connect({ host: '127.0.0.1', port: target.port })
    const finish = (ok, at) => {
      clearTimeout(timer)
      sock.destroy()
      resolve({
        ok,
        ms: ok ? (at - start) / 1000 : null,
        received: count,
        replayed: Number(/"replayed":(\d+)/.exec(head)?.[1] ?? Number.NaN),
        recovered: /"recovered":true/.test(head),
      })
    }
    const timer = setTimeout(() => finish(false), 30_000)
    sock.on('data', (chunk) => {
      const at = nowUs()
      if (head.length < 2048) head += chunk.toString('latin1', 0, Math.min(chunk.length, 2048))
      const buf = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk
      for (let p = buf.indexOf(PATTERN); p !== -1; p = buf.indexOf(PATTERN, p + PATTERN.length)) count++
      // A pattern split across two reads is found in the next one.
      carry = Buffer.from(buf.subarray(Math.max(0, buf.length - PATTERN.length + 1)))
      if (count >= want) finish(true, at)
    })
    sock.on('error', () => finish(false))
    sock.write(
      `GET /api/sse HTTP/1.1\r\nHost: 127.0.0.1:${target.port}\r\nAccept: text/event-stream\r\nLast-Event-ID: ${lastEventId}\r\n\r\n`,
    )
  })
}

export async function run(ctx, target) {
  const { P } = ctx
  ctx.log(`== ${target.name}: 5 replay of ${P.replayEvents} events`)
  await ensureConnections(ctx, target, 0, 'anon')
  const anchor = await post(target, eventBody(0, null))
  if (anchor === null) return { error: target.lastFailure }
  const first = reserve(ctx, P.replayEvents)
  const answers = await Promise.all(await publish([target], P.replayEvents, 0, first, () => null))
  const failed = answers.filter((a) => a === null).length
  const runs = []
  for (let i = 0; i < P.replayRuns; i++)
    runs.push(await replayOnce(target, anchor.id, P.replayEvents - failed))
  const result = {
    events: P.replayEvents - failed,
    lastEventId: anchor.id,
    runsMs: runs.map((r) => r.ms),
    ms: median(runs.map((r) => r.ms)),
    firstMs: runs[0]?.ms ?? null,
    replayed: runs[0]?.replayed,
    recovered: runs[0]?.recovered,
    complete: runs.every((r) => r.ok),
  }
  ctx.log(
    `   ${fmt(result.ms)} ms (runs: ${result.runsMs.map((x) => fmt(x)).join(', ')}), replayed ${result.replayed}`,
  )
  return result
}

export function rows(ctx) {
  return [
    {
      metric: `${ctx.P.replayEvents} events replayed (ms)`,
      path: 'replay.ms',
      checks: [below(1000, 'ms')],
    },
    { metric: 'server CPU (s), publishes and replays', path: 'replay.cpu.serverCpuS' },
  ]
}
