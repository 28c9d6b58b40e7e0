// `npm run bench [-- --quick] [--repeat K] [--only service|baseline] [--scenarios 1,2,3,4,5] [--workers W]
//                 [--connections N] [--publish-connections C] [--entry other/server.js] [--no-build] [--cpu-prof]`
// Builds the service, starts it (node dist/server.js) and the node:http baseline (bench/baseline.mjs) one
// after the other as child processes on 127.0.0.1, drives the same five scenarios against each from
// separate load processes (bench/load.mjs) and prints a table; bench/results.json keeps every number.
import { execFileSync, fork, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createSigner } from 'fast-jwt'
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
    scenarios: { type: 'string', default: '1,2,3,4,5' },
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

function cleanup() {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
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

async function startTarget(kind) {
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
  const logFile = join(logDir, `${kind}.log`)
  const out = openSync(logFile, 'a')
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', out, out] })
  children.add(child)
  const base = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    if (child.exitCode !== null)
      throw new Error(`${kind} exited at start (${child.exitCode}); see ${logFile}`)
    try {
      const res = await request(`${base}/health`)
      await res.body.dump()
      if (res.statusCode === 200) break
    } catch {}
    if (i > 150) throw new Error(`${kind} did not answer /health within 15 s; see ${logFile}`)
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
    notes.push(`${kind}: only ${pool.stats.connected} of ${connections} publisher connections opened`)
  return { kind, port, base, pid: child.pid, child, pool, logFile, publishFailures: 0, lastFailure: null }
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

/** Publishes `count` events at `rate` per second (0: all at once); returns the answers' promises. */
async function publish(target, count, rate, first, userOf) {
  const posts = []
  const start = performance.now()
  for (let i = 0; i < count; i++) {
    if (rate > 0) {
      const wait = start + (i * 1000) / rate - performance.now()
      if (wait >= 1) await sleep(wait)
    }
    posts.push(post(target, eventBody(first + i, userOf(i))))
  }
  return posts
}

function snapshot(target) {
  return {
    at: nowUs(),
    server: ticksOf(target.pid),
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
  const busyS = (b.machine.busy - a.machine.busy) / CLK_TCK
  const otherS = Math.max(0, busyS - serverS - loadS - publisherS)
  const irqS = (b.machine.irq - a.machine.irq) / CLK_TCK
  return {
    wallS,
    serverCpuS: serverS,
    serverCpuPct: (serverS / wallS) * 100,
    loadCpuS: loadS,
    /** The busiest load process, in percent of one core: near 100 means the client was the bottleneck. */
    loadCpuPctMax: Math.max(...perWorker.map((s) => (s / wallS) * 100)),
    publisherCpuS: publisherS,
    /** CPU used by processes other than ours (other sessions' tests): the noise. */
    otherCpuPct: (otherS / wallS) * 100,
    /** Interrupt time (mostly loopback TCP, charged to no process), in percent of one core. */
    irqCpuPct: (irqS / wallS) * 100,
  }
}

/** One measured burst: arm the load processes, publish, wait until everything arrived or the timeout. */
async function measure(target, { mode, count, rate, users }) {
  const first = seq + 1
  const last = seq + count
  seq = last
  const pending = workers.map((w) =>
    w.send({ cmd: 'expect', mode, first, last, users, timeoutMs: P.timeoutMs }, 'armed', 'done'),
  )
  await Promise.all(pending.map((p) => p[0]))
  const failuresBefore = target.publishFailures
  const before = snapshot(target)
  const t0 = before.at
  const posts = await publish(target, count, rate, first, mode === 'targeted' ? (i) => users[i] : () => null)
  const results = await Promise.all(pending.map((p) => p[1]))
  const after = snapshot(target)
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
    publishFailures: target.publishFailures - failuresBefore,
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
  const answers = await Promise.all(await publish(target, P.replayEvents, 0, first, () => null))
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

const kinds = opt.only ? [opt.only] : ['service', 'baseline']
const loadavgStart = os.loadavg()
log(
  `bench: N=${N}, ${WORKERS} load process(es), ${os.cpus().length} CPUs, node ${process.version}, ` +
    `load average ${loadavgStart.map((x) => x.toFixed(2)).join(' ')}${opt.quick ? ', quick' : ''}`,
)
for (const note of notes) log(`bench: ${note}`)
const workers = Array.from({ length: WORKERS }, (_, i) => new LoadWorker(i))
const runs = { service: [], baseline: [] }
for (let k = 0; k < REPEAT; k++) {
  // Alternate the order so that neither side always runs while the machine is busier.
  const order = k % 2 === 0 ? kinds : [...kinds].reverse()
  for (const kind of order) runs[kind].push(await runTarget(kind))
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
