// The shared runner: a round starts each server kind in turn, warms it up, and calls every selected
// scenario that measures that kind, in order (they share one server process; 6 starts its own two,
// and 7 and 8 start extra ones with withServer).
import { readFileSync } from 'node:fs'
import { cpuBetween, snapshot } from './burst.mjs'
import { ensureConnections, openConnections } from './connections.mjs'
import { sleep } from './measure.mjs'
import { eventBody, post } from './publish.mjs'
import { startTarget, stopTarget } from './targets.mjs'

/** The first streams and publishes compile the hot paths: they are not measured. */
export async function warmUp(ctx, target) {
  await openConnections(ctx, target, Math.min(50, ctx.N), 'anon')
  for (let i = 0; i < 10; i++) await post(target, eventBody(0, null))
  await ensureConnections(ctx, target, 0, 'anon')
  await sleep(500)
}

/** How many lines a server wrote to its log (it runs at LOG_LEVEL=warn: any line is news). */
function logLines(ctx, target) {
  const serverLog = readFileSync(target.logFile, 'utf8').trim()
  const lines = serverLog === '' ? 0 : serverLog.split('\n').length
  if (lines > 0) ctx.log(`   the ${target.name} logged ${lines} lines: ${target.logFile}`)
  return lines
}

/**
 * A fresh server process for part of a scenario (a memory figure needs one that has held nothing
 * yet; a reference needs other settings): started, warmed up, `fn(target)`, its streams closed and
 * the process stopped. Resolves with fn's result plus the pid (for profile.mjs) and its log lines.
 */
export async function withServer(ctx, kind, options, fn) {
  ctx.log(`== ${options.name}: starting a fresh ${kind}`)
  const target = await startTarget(ctx, kind, options)
  let result
  try {
    await warmUp(ctx, target)
    result = await fn(target)
    await ensureConnections(ctx, target, 0, 'anon')
  } finally {
    await stopTarget(target)
  }
  return { ...result, pid: target.pid, serverLogLines: logLines(ctx, target) }
}

/** One server process of `kind`, every selected scenario that measures it. */
async function runServer(ctx, kind) {
  ctx.log(`\n== ${kind}: starting`)
  const target = await startTarget(ctx, kind)
  const r = { kind, pid: target.pid }
  try {
    await warmUp(ctx, target)
    for (const scenario of ctx.scenarios) {
      if (!scenario.kinds.includes(kind)) continue
      const before = snapshot(ctx, [target])
      const result = await scenario.run(ctx, target)
      // Bursts account for their own window; the others for the whole scenario.
      result.cpu ??= cpuBetween(before, snapshot(ctx, [target]))
      r[scenario.name] = result
    }
    await ensureConnections(ctx, target, 0, 'anon')
    if (target.publishFailures > 0)
      ctx.log(`   ${target.publishFailures} publishes failed, last: ${target.lastFailure}`)
    r.publishFailures = target.publishFailures
  } finally {
    await stopTarget(target)
  }
  r.serverLogLines = logLines(ctx, target)
  return r
}

/** Every round; returns each kind's results, one per round. */
export async function runRounds(ctx) {
  const runs = Object.fromEntries(ctx.kinds.map((kind) => [kind, []]))
  for (let k = 0; k < ctx.repeat; k++) {
    ctx.round = k
    // Alternate the order so that no kind always runs while the machine is busier.
    const order = k % 2 === 0 ? ctx.kinds : [...ctx.kinds].reverse()
    for (const kind of order) {
      if (kind !== 'redis') {
        runs[kind].push(await runServer(ctx, kind))
        continue
      }
      // Two instances on Redis, started by scenario 6's module for every selected scenario that has
      // a part over Redis (6 itself, 8).
      runs.redis.push(await ctx.redisRunner.run(ctx))
    }
  }
  return runs
}
