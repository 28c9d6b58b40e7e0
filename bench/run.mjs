// `npm run bench [-- --quick] [--repeat K] [--only service,redis,baseline] [--scenarios 1,2,3,4,5,6]
//                 [--workers W] [--connections N] [--publish-connections C] [--entry other/server.js]
//                 [--no-build] [--cpu-prof]`
// Builds the service, starts it (node dist/server.js) and the node:http baseline (bench/baseline.mjs) one
// after the other as child processes on 127.0.0.1, drives the same five scenarios against each from
// separate load processes (bench/load.mjs) and prints a table; bench/results.json keeps every number.
// Scenario 6 starts two instances of the service on one Redis (BENCH_REDIS_URL, redis://127.0.0.1:6379
// by default; skipped with a note when it does not answer) and repeats scenario 2's broadcast over both.
import { execFileSync, fork, spawn, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createSigner } from 'fast-jwt'
import { createClient } from 'redis'
import { Pool, request } from 'undici'
import {
  CLK_TCK,
  fmt,
  machineTicks,
  median,
  mergeHistograms,
  nowUs,
  quantileMs,
  rssOf,
  sleep,
  table,
  ticksOf,
} from './measure.mjs'

const here = fileURLToPath(new URL('.', import.meta.url))
const root = join(here, '..')

// Node cannot raise its own open-files limit: run again under `ulimit -n <hard>`, children inherit it.
if (process.env.BENCH_NOFILE === undefined) {
  const [soft, hard] = execFileSync('bash', ['-c', 'ulimit -Sn; ulimit -Hn']).toString().trim().split('\n')
  const nrOpen = Number(readFileSync('/proc/sys/fs/nr_open', 'utf8'))
  const target = hard === 'unlimited' ? nrOpen : Math.min(Number(hard), nrOpen)
  const result = spawnSync(
    'bash',
    [
      '-c',
      `ulimit -n ${target} 2>/dev/null; exec "$0" "$@"`,
      process.execPath,
      fileURLToPath(import.meta.url),
      ...process.argv.slice(2),
    ],
    { stdio: 'inherit', env: { ...process.env, BENCH_NOFILE: String(target), BENCH_NOFILE_WAS: soft } },
  )
  process.exit(result.status ?? 1)
}

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    repeat: { type: 'string', default: '1' },
    only: { type: 'string' },
    workers: { type: 'string', default: '1' },
    connections: { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    scenarios: { type: 'string', default: '1,2,3,4,5,6' },
    /** Another build of the service to measure (A/B of a change), instead of dist/server.js. */
    entry: { type: 'string' },
    'publish-connections': { type: 'string', default: '64' },
  },
})

const P = opt.quick
  ? {
      n: 1000,
      broadcastEvents: 100,
      broadcastRate: 100,
      satN: 500,
      satEvents: 500,
      targetedSends: 200,
      targetedRate: 200,
      replayEvents: 5000,
      replayRuns: 3,
      timeoutMs: 30_000,
    }
  : {
      n: 10_000,
      broadcastEvents: 200,
      broadcastRate: 100,
      satN: 2000,
      satEvents: 2000,
      targetedSends: 1000,
      targetedRate: 200,
      replayEvents: 5000,
      replayRuns: 5,
      timeoutMs: 240_000,
    }
const SCENARIOS = new Set(opt.scenarios.split(',').map(Number))
const want = (n) => SCENARIOS.has(n)
const REPEAT = Math.max(1, Number(opt.repeat))
const WORKERS = Math.max(1, Number(opt.workers))
const notes = []

// Limits: the server holds N sockets, each load process N / WORKERS, all from one source IP to one port.
const nofile = Number(execFileSync('bash', ['-c', 'ulimit -n']).toString().trim())
if (process.env.BENCH_NOFILE_WAS !== String(nofile))
  notes.push(`open-files limit raised from ${process.env.BENCH_NOFILE_WAS} to ${nofile} (the hard limit)`)
let N = opt.connections ? Number(opt.connections) : P.n
const [portLo, portHi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
  .trim()
  .split(/\s+/)
  .map(Number)
const maxByFiles = Math.min(nofile - 300, (nofile - 300) * WORKERS)
const maxByPorts = portHi - portLo + 1 - 2000
if (N > maxByFiles || N > maxByPorts) {
  const lowered = Math.min(maxByFiles, maxByPorts)
  notes.push(
    `N lowered from ${N} to ${lowered}: open-files limit ${nofile}, ephemeral ports ${portLo}-${portHi}`,
  )
  N = lowered
}
P.satN = Math.min(P.satN, N)
if (opt.quick)
  notes.push(
    'quick: scenario 2 offers only N x 100 events/s, which both sides may keep up with; its ratio says little',
  )

const SECRET = 'bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz'
const publisherToken = createSigner({ key: SECRET, algorithm: 'HS256', expiresIn: 3 * 3600_000 })({
  sub: 'bench-publisher',
  scope: 'sse:publish sse:admin',
})
const PATTERN = Buffer.from('data: {"s":')
const PAD = 'x'.repeat(68) // data is about 100 bytes of JSON
const logDir = mkdtempSync(join(os.tmpdir(), 'sse-bench-'))
const children = new Set()
const REDIS_URL = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379'
/** Scenario 6's key prefixes not yet deleted from Redis: deleted on exit when the run stops early. */
const redisPrefixes = new Set()

function cleanup() {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  for (const prefix of redisPrefixes)
    spawnSync(
      'bash',
      [
        '-c',
        'redis-cli -u "$0" --scan --pattern "$1" | xargs -r redis-cli -u "$0" DEL',
        REDIS_URL,
        `${prefix}*`,
      ],
      { stdio: 'ignore', timeout: 10_000 },
    )
}
process.on('exit', cleanup)
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130))
const deadlineMs = (opt.quick ? 150_000 : 1_800_000) * REPEAT
setTimeout(() => {
  process.stderr.write(`bench: global timeout (${deadlineMs / 1000} s) reached, stopping\n`)
  process.exit(2)
}, deadlineMs).unref()

