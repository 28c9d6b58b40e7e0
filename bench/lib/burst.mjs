// One measured burst of events (scenarios 2, 3, 4 and 6), and the CPU accounting every scenario uses:
// the servers, the load processes, this runner (the publisher), redis-server and everything else.
import {
  CLK_TCK,
  fmt,
  machineTicks,
  median,
  mergeHistograms,
  nowUs,
  quantileMs,
  ticksOf,
} from './measure.mjs'
import { publish, publishInFlight, reserve } from './publish.mjs'
import { redisServer } from './redis.mjs'
import { floorTurns, warmPool, warmRaw } from './targets.mjs'

/** How long a measurement waits for missing events once every publish was answered. */
const QUIET_MS = 10_000

/** The largest of many numbers (a spread of 200,000 arguments overflows the stack); null for none. */
const largest = (list) => list.reduce((a, b) => (a === null || b > a ? b : a), null)

/** CPU counters of every process that matters, now. */
export function snapshot(ctx, targets) {
  const servers = targets.map((t) => ticksOf(t.pid))
  return {
    at: nowUs(),
    servers,
    redis: redisServer.pid === null ? 0 : ticksOf(redisServer.pid),
    workers: ctx.workers.map((w) => ticksOf(w.pid)),
    self: process.cpuUsage(),
    machine: machineTicks(),
  }
}

export function cpuBetween(a, b) {
  const wallS = (b.at - a.at) / 1e6
  const perServer = b.servers.map((t, i) => (t - a.servers[i]) / CLK_TCK)
  const serverS = perServer.reduce((x, y) => x + y, 0)
  const perWorker = b.workers.map((t, i) => (t - a.workers[i]) / CLK_TCK)
  const loadS = perWorker.reduce((x, y) => x + y, 0)
  const publisherS = (b.self.user + b.self.system - a.self.user - a.self.system) / 1e6
  const redisS = (b.redis - a.redis) / CLK_TCK
  const busyS = (b.machine.busy - a.machine.busy) / CLK_TCK
  const otherS = Math.max(0, busyS - serverS - loadS - publisherS - redisS)
  const irqS = (b.machine.irq - a.machine.irq) / CLK_TCK
  return {
    wallS,
    serverCpuS: serverS,
    serverCpuPct: (serverS / wallS) * 100,
    /** Per server process (scenario 6 has two). */
    serversCpuS: perServer,
    loadCpuS: loadS,
    /** The busiest load process, in percent of one core: near 100 means the client was the bottleneck. */
    loadCpuPctMax: Math.max(...perWorker.map((s) => (s / wallS) * 100)),
    /** This runner, which publishes. */
    publisherCpuS: publisherS,
    /** The local redis-server process (0 when it is not on this machine or not readable). */
    redisCpuS: redisS,
    /** CPU used by processes other than the bench's (other sessions' tests): the noise. */
    otherCpuPct: (otherS / wallS) * 100,
    /** Interrupt time (mostly loopback TCP, charged to no process), in percent of one core. */
    irqCpuPct: (irqS / wallS) * 100,
  }
}

/**
 * Arms the load processes, publishes, waits until everything arrived or the timeout. `target` may be
 * a list of instances (scenario 6): the publishes then alternate between them.
 * - `mode`: `broadcast` (every stream must get every event) or `targeted` (event i must reach the
 *   stream numbered `users[i]`, once, and no other stream).
 * - `toOf(i)`: whom the publish names (see eventJson); by default everyone, or user u<users[i]>.
 * - `rate` per second (0: all at once), or `inFlight` requests outstanding (a closed loop) with
 *   `batch` events per request (POST /api/sse/batch when more than 1).
 */
