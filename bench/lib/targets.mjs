// The servers under test, each a child process on 127.0.0.1 on a free port: the service
// (dist/server.js), the floor (bench/floor.mjs) and the node:http baseline (bench/baseline.mjs).
import { spawn } from 'node:child_process'
import { mkdirSync, openSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createSigner } from 'fast-jwt'
import { Pool, request } from 'undici'
import { sleep } from './measure.mjs'
import { track } from './processes.mjs'
import { RawPool } from './raw-http.mjs'

export const bench = fileURLToPath(new URL('..', import.meta.url))
export const root = join(bench, '..')

export const SECRET = 'bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz'
export const publisherToken = createSigner({ key: SECRET, algorithm: 'HS256', expiresIn: 3 * 3600_000 })({
  sub: 'bench-publisher',
  scope: 'sse:publish sse:admin',
})

const SCRIPTS = { floor: join(bench, 'floor.mjs'), baseline: join(bench, 'baseline.mjs') }

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

/** The service's settings for a benchmark: no heartbeat, no rate limits, limits far above N. */
function serviceEnv(extraEnv) {
  return {
    NODE_ENV: 'production',
    CORS_ORIGINS: 'http://127.0.0.1',
    JWT_SECRET: SECRET,
    // Production refuses to leave /metrics open without a word; the bench has no use for that warning.
    METRICS_TOKEN: 'bench-metrics-token-0123456789',
    LOG_LEVEL: 'warn',
    HEARTBEAT_INTERVAL_MS: '3600000',
    MAX_CONNECTIONS: '1000000',
    MAX_ANONYMOUS_PER_IP: '1000000',
    MAX_CONNECTIONS_PER_USER: '1000',
    RATE_LIMIT_CONNECT: '0',
    RATE_LIMIT_PUBLISH: '0',
    // Scenario 7's anonymous streams subscribe to topics in their URL: every topic is public here.
    PUBLIC_TOPICS: '**',
    ...extraEnv,
  }
}

/**
 * Starts one server and its publisher pool. `name` tells instances of one kind apart (logs, profiles);
 * `extraEnv` is added to the server's environment.
 */
export async function startTarget(ctx, kind, { name = kind, extraEnv = {} } = {}) {
  const { opt, P } = ctx
  const port = await freePort()
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? os.tmpdir(),
    PORT: String(port),
    HOST: '127.0.0.1',
  }
  const args = []
  if (opt['cpu-prof']) {
    // One folder per server, so that a profile is easy to tell apart from the others.
    const dir = join(bench, 'profiles', name)
    mkdirSync(dir, { recursive: true })
    args.push('--cpu-prof', `--cpu-prof-dir=${dir}`)
    ctx.notes.push(`${name} CPU profile in bench/profiles/${name}/`)
  }
  if (kind === 'service') {
    Object.assign(env, serviceEnv(extraEnv))
    args.push(opt.entry ?? join(root, 'dist', 'server.js'))
  } else {
    if (kind === 'floor') env.FLOOR_WRITE = opt['floor-write']
    Object.assign(env, extraEnv)
    args.push(SCRIPTS[kind])
  }
  // One log per server and round: a count of its lines must not include an earlier round's.
  const logFile = join(ctx.logDir, `${name}${ctx.round > 0 ? `.round${ctx.round + 1}` : ''}.log`)
  const out = openSync(logFile, 'a')
  const child = track(spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', out, out] }))
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
  const pool = new Pool(base, {
    connections: Number(opt['publish-connections']),
    pipelining: 1,
    headersTimeout: P.timeoutMs + 60_000,
    bodyTimeout: P.timeoutMs + 60_000,
  })
  const target = {
    kind,
    name,
    port,
    base,
    pid: child.pid,
    child,
    pool,
    /** The closed-loop publisher's sockets (scenario 8), opened by warmRaw. */
    raw: new RawPool(port),
    logFile,
    /** The streams the load processes hold to this server: see connections.mjs. */
    streams: { open: 0, auth: 'anon', layout: 'anon' },
    publishFailures: 0,
    lastFailure: null,
  }
  await warmPool(ctx, target)
  return target
}

/**
 * Opens every publisher connection, again right before each burst. A node:http server reads at most one
 * request per connection per turn of its event loop, and a busy fan-out server has long turns; undici
 * opens missing connections about one per turn, which would cap the publishes at one per turn and
 * leave nothing to batch. Servers also close idle keep-alive connections (node:http after 5 s), and
 * opening N streams takes longer than that.
 */
export async function warmPool(ctx, target) {
  const connections = Number(ctx.opt['publish-connections'])
  await Promise.all(
    Array.from({ length: connections }, () =>
      target.pool.request({ path: '/health', method: 'GET' }).then((res) => res.body.dump()),
    ),
  )
  if (target.pool.stats.connected < connections)
    ctx.notes.push(
      `${target.name}: only ${target.pool.stats.connected} of ${connections} publisher connections open`,
    )
}

/** Opens the raw publisher sockets (as many as the pool has), right before a closed-loop burst. */
export async function warmRaw(ctx, target) {
  const connections = Number(ctx.opt['publish-connections'])
  await target.raw.open(connections)
  if (target.raw.connected < connections)
    ctx.notes.push(
      `${target.name}: only ${target.raw.connected} of ${connections} raw publisher connections open`,
    )
}

export async function stopTarget(target) {
  target.raw.close()
  await target.pool.close()
  if (target.child.exitCode !== null || target.child.signalCode !== null) return
  const exited = new Promise((resolve) => target.child.once('exit', resolve))
  target.child.kill('SIGTERM')
  const timer = setTimeout(() => target.child.kill('SIGKILL'), 15_000)
  await exited
  clearTimeout(timer)
}

/** GET /api/sse/stats of the service (null when it does not answer). */
export async function serviceStats(target) {
  try {
    const res = await request(`${target.base}/api/sse/stats`, {
      headers: { authorization: `Bearer ${publisherToken}` },
    })
    if (res.statusCode === 200) return await res.body.json()
    await res.body.dump()
    return null
  } catch {
    return null
  }
}

/** How many streams the server holds, as it says itself. */
export async function serverConnections(target) {
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

/** The floor's own count of turns that wrote and of the events they held (null for other servers). */
export async function floorTurns(target) {
  if (target.kind !== 'floor') return null
  try {
    const res = await request(`${target.base}/health`)
    const { turns, turnEvents } = await res.body.json()
    return { turns, turnEvents }
  } catch {
    return null
  }
}

/** Waits (up to 10 s) until the server counts `n` streams, then lets it settle. */
export async function waitForConnections(target, n) {
  for (let i = 0; i < 100; i++) {
    const count = await serverConnections(target)
    if (count === n || count === undefined) break
    await sleep(100)
  }
  await sleep(300)
}

/** Waits until GET /ready answers 200 (the Redis instances). */
export async function waitReady(target) {
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