const log = (line) => process.stdout.write(`${line}\n`)

// ---------------------------------------------------------------- load processes
class LoadWorker {
  constructor(index) {
    this.index = index
    this.waiters = new Map()
    this.child = fork(join(here, 'load.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.add(this.child)
    this.child.on('message', (msg) => {
      const waiter = this.waiters.get(msg.type)
      this.waiters.delete(msg.type)
      waiter?.(msg)
    })
    this.child.on('exit', (code, signal) => {
      if (!stopping) {
        process.stderr.write(`bench: load process ${index} exited (${code ?? signal})\n`)
        process.exit(1)
      }
    })
  }
  get pid() {
    return this.child.pid
  }
  /** Sends a command; resolves with the replies of the given types, in order. */
  send(msg, ...types) {
    const replies = types.map((type) => new Promise((resolve) => this.waiters.set(type, resolve)))
    this.child.send(msg)
    return replies
  }
}
let stopping = false
const split = (n) =>
  Array.from({ length: WORKERS }, (_, i) => Math.floor(n / WORKERS) + (i < n % WORKERS ? 1 : 0))

async function openConnections(target, count, auth) {
  const counts = split(count)
  let userStart = 0
  const replies = workers.map((w, i) => {
    const msg = { cmd: 'open', port: target.port, count: counts[i], auth, secret: SECRET, timeoutMs: 120_000 }
    if (auth !== 'anon') msg.userStart = userStart
    userStart += counts[i]
    return w.send(msg, 'opened')[0]
  })
  const all = await Promise.all(replies)
  const result = { open: 0, failed: 0, ms: 0, reasons: {} }
  for (const r of all) {
    result.open += r.open
    result.failed += r.failed
    result.ms = Math.max(result.ms, r.ms)
    for (const [k, v] of Object.entries(r.reasons)) result.reasons[k] = (result.reasons[k] ?? 0) + v
  }
  if (result.failed > 0) log(`  ${result.failed} connections failed: ${JSON.stringify(result.reasons)}`)
  return result
}

async function keepConnections(target, keep) {
  const counts = split(keep)
  await Promise.all(workers.map((w, i) => w.send({ cmd: 'close', keep: counts[i] }, 'closed')[0]))
  await waitForConnections(target, keep)
}

// ---------------------------------------------------------------- the servers
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** `name` tells instances of one kind apart (logs, messages); `extraEnv` is added to the service's. */
async function startTarget(kind, { name = kind, extraEnv = {} } = {}) {
  const port = await freePort()
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? os.tmpdir(),
    PORT: String(port),
    HOST: '127.0.0.1',
  }
  const args = []
  if (kind === 'service') {
    Object.assign(env, {
      NODE_ENV: 'production',
      CORS_ORIGINS: 'http://127.0.0.1',
      JWT_SECRET: SECRET,
      LOG_LEVEL: 'warn',
      HEARTBEAT_INTERVAL_MS: '3600000',
      MAX_CONNECTIONS: '1000000',
      MAX_ANONYMOUS_PER_IP: '1000000',
      MAX_CONNECTIONS_PER_USER: '1000',
      RATE_LIMIT_CONNECT: '0',
      RATE_LIMIT_PUBLISH: '0',
      ...extraEnv,
    })
    if (opt['cpu-prof']) {
      const dir = join(here, 'profiles')
      mkdirSync(dir, { recursive: true })
      args.push('--cpu-prof', `--cpu-prof-dir=${dir}`)
      notes.push(`service CPU profiles in ${dir}`)
    }
    args.push(opt.entry ?? join(root, 'dist', 'server.js'))
  } else {
    args.push(join(here, 'baseline.mjs'))
  }
  const logFile = join(logDir, `${name}.log`)
  const out = openSync(logFile, 'a')
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', out, out] })
  children.add(child)
  const base = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    if (child.exitCode !== null)
      throw new Error(`${name} exited at start (${child.exitCode}); see ${logFile}`)
    try {
      const res = await request(`${base}/health`)
      await res.body.dump()
      if (res.statusCode === 200) break
    } catch {}
    if (i > 150) throw new Error(`${name} did not answer /health within 15 s; see ${logFile}`)
    await sleep(100)
  }
  // A node:http server reads at most one request per connection per turn of its event loop, and a
  // busy fan-out server has long turns: the publisher needs many connections, opened before the
  // measurement (undici opens new ones one at a time, which would cap the publishes to one per turn).
  const connections = Number(opt['publish-connections'])
  const pool = new Pool(base, {
    connections,
    pipelining: 1,
    headersTimeout: P.timeoutMs + 60_000,
    bodyTimeout: P.timeoutMs + 60_000,
  })
  await Promise.all(
    Array.from({ length: connections }, () =>
      pool.request({ path: '/health', method: 'GET' }).then((res) => res.body.dump()),
    ),
  )
  if (pool.stats.connected < connections)
    notes.push(`${name}: only ${pool.stats.connected} of ${connections} publisher connections opened`)
  return {
    kind,
    name,
    port,
    base,
    pid: child.pid,
    child,
    pool,
    logFile,
    publishFailures: 0,
    lastFailure: null,
  }
}