export async function burst(ctx, target, { mode, count, rate = 0, users, toOf, inFlight = 0, batch = 1 }) {
  const targets = Array.isArray(target) ? target : [target]
  const failures = () => targets.reduce((n, t) => n + t.publishFailures, 0)
  const first = reserve(ctx, count)
  const last = first + count - 1
  const pending = ctx.workers.map((w) =>
    w.send({ cmd: 'expect', mode, first, last, users, timeoutMs: ctx.P.timeoutMs }, 'armed', 'done'),
  )
  await Promise.all(pending.map((p) => p[0]))
  for (const t of targets) await (inFlight > 0 ? warmRaw(ctx, t) : warmPool(ctx, t))
  const failuresBefore = failures()
  const turnsBefore = await floorTurns(targets[0])
  const before = snapshot(ctx, targets)
  const to = toOf ?? (mode === 'targeted' ? (i) => users[i] : () => null)
  let answered
  let results
  let after
  // Once every publish is answered, a load process still waiting stops after QUIET_MS without news.
  const tellPublished = () => {
    for (const w of ctx.workers) w.send({ cmd: 'published', quietMs: QUIET_MS })
  }
  if (inFlight > 0) {
    // The answers may come before or after the last receipt: wait for both.
    ;[answered, results] = await Promise.all([
      publishInFlight(targets, count, { first, toOf: to, inFlight, batch }).then((a) => {
        tellPublished()
        return a
      }),
      Promise.all(pending.map((p) => p[1])),
    ])
    after = snapshot(ctx, targets)
  } else {
    const posts = await publish(targets, count, rate, first, to)
    const all = Promise.all(posts).then(() => {
      answered = { requests: count, lastAnswerUs: nowUs() }
      tellPublished()
    })
    results = await Promise.all(pending.map((p) => p[1]))
    after = snapshot(ctx, targets)
    await all
  }
  const turnsAfter = await floorTurns(targets[0])
  const hist = mergeHistograms(results.map((r) => r.hist))
  const sum = (key) => results.reduce((s, r) => s + r[key], 0)
  const received = sum('received')
  const cpu = cpuBetween(before, after)
  const lastReceipt = Math.max(...results.map((r) => r.lastReceipt))
  const spanS = lastReceipt > 0 ? (lastReceipt - before.at) / 1e6 : null
  // Per event: when its first recipient got it (publish + server work before the first write) and how
  // long the server took from the first recipient to the last (the fan-out).
  const firstMs = []
  const fanoutMs = []
  for (let k = 0; k < count; k++) {
    const lo = Math.min(...results.map((r) => r.firstLat[k] ?? Number.POSITIVE_INFINITY))
    const hi = Math.max(...results.map((r) => r.lastLat[k]))
    if (Number.isFinite(lo)) {
      firstMs.push(lo / 1000)
      fanoutMs.push((hi - lo) / 1000)
    }
  }
  return {
    events: count,
    rate,
    expected: sum('expected'),
    received,
    lost: sum('expected') - (received - sum('dup')),
    duplicates: sum('dup'),
    /** Targeted: receipts at a stream that was not the event's recipient (must be 0). */
    misdelivered: sum('misdelivered'),
    reordered: sum('reordered'),
    connectionsShort: sum('short'),
    closedDuring: sum('unexpectedCloses'),
    /** Streams the server ended (`event: disconnected`) while the burst ran: their later events never come. */
    endedByServer: sum('ended'),
    publishFailures: failures() - failuresBefore,
    requests: answered.requests,
    batch,
    inFlight,
    /** Events the servers accepted per second, from the first publish to the last answer. */
    acceptedPerSec:
      (count - (failures() - failuresBefore)) / Math.max(1e-6, (answered.lastAnswerUs - before.at) / 1e6),
    p50Ms: quantileMs(hist, 0.5),
    p99Ms: quantileMs(hist, 0.99),
    maxMs: Math.max(...results.map((r) => r.maxUs)) / 1000,
    firstRecipientMsMedian: median(firstMs),
    firstRecipientMsMax: largest(firstMs),
    fanoutMsMedian: median(fanoutMs),
    fanoutMsMax: largest(fanoutMs),
    spanS,
    deliveredPerSec: spanS ? received / spanS : null,
    /** Less sensitive to other load on the machine than events/s: how much server CPU each delivery cost. */
    serverCpuUsPerDelivery: received > 0 ? (cpu.serverCpuS * 1e6) / received : null,
    cpu,
    /** The floor only: events per turn that wrote, i.e. how many events one socket write carried. */
    eventsPerWrite:
      turnsBefore && turnsAfter && turnsAfter.turns > turnsBefore.turns
        ? (turnsAfter.turnEvents - turnsBefore.turnEvents) / (turnsAfter.turns - turnsBefore.turns)
        : undefined,
    /** The measured window on the monotonic clock (µs), which CPU profiles also use: see profile.mjs. */
    window: { fromUs: before.at, toUs: after.at },
  }
}

/** The log line of one burst. */
export function describe(m) {
  return (
    `   delivered ${m.received}/${m.expected} (lost ${m.lost}` +
    `${m.duplicates > 0 ? `, ${m.duplicates} twice` : ''}${m.misdelivered > 0 ? `, ${m.misdelivered} to the wrong stream` : ''}` +
    `${m.publishFailures > 0 ? `, ${m.publishFailures} refused` : ''}` +
    `${m.endedByServer + m.closedDuring > 0 ? `; ${m.endedByServer + m.closedDuring} streams ended by the server` : ''}) in ${fmt(m.spanS)} s = ${fmt(m.deliveredPerSec)}/s` +
    `${m.inFlight > 0 ? ` (accepted ${fmt(m.acceptedPerSec)}/s in ${fmt(m.requests)} requests of ${m.batch}, ${m.inFlight} in flight)` : ''}; ` +
    `latency p50 ${fmt(m.p50Ms)} p99 ${fmt(m.p99Ms)} max ${fmt(m.maxMs)} ms ` +
    `(first recipient ${fmt(m.firstRecipientMsMedian)} ms, fan-out ${fmt(m.fanoutMsMedian)} ms, medians); ` +
    `server CPU ${fmt(m.cpu.serverCpuS)} s; publisher ${fmt(m.cpu.publisherCpuS)} s; ` +
    `load client ${fmt(m.cpu.loadCpuS)} s = ${fmt(m.cpu.loadCpuPctMax)}% of a core; ` +
    `others ${fmt(m.cpu.otherCpuPct)}%, interrupts ${fmt(m.cpu.irqCpuPct)}% of a core`
  )
}
