import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import net from 'node:net'
import { createClient } from 'redis'
import { RedisConnections } from '../../src/bus/redis-connections.js'

/** The Redis the tests use; CI points it at the machine's Redis. */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** Resolves true when a Redis answers PING at `url` within a second. */
export async function redisReachable(url = TEST_REDIS_URL): Promise<boolean> {
  const client = createClient({ url, socket: { connectTimeout: 1000, reconnectStrategy: false } })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
    await client.close()
    return true
  } catch {
    if (client.isOpen) client.destroy()
    return false
  }
}

/** `false` when Redis is reachable, otherwise the reason to skip (tap's `skip` option). */
export async function skipWithoutRedis(url = TEST_REDIS_URL): Promise<string | false> {
  return (await redisReachable(url))
    ? false
    : `Redis not reachable at ${url} (start one with: redis-server --daemonize yes --port 6379 --save "" --appendonly no, or set TEST_REDIS_URL)`
}

/** A key prefix of its own for one test; every key under it is deleted in teardown. */
export function uniquePrefix(t: Teardown, url = TEST_REDIS_URL): string {
  const prefix = `test:${randomUUID()}:`
  t.teardown(() => deleteKeys(url, prefix))
  return prefix
}

export async function deleteKeys(url: string, prefix: string): Promise<void> {
  const client = createClient({ url, socket: { connectTimeout: 1000, reconnectStrategy: false } })
  client.on('error', () => {})
  try {
    await client.connect()
    const keys: string[] = []
    for await (const batch of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 })) keys.push(...batch)
    if (keys.length > 0) await client.del(keys)
    await client.close()
  } catch {
    if (client.isOpen) client.destroy()
  }
}

/** A plain command client for assertions on what is in Redis. */
export async function redisClient(t: Teardown, url = TEST_REDIS_URL) {
  const client = createClient({ url })
  client.on('error', () => {})
  await client.connect()
  t.teardown(() => (client.isOpen ? client.close().catch(() => client.destroy()) : undefined))
  return client
}

const quiet = { info() {}, warn() {}, error() {} }

/** The service's own three connections, connected, closed in teardown. */
export async function connections(t: Teardown, url = TEST_REDIS_URL): Promise<RedisConnections> {
  const conns = new RedisConnections(url, quiet, { name: `test:${randomUUID()}` })
  if (!(await conns.connect(5000))) throw new Error(`could not connect to ${url}`)
  t.teardown(() => conns.close())
  return conns
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** A redis-server of the test's own, on its own port, that the test may stop and start again. */
export class OwnRedis {
  readonly port: number
  #child: ChildProcess | undefined

  constructor(port: number) {
    this.port = port
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    )
    this.#child = child
    const deadline = Date.now() + 5000
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`)
      if (await redisReachable(this.url)) return
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`redis-server on port ${this.port} did not start`)
  }

  /** Stops it by its pid and waits until it is gone. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill(signal)
    await exited
    this.#child = undefined
  }
}

/** Whether `redis-server` can be started here. */
export async function redisServerAvailable(): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('redis-server', ['--version'], { stdio: 'ignore' })
    child.once('error', () => resolve(false))
    child.once('exit', (code) => resolve(code === 0))
  })
}