async function stopTarget(target) {
  await target.pool.close()
  const exited = new Promise((resolve) => target.child.once('exit', resolve))
  target.child.kill('SIGTERM')
  const timer = setTimeout(() => target.child.kill('SIGKILL'), 15_000)
  await exited
  clearTimeout(timer)
  children.delete(target.child)
}

/** How many streams the server holds, as it says itself. */
async function serverConnections(target) {
  try {
    const path = target.kind === 'service' ? '/api/sse/stats' : '/health'
    const res = await request(`${target.base}${path}`, {
      headers: { authorization: `Bearer ${publisherToken}` },
    })
    const json = await res.body.json()
    return target.kind === 'service' ? json.totalConnections : json.clients
  } catch {
    return undefined
  }
}

async function waitForConnections(target, n) {
  for (let i = 0; i < 100; i++) {
    const count = await serverConnections(target)
    if (count === n || count === undefined) break
    await sleep(100)
  }
  await sleep(300)
}

// ---------------------------------------------------------------- publishing
let seq = 0

function eventBody(s, userIndex) {
  const data = `{"s":${s},"t":${nowUs()},"p":"${PAD}"}`
  return userIndex === null
    ? `{"event":"bench","data":${data},"broadcast":true}`
    : `{"event":"bench","data":${data},"userIds":["u${userIndex}"]}`
}

async function post(target, body) {
  try {
    const res = await target.pool.request({
      path: '/api/sse',
      method: 'POST',
      headers: { authorization: `Bearer ${publisherToken}`, 'content-type': 'application/json' },
      body,
    })
    const text = await res.body.text()
    if (res.statusCode !== 202) {
      target.publishFailures++
      target.lastFailure = `${res.statusCode} ${text.slice(0, 200)}`
      return null
    }
    return JSON.parse(text)
  } catch (err) {
    target.publishFailures++
    target.lastFailure = err.message
    return null
  }
}

/**
 * Publishes `count` events at `rate` per second (0: all at once), alternating between `targets`;
 * returns the answers' promises.
 */
async function publish(targets, count, rate, first, userOf) {
  const posts = []
  const start = performance.now()
  for (let i = 0; i < count; i++) {
    if (rate > 0) {
      const wait = start + (i * 1000) / rate - performance.now()
      if (wait >= 1) await sleep(wait)
    }
    posts.push(post(targets[i % targets.length], eventBody(first + i, userOf(i))))
  }
  return posts
}

function snapshot(targets) {
  const servers = targets.map((t) => ticksOf(t.pid))
  return {
    at: nowUs(),
    server: servers.reduce((x, y) => x + y, 0),
    servers,
    redis: redisServer.pid === null ? 0 : ticksOf(redisServer.pid),
    workers: workers.map((w) => ticksOf(w.pid)),
    self: process.cpuUsage(),
    machine: machineTicks(),
  }
}

function cpuBetween(a, b) {
  const wallS = (b.at - a.at) / 1e6
  const serverS = (b.server - a.server) / CLK_TCK
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
    serversCpuS: b.servers.map((t, i) => (t - a.servers[i]) / CLK_TCK),
    loadCpuS: loadS,
    /** The busiest load process, in percent of one core: near 100 means the client was the bottleneck. */
    loadCpuPctMax: Math.max(...perWorker.map((s) => (s / wallS) * 100)),
    publisherCpuS: publisherS,
    /** The local redis-server process (0 when it is not on this machine or not readable). */
    redisCpuS: redisS,
    /** CPU used by processes other than ours (other sessions' tests): the noise. */
    otherCpuPct: (otherS / wallS) * 100,
    /** Interrupt time (mostly loopback TCP, charged to no process), in percent of one core. */
    irqCpuPct: (irqS / wallS) * 100,
  }
}

/**
 * One measured burst: arm the load processes, publish, wait until everything arrived or the timeout.
 * `target` may be a list of instances (scenario 6): the publishes then alternate between them.
 */
