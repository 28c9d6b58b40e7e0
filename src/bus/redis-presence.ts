import { errors } from '../errors.js'
import type { BusStatus } from './bus.js'
import { type BusLogger, REDIS_UNAVAILABLE, type RedisClient } from './redis-client.js'

/** What one instance reports about itself. */
export interface InstanceReport {
  instanceId: string
  totalConnections: number
  authenticatedConnections: number
  anonymousConnections: number
  /** Events this instance accepted from publishers. */
  eventsPublished: number
  eventsDelivered: number
  slowClientsDisconnected: number
  startedAt: string
  reportedAt: string
}

export interface ClusterView {
  /** Every live instance, by id. */
  instances: InstanceReport[]
  /** Connections per user, summed over the live instances. */
  users: Map<string, number>
}

/** What this instance knows about itself, read when it reports. */
export interface LocalState {
  report(): InstanceReport
  /** Open connections per user here. */
  userCounts(): Iterable<[string, number]>
}

export interface RedisPresenceOptions {
  commands: RedisClient
  /** A dedicated connection for pub/sub (control messages). */
  subscriber: RedisClient
  prefix: string
  instanceId: string
  /** How often the instance reports; it drops out after 2.5 times this without a report. */
  reportIntervalMs: number
  log?: BusLogger
}

// Scores in the instances set are expiry times from Redis's own clock, so skewed
// machine clocks cannot keep a dead instance alive or drop a live one.
const NOW = `local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)`

/** KEYS: instances, own users hash. ARGV: user, limit, prefix, instanceId, ttl. Returns -1 when full. */
const ACQUIRE = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local total = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if id ~= ARGV[4] then
    total = total + (tonumber(redis.call('HGET', ARGV[3] .. 'users:' .. id, ARGV[1])) or 0)
  end
end
total = total + (tonumber(redis.call('HGET', KEYS[2], ARGV[1])) or 0)
if total >= tonumber(ARGV[2]) then return -1 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[4])
return total + 1`

/** KEYS: own users hash. ARGV: user. */
const RELEASE = `local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n`

/** KEYS: instances, own report, own users hash. ARGV: instanceId, report JSON, ttl. */
const REPORT = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 1`

/** KEYS: instances. ARGV: prefix. Returns {report, {user, count, ...}} per live instance. */
const VIEW = `${NOW}
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local report = redis.call('GET', ARGV[1] .. 'instance:' .. id)
  if report then
    table.insert(out, { report, redis.call('HGETALL', ARGV[1] .. 'users:' .. id) })
  end
end
return out`

/**
 * What the instances know of each other, in Redis: a report per instance with a TTL
 * (stats; a dead one drops out), a hash of connections per user per instance (the
 * per-user limit across instances, counted in one Lua script so that two instances
 * cannot both take the last slot), and a pub/sub channel for cluster-wide commands.
 */
export class RedisPresence {
  readonly #commands: RedisClient
  readonly #subscriber: RedisClient
  readonly #prefix: string
  readonly #instanceId: string
  readonly #ttlMs: number
  readonly #log: BusLogger | undefined
  readonly #keys: { instances: string; report: string; users: string }
  #local: LocalState | undefined
  #closed = false

  constructor(options: RedisPresenceOptions) {
    this.#commands = options.commands
    this.#subscriber = options.subscriber
    this.#prefix = options.prefix
    this.#instanceId = options.instanceId
    this.#ttlMs = Math.ceil(options.reportIntervalMs * 2.5)
    this.#log = options.log
    const p = options.prefix
    this.#keys = {
      instances: `${p}instances`,
      report: `${p}instance:${options.instanceId}`,
      users: `${p}users:${options.instanceId}`,
    }
  }

  /** Starts reporting what `local` says. */
  start(local: LocalState): void {
    this.#local = local
  }

  status(): BusStatus {
    if (this.#closed) return { ready: false, reason: 'closed' }
    if (!this.#commands.isReady) return { ready: false, reason: 'redis: command connection is down' }
    if (!this.#subscriber.isReady) return { ready: false, reason: 'redis: subscriber connection is down' }
    return { ready: true, reason: null }
  }

  /**
   * Rewrites this instance's entries from its local state: at start and after Redis
   * comes back (it may have lost them, or missed releases while down).
   */
  async resync(): Promise<void> {
    const local = this.#local
    if (local === undefined) return
    const counts: Record<string, number> = {}
    let any = false
    for (const [userId, count] of local.userCounts()) {
      counts[userId] = count
      any = true
    }
    const multi = this.#commands.multi().del(this.#keys.users)
    if (any) multi.hSet(this.#keys.users, counts)
    await multi.exec()
    await this.report()
  }

  /** Writes this instance's report and keeps its entries alive for another TTL. */
  async report(): Promise<void> {
    const local = this.#local
    if (local === undefined || this.#closed) return
    await this.#commands.eval(REPORT, {
      keys: [this.#keys.instances, this.#keys.report, this.#keys.users],
      arguments: [this.#instanceId, JSON.stringify(local.report()), String(this.#ttlMs)],
    })
  }

  /**
   * Takes one connection slot of `userId` across every instance; false when the user
   * already holds `limit`. With Redis down, only the local limit (checked by the
   * caller) applies: streams keep working, and `resync` corrects the counts later.
   */
  async acquireUser(userId: string, limit: number): Promise<boolean> {
    if (!this.#commands.isReady) return true
    try {
      const result = await this.#commands.eval(ACQUIRE, {
        keys: [this.#keys.instances, this.#keys.users],
        arguments: [userId, String(limit), this.#prefix, this.#instanceId, String(this.#ttlMs)],
      })
      return Number(result) !== -1
    } catch (err) {
      this.#log?.warn({ err }, 'could not check the per-user limit in Redis; applying the local one')
      return true
    }
  }

  releaseUser(userId: string): void {
    if (!this.#commands.isReady || this.#closed) return
    this.#commands
      .eval(RELEASE, { keys: [this.#keys.users], arguments: [userId] })
      .catch((err) => this.#log?.warn({ err }, 'could not release a per-user slot in Redis'))
  }

  async view(): Promise<ClusterView> {
    this.#assertReady()
    let rows: unknown
    try {
      rows = await this.#commands.eval(VIEW, { keys: [this.#keys.instances], arguments: [this.#prefix] })
    } catch (err) {
      this.#log?.warn({ err }, 'could not read the cluster view from redis')
      throw new errors.SSE_ERR_BUS_UNAVAILABLE(REDIS_UNAVAILABLE)
    }
    const instances: InstanceReport[] = []
    const users = new Map<string, number>()
    for (const row of rows as [string, string[]][]) {
      try {
        instances.push(JSON.parse(row[0]) as InstanceReport)
      } catch {
        continue
      }
      const flat = row[1]
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const userId = flat[i] as string
        const count = Number(flat[i + 1])
        if (count > 0) users.set(userId, (users.get(userId) ?? 0) + count)
      }
    }
    return { instances, users }
  }

  /** Removes this instance's entries at once, so that it leaves stats and limits now. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (!this.#commands.isReady) return
    await this.#commands
      .multi()
      .zRem(this.#keys.instances, this.#instanceId)
      .del([this.#keys.report, this.#keys.users])
      .exec()
      .catch(() => undefined)
  }

  #assertReady(): void {
    const status = this.status()
    if (!status.ready) throw new errors.SSE_ERR_BUS_UNAVAILABLE(REDIS_UNAVAILABLE)
  }
}