async function measure(target, { mode, count, rate, users }) {
  const targets = Array.isArray(target) ? target : [target]
  const failures = () => targets.reduce((n, t) => n + t.publishFailures, 0)
  const first = seq + 1
  const last = seq + count
  seq = last
  const pending = workers.map((w) =>
    w.send({ cmd: 'expect', mode, first, last, users, timeoutMs: P.timeoutMs }, 'armed', 'done'),
  )
  await Promise.all(pending.map((p) => p[0]))
  const failuresBefore = failures()
  const before = snapshot(targets)
  const t0 = before.at
  const posts = await publish(targets, count, rate, first, mode === 'targeted' ? (i) => users[i] : () => null)
  const results = await Promise.all(pending.map((p) => p[1]))
  const after = snapshot(targets)
  await Promise.all(posts)
  const hist = mergeHistograms(results.map((r) => r.hist))
  const sum = (key) => results.reduce((s, r) => s + r[key], 0)
  const received = sum('received')
  const serverCpu = cpuBetween(before, after).serverCpuS
  const lastReceipt = Math.max(...results.map((r) => r.lastReceipt))
  const spanS = lastReceipt > 0 ? (lastReceipt - t0) / 1e6 : null
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
    reordered: sum('reordered'),
    connectionsShort: sum('short'),
    closedDuring: sum('unexpectedCloses'),
    publishFailures: failures() - failuresBefore,
    p50Ms: quantileMs(hist, 0.5),
    p99Ms: quantileMs(hist, 0.99),
    maxMs: Math.max(...results.map((r) => r.maxUs)) / 1000,
    firstRecipientMsMedian: median(firstMs),
    firstRecipientMsMax: firstMs.length > 0 ? Math.max(...firstMs) : null,
    fanoutMsMedian: median(fanoutMs),
    fanoutMsMax: fanoutMs.length > 0 ? Math.max(...fanoutMs) : null,
    spanS,
    deliveredPerSec: spanS ? received / spanS : null,
    /** Less sensitive to other load on the machine than events/s: how much server CPU each delivery cost. */
    serverCpuUsPerDelivery: received > 0 ? (serverCpu * 1e6) / received : null,
    cpu: cpuBetween(before, after),
  }
}

// ---------------------------------------------------------------- scenario 5: replay
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
      carry = Buffer.from(buf.subarray(Math.max(0, buf.length - PATTERN.length + 1)))
      if (count >= want) finish(true, at)
    })
    sock.on('error', () => finish(false))
    sock.write(
      `GET /api/sse HTTP/1.1\r\nHost: 127.0.0.1:${target.port}\r\nAccept: text/event-stream\r\nLast-Event-ID: ${lastEventId}\r\n\r\n`,
    )
  })
}

async function replay(target) {
  const anchor = await post(target, eventBody(0, null))
  if (anchor === null) return { error: target.lastFailure }
  const first = seq + 1
  seq += P.replayEvents
  const answers = await Promise.all(await publish([target], P.replayEvents, 0, first, () => null))
  const failed = answers.filter((a) => a === null).length
  const runs = []
  for (let i = 0; i < P.replayRuns; i++)
    runs.push(await replayOnce(target, anchor.id, P.replayEvents - failed))
  return {
    events: P.replayEvents - failed,
    lastEventId: anchor.id,
    runsMs: runs.map((r) => r.ms),
    ms: median(runs.map((r) => r.ms)),
    firstMs: runs[0]?.ms ?? null,
    replayed: runs[0]?.replayed,
    recovered: runs[0]?.recovered,
    complete: runs.every((r) => r.ok),
  }
}

// ---------------------------------------------------------------- one target, all scenarios
async function runTarget(kind) {
  log(`\n== ${kind}: starting`)
  const target = await startTarget(kind)
  const r = { kind, pid: target.pid }
  try {
    // Warm-up: the first connections and publishes compile the hot paths; they are not measured.
    await openConnections(target, Math.min(50, N), 'anon')
    for (let i = 0; i < 10; i++) await post(target, eventBody(0, null))
    await keepConnections(target, 0)
    await sleep(500)

    // Scenarios 1 and 2 share their connections; 3 keeps P.satN of them.
    if (want(1) || want(2) || want(3)) {
      log(`== ${kind}: 1 idle memory, ${N} connections`)
      const rssBefore = rssOf(target.pid)
      const opened = await openConnections(target, want(1) || want(2) ? N : P.satN, 'anon')
      await sleep(2000)
      const rssAfter = rssOf(target.pid)
      r.idle = {
        connections: opened.open,
        openMs: opened.ms,
        rssBeforeMiB: rssBefore / 1048576,
        rssAfterMiB: rssAfter / 1048576,
        bytesPerConnection: opened.open > 0 ? (rssAfter - rssBefore) / opened.open : null,
      }
      log(
        `   ${fmt(r.idle.bytesPerConnection)} bytes per connection (${opened.open} open in ${opened.ms} ms)`,
      )
    }

    if (want(2)) {
      log(
        `== ${kind}: 2 broadcast, ${P.broadcastEvents} events at ${P.broadcastRate}/s to ${r.idle.connections}`,
      )
      r.broadcast = await measure(target, {
        mode: 'broadcast',
        count: P.broadcastEvents,
        rate: P.broadcastRate,
      })
      r.broadcast.connections = r.idle.connections
      report(r.broadcast)
    }

    if (want(3)) {
      log(`== ${kind}: 3 saturation, ${P.satEvents} events at once to ${P.satN}`)
      await keepConnections(target, P.satN)
      r.saturation = await measure(target, { mode: 'broadcast', count: P.satEvents, rate: 0 })
      r.saturation.connections = P.satN
      report(r.saturation)
    }
    await keepConnections(target, 0)

    if (want(4)) {
      log(`== ${kind}: 4 targeted, ${P.targetedSends} sends at ${P.targetedRate}/s among ${N} users`)
      const users = await openConnections(target, N, kind === 'service' ? 'token' : 'query')
      await sleep(1000)
      const targets = Array.from({ length: P.targetedSends }, (_, i) => (i * 7919 + 13) % N)
      r.targeted = await measure(target, {
        mode: 'targeted',
        count: P.targetedSends,
        rate: P.targetedRate,
        users: targets,
      })
      r.targeted.connections = users.open
      report(r.targeted)
      await keepConnections(target, 0)
    }

    if (want(5) && kind === 'service') {
      log(`== ${kind}: 5 replay of ${P.replayEvents} events`)
      r.replay = await replay(target)
      log(
        `   ${fmt(r.replay.ms)} ms (runs: ${r.replay.runsMs?.map((x) => fmt(x)).join(', ')}), replayed ${r.replay.replayed}`,
      )
    }
    if (target.publishFailures > 0)
      log(`   ${target.publishFailures} publishes failed, last: ${target.lastFailure}`)
    r.publishFailures = target.publishFailures
  } finally {
    await stopTarget(target)
  }
  const serverLog = readFileSync(target.logFile, 'utf8').trim()
  r.serverLogLines = serverLog === '' ? 0 : serverLog.split('\n').length
  if (r.serverLogLines > 0) log(`   the ${kind} logged ${r.serverLogLines} lines: ${target.logFile}`)
  return r
}

// ---------------------------------------------------------------- scenario 6: two instances over Redis
/** What the benchmark knows of the Redis it uses: filled in by probeRedis() before the runs. */
const redisServer = {
  url: REDIS_URL.replace(/\/\/[^@/]*@/, '//***@'),
  available: false,
  version: null,
  pid: null,
}

function redisClient() {
  const client = createClient({ url: REDIS_URL, socket: { connectTimeout: 2000, reconnectStrategy: false } })
  client.on('error', () => {})
  return client
}

/** Whether Redis answers; its version, and its pid when it runs on this machine (for its CPU time). */
async function probeRedis() {
  const client = redisClient()
  try {
    await client.connect()
    const info = await client.info('server')
    redisServer.available = true
    redisServer.version = /redis_version:(\S+)/.exec(info)?.[1] ?? null
    const pid = Number(/process_id:(\d+)/.exec(info)?.[1])
    const local = ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(REDIS_URL).hostname)
    let comm = ''
    try {
      comm = readFileSync(`/proc/${pid}/comm`, 'utf8')
    } catch {}
    if (local && comm.startsWith('redis')) redisServer.pid = pid
  } catch (err) {
    redisServer.error = err.message || String(err)
  } finally {
    if (client.isOpen) client.destroy()
  }
}

/** Deletes every key under `prefix` (SCAN + DEL); returns how many were deleted and how many are left. */
async function deleteKeys(prefix) {
  const client = redisClient()
  try {
    await client.connect()
    let deleted = 0
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 }))
      if (keys.length > 0) deleted += await client.del(keys)
    let left = 0
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) left += keys.length
    if (left === 0) redisPrefixes.delete(prefix)
    return { deleted, left }
  } catch (err) {
    return { error: err.message || String(err) }
  } finally {
    if (client.isOpen) client.destroy()
  }
}

async function waitReady(target) {
  let last = ''
  for (let i = 0; i < 150; i++) {
    try {
      const res = await request(`${target.base}/ready`)
      last = await res.body.text()
      if (res.statusCode === 200) return
    } catch (err) {
      last = err.message
    }
    await sleep(100)
  }
  throw new Error(`${target.name} did not answer 200 on /ready within 15 s (${last}); see ${target.logFile}`)
}

/** GET /api/sse/stats until it counts `n` connections on 2 instances (the others report every 2 s). */
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

/** Closes every connection of the load processes (the cluster's stats lag: no waiting on them). */
async function dropConnections() {
  await Promise.all(workers.map((w) => w.send({ cmd: 'close', keep: 0 }, 'closed')[0]))
  await sleep(300)
}

async function runRedis() {
  const prefix = `bench:${randomUUID()}:`
  log(`\n== redis: starting two instances on ${redisServer.url}, prefix ${prefix}`)
  const extraEnv = {
    REDIS_URL,
    REDIS_PREFIX: prefix,
  }
  const r = { kind: 'redis', prefix, pids: [] }
  const targets = []
  redisPrefixes.add(prefix)
  try {
    for (const name of ['redis-a', 'redis-b']) {
      const target = await startTarget('service', { name, extraEnv })
      targets.push(target)
      r.pids.push(target.pid)
    }
    await Promise.all(targets.map(waitReady))

    // Warm-up, as for one instance: not measured.
    for (const target of targets) await openConnections(target, Math.min(25, N), 'anon')
    for (let i = 0; i < 10; i++) await post(targets[i % 2], eventBody(0, null))
    await sleep(200)
    await dropConnections()
    await sleep(500)

    const halves = [Math.ceil(N / 2), Math.floor(N / 2)]
    log(`== redis: 6 two instances, ${halves.join(' + ')} connections`)
    const rssBefore = targets.reduce((n, t) => n + rssOf(t.pid), 0)
    // The load processes count every connection they hold, to either instance.
    const perInstance = []
    let openMs = 0
    let open = 0
    for (const [i, target] of targets.entries()) {
      const opened = await openConnections(target, halves[i], 'anon')
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
    log(`   ${fmt(r.idle.bytesPerConnection)} bytes per connection (${r.idle.perInstance.join(' + ')} open)`)

    log(
      `== redis: 6 broadcast over Redis, ${P.broadcastEvents} events at ${P.broadcastRate}/s to ${open}, ` +
        'publishes alternating between the instances',
    )
    r.broadcast = await measure(targets, {
      mode: 'broadcast',
      count: P.broadcastEvents,
      rate: P.broadcastRate,
    })
    r.broadcast.connections = open
    report(r.broadcast)

    r.stats = await clusterStats(targets[0], open)
    const per = r.stats.instances?.map((i) => fmt(i.connections)).join(' + ') ?? 'n/a'
    log(
      `   stats from ${r.stats.asked}: totalConnections ${fmt(r.stats.totalConnections)} (expected ${fmt(open)}), ` +
        `${r.stats.instances?.length ?? 'n/a'} instances (${per}): ${r.stats.ok ? 'ok' : 'NOT OK'}` +
        `${r.stats.error ? `, ${r.stats.error}` : ''}`,
    )
    const failures = targets.reduce((n, t) => n + t.publishFailures, 0)
    if (failures > 0)
      log(`   ${failures} publishes failed, last: ${targets.find((t) => t.lastFailure)?.lastFailure}`)
    r.publishFailures = failures
  } finally {
    await dropConnections()
    for (const target of targets) await stopTarget(target)
    r.keys = await deleteKeys(prefix)
    log(
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
    if (lines > 0) log(`   ${target.name} logged ${lines} lines: ${target.logFile}`)
  }
  return r
}

/** Scenario 6 failing (Redis gone mid-run, an instance not ready) does not cost the other scenarios. */
async function runRedisSafely() {
  try {
    return await runRedis()
  } catch (err) {
    log(`   scenario 6 failed: ${err.message}`)
    notes.push(`scenario 6 failed: ${err.message}`)
    return { kind: 'redis', error: err.message }
  }
}

function report(m) {
  log(
    `   delivered ${m.received}/${m.expected} (lost ${m.lost}) in ${fmt(m.spanS)} s = ${fmt(m.deliveredPerSec)}/s; ` +
      `latency p50 ${fmt(m.p50Ms)} p99 ${fmt(m.p99Ms)} max ${fmt(m.maxMs)} ms ` +
      `(first recipient ${fmt(m.firstRecipientMsMedian)} ms, fan-out ${fmt(m.fanoutMsMedian)} ms, medians); ` +
      `server CPU ${fmt(m.cpu.serverCpuS)} s; publisher ${fmt(m.cpu.publisherCpuS)} s; ` +
      `load client ${fmt(m.cpu.loadCpuPctMax)}% of a core; others ${fmt(m.cpu.otherCpuPct)}%, interrupts ${fmt(m.cpu.irqCpuPct)}% of a core`,
  )
}

// ---------------------------------------------------------------- main
if (!opt['no-build']) {
  log('bench: npm run build')
  const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' })
  if (build.status !== 0) {
    process.stderr.write('bench: the build failed\n')
    process.exit(1)
  }
}

// service: one instance in memory (scenarios 1-5); redis: two instances on Redis (scenario 6).
const KINDS = ['service', 'redis', 'baseline']
let kinds = opt.only ? opt.only.split(',').map((k) => k.trim()) : KINDS
const unknownKind = kinds.find((k) => !KINDS.includes(k))
if (unknownKind !== undefined) {
  process.stderr.write(`bench: --only takes ${KINDS.join(', ')} (comma-separated), not ${unknownKind}\n`)
  process.exit(1)
}
if (![1, 2, 3, 4, 5].some(want)) kinds = kinds.filter((k) => k === 'redis')
if (!want(6)) kinds = kinds.filter((k) => k !== 'redis')
if (kinds.includes('redis')) {
  await probeRedis()
  if (!redisServer.available) {
    notes.push(
      `scenario 6 skipped: Redis at ${redisServer.url} did not answer (${redisServer.error}); ` +
        'start one or set BENCH_REDIS_URL',
    )
    kinds = kinds.filter((k) => k !== 'redis')
  } else if (!want(2) || !kinds.includes('service'))
    notes.push('scenario 6 runs without scenario 2 of the service: no comparison with one instance')
}
const loadavgStart = os.loadavg()
log(
  `bench: N=${N}, ${WORKERS} load process(es), ${os.cpus().length} CPUs, node ${process.version}, ` +
    `load average ${loadavgStart.map((x) => x.toFixed(2)).join(' ')}${opt.quick ? ', quick' : ''}` +
    (kinds.includes('redis') ? `; Redis ${redisServer.version} at ${redisServer.url}` : ''),
)
for (const note of notes) log(`bench: ${note}`)
const workers = Array.from({ length: WORKERS }, (_, i) => new LoadWorker(i))
const runs = { service: [], redis: [], baseline: [] }
for (let k = 0; k < REPEAT; k++) {
  // Alternate the order so that neither side always runs while the machine is busier.
  const order = k % 2 === 0 ? kinds : [...kinds].reverse()
  for (const kind of order) runs[kind].push(kind === 'redis' ? await runRedisSafely() : await runTarget(kind))
}
stopping = true
for (const w of workers) w.child.send({ cmd: 'exit' })

const pick = (kind, path) =>
  median(
    runs[kind].map((run) =>
      path.split('.').reduce((o, key) => (o === undefined || o === null ? o : o[key]), run),
    ),
  )
const ratio = (a, b) => (a !== null && b !== null && b !== 0 ? a / b : null)
const rows = []
const checks = []
function row(scenario, metric, path, { target, better } = {}) {
  const s = pick('service', path)
  const b = pick('baseline', path)
  const rt = ratio(s, b)
  let ok = ''
  if (target) {
    const pass = target(s, rt)
    ok = pass === null ? 'n/a' : pass ? 'yes' : 'NO'
    checks.push({ scenario, metric, service: s, baseline: b, ratio: rt, target: better, pass })
  }
  rows.push([scenario, metric, fmt(s), fmt(b), rt === null ? '' : `${fmt(rt)}x`, better ?? '', ok])
}
const has = (x) => x !== null && x !== undefined
row('1 idle', 'memory per connection (bytes)', 'idle.bytesPerConnection', {
  target: (_s, r) => (has(r) ? r <= 1.2 : null),
  better: '<= 1.2x',
})
row('2 broadcast', 'delivered events/s', 'broadcast.deliveredPerSec', {
  // In quick mode both sides can keep up with N x 100 events/s: there is nothing to compare.
  target: (_s, r) => (has(r) && !opt.quick ? r >= 3 : null),
  better: '>= 3x',
})
row('2 broadcast', 'latency p50 (ms)', 'broadcast.p50Ms')
row('2 broadcast', 'latency p99 (ms)', 'broadcast.p99Ms', {
  target: (s) => (has(s) ? s < 1000 : null),
  better: '< 1000 ms',
})
row('2 broadcast', 'latency max (ms)', 'broadcast.maxMs')
row('2 broadcast', 'server CPU (s)', 'broadcast.cpu.serverCpuS')
row('2 broadcast', 'server CPU per delivery (µs)', 'broadcast.serverCpuUsPerDelivery')
row('2 broadcast', 'events lost', 'broadcast.lost')
row('2 broadcast', 'load client CPU (% core)', 'broadcast.cpu.loadCpuPctMax')
row('3 saturation', 'delivered events/s', 'saturation.deliveredPerSec', {
  target: (_s, r) => (has(r) ? r >= 3 : null),
  better: '>= 3x',
})
row('3 saturation', 'time to deliver all (s)', 'saturation.spanS')
row('3 saturation', 'server CPU (s)', 'saturation.cpu.serverCpuS')
row('3 saturation', 'server CPU per delivery (µs)', 'saturation.serverCpuUsPerDelivery')
row('3 saturation', 'events lost', 'saturation.lost')
row('3 saturation', 'load client CPU (% core)', 'saturation.cpu.loadCpuPctMax')
row('4 targeted', 'latency p50 (ms)', 'targeted.p50Ms')
row('4 targeted', 'latency p99 (ms)', 'targeted.p99Ms', {
  target: (s) => (has(s) ? s < 10 : null),
  better: '< 10 ms',
})
row('4 targeted', 'latency max (ms)', 'targeted.maxMs')
row('4 targeted', 'events lost', 'targeted.lost')
row('5 replay', `${P.replayEvents} events replayed (ms)`, 'replay.ms', {
  target: (s) => (has(s) ? s < 1000 : null),
  better: '< 1000 ms',
})

// Scenario 6: its own rows (the baseline has no Redis), then the comparison with scenario 2.
/** Per round, how scenario 6 compares with scenario 2 of the same round; the median over the rounds. */
function against(path, how) {
  const values = runs.redis.map((run, k) => {
    const get = (r) => path.split('.').reduce((o, key) => (o === undefined || o === null ? o : o[key]), r)
    const one = get(runs.service[k])
    const two = get(run)
    if (!has(one) || !has(two)) return null
    return how === 'ratio' ? ratio(two, one) : two - one
  })
  return median(values)
}
const signed = (x) => (has(x) ? `${x >= 0 ? '+' : ''}${fmt(x)}` : 'n/a')
const redisComparison = {}
if (runs.redis.length > 0) {
  const S = '6 redis x2'
  const redisRow = (metric, path) => rows.push([S, metric, fmt(pick('redis', path)), '', '', '', ''])
  redisRow('delivered events/s', 'broadcast.deliveredPerSec')
  redisRow('latency p50 (ms)', 'broadcast.p50Ms')
  redisRow('latency p99 (ms)', 'broadcast.p99Ms')
  redisRow('latency max (ms)', 'broadcast.maxMs')
  redisRow('server CPU, both instances (s)', 'broadcast.cpu.serverCpuS')
  redisRow('server CPU per delivery (µs)', 'broadcast.serverCpuUsPerDelivery')
  redisRow('redis-server CPU (s)', 'broadcast.cpu.redisCpuS')
  redisRow('events lost', 'broadcast.lost')
  redisRow('events duplicated', 'broadcast.duplicates')
  redisRow('load client CPU (% core)', 'broadcast.cpu.loadCpuPctMax')
  const statsOk = runs.redis.every((run) => run.stats?.ok === true)
  const statsValue = `${fmt(pick('redis', 'stats.totalConnections'))} on ${fmt(median(runs.redis.map((run) => run.stats?.instances?.length)))}`
  const statsWanted = `${fmt(pick('redis', 'idle.connections'))} on 2`
  rows.push([
    S,
    'stats: connections on instances',
    statsValue,
    '',
    '',
    `== ${statsWanted}`,
    statsOk ? 'yes' : 'NO',
  ])
  checks.push({
    scenario: S,
    metric: 'GET /api/sse/stats: totalConnections == N on 2 instances',
    service: runs.redis.map((run) => run.stats),
    target: `== ${statsWanted}`,
    pass: statsOk,
  })
  Object.assign(redisComparison, {
    extraP50Ms: against('broadcast.p50Ms', 'diff'),
    extraP99Ms: against('broadcast.p99Ms', 'diff'),
    extraMaxMs: against('broadcast.maxMs', 'diff'),
    deliveredPerSecRatio: against('broadcast.deliveredPerSec', 'ratio'),
    serverCpuRatio: against('broadcast.cpu.serverCpuS', 'ratio'),
  })
  rows.push([
    'redis extra latency',
    'p50 (ms): 2 on Redis - 1 in memory',
    signed(redisComparison.extraP50Ms),
    '',
    '',
    '',
    '',
  ])
  rows.push([
    'redis extra latency',
    'p99 (ms): 2 on Redis - 1 in memory',
    signed(redisComparison.extraP99Ms),
    '',
    '',
    '',
    '',
  ])
}

const noise = ['broadcast', 'saturation', 'targeted'].flatMap((sc) =>
  Object.keys(runs).flatMap((kind) => runs[kind].map((run) => run[sc]?.cpu?.otherCpuPct)),
)
log(`\n${table(rows, ['scenario', 'metric', 'service', 'baseline', 'ratio', 'target', 'met'])}`)
log(
  `\n${REPEAT > 1 ? `medians of ${REPEAT} runs; ` : ''}N=${N}; other processes used ${fmt(median(noise))}% of a core ` +
    `(median, max ${fmt(Math.max(0, ...noise.filter(has)))}%) while measuring; load average ` +
    `${loadavgStart.map((x) => x.toFixed(2)).join(' ')} at start, ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} at end`,
)
if (runs.redis.length > 0) {
  const compare = [
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
    const change = against(path, how)
    return [
      metric,
      fmt(pick('service', path)),
      fmt(pick('redis', path)),
      how === 'ratio' ? (has(change) ? `${fmt(change)}x` : 'n/a') : signed(change),
    ]
  })
  log(
    `\nscenario 6 next to scenario 2 (${fmt(pick('redis', 'broadcast.connections'))} connections, ` +
      `${P.broadcastEvents} events at ${P.broadcastRate}/s, publishes alternating between the two instances):`,
  )
  log(table(compare, ['metric', '1 instance, in memory', '2 instances, Redis', 'Redis adds']))
}
for (const note of notes) log(`note: ${note}`)

const git = (args) => {
  try {
    return execFileSync('git', args, { cwd: root }).toString().trim()
  } catch {
    return null
  }
}
const results = {
  date: new Date().toISOString(),
  commit: git(['rev-parse', '--short', 'HEAD']),
  uncommittedSourceFiles: git(['status', '--porcelain', 'src'])?.split('\n').filter(Boolean).length ?? null,
  publishConnections: Number(opt['publish-connections']),
  quick: opt.quick,
  node: process.version,
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model,
  connections: N,
  workers: WORKERS,
  repeat: REPEAT,
  parameters: P,
  redis: kinds.includes('redis') || redisServer.error ? redisServer : null,
  redisComparison: runs.redis.length > 0 ? redisComparison : null,
  notes,
  loadavg: { start: loadavgStart, end: os.loadavg() },
  checks,
  runs,
}
writeFileSync(join(here, 'results.json'), `${JSON.stringify(results, null, 2)}\n`)
// Server logs are kept only when a server logged something.
const logged = Object.values(runs)
  .flat()
  .some((run) => run.serverLogLines > 0)
if (!logged) rmSync(logDir, { recursive: true, force: true })
log('bench: wrote bench/results.json')
process.exit(0)
