import type { RedisClient } from './redis-client.js'
import { runScript } from './redis-scripts.js'

// Liveness comes from the instances set that every instance reports to (scores are expiry
// times from Redis's own clock).
const NOW = `local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)`

/** The sum of a presence hash over the live instances (and this one). */
const TOTAL = `local function total(key, self)
  local sum = 0
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local live = all[i] == self
    if not live then
      local score = redis.call('ZSCORE', KEYS[1], all[i])
      live = score and tonumber(score) > now
    end
    if live then sum = sum + tonumber(all[i + 1]) end
  end
  return sum
end`

/**
 * KEYS: instances, pr:<topic>|<user>, prk:<self>, pri. ARGV: self, delta, <topic>|<user>.
 * Returns the user's connections to the topic on every live instance, after the change.
 */
const CHANGE = `${NOW}
${TOTAL}
local n = redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
if n <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[3])
else
  redis.call('SADD', KEYS[3], ARGV[3])
  redis.call('SADD', KEYS[4], ARGV[1])
end
return total(KEYS[2], ARGV[1])`

/**
 * KEYS: instances, pri. ARGV: prefix. Removes what dead instances held and returns the
 * <topic>|<user> pairs that no live instance holds any more: those users have left.
 */
const REAP = `${NOW}
${TOTAL}
local left = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local score = redis.call('ZSCORE', KEYS[1], id)
  if not score or tonumber(score) <= now then
    local own = ARGV[1] .. 'prk:' .. id
    for _, member in ipairs(redis.call('SMEMBERS', own)) do
      local key = ARGV[1] .. 'pr:' .. member
      redis.call('HDEL', key, id)
      if total(key, '') == 0 then table.insert(left, member) end
    end
    redis.call('DEL', own)
    redis.call('SREM', KEYS[2], id)
  end
end
return left`

export interface TopicUser {
  topic: string
  userId: string
}

/**
 * How many connections each user has to each presence topic, deployment-wide: a hash per
 * (topic, user) with a count per instance, changed and summed in one script so that two
 * instances cannot both see a user's first connection. What a dead instance held is reaped
 * by whichever live instance runs `reap()` first, which learns who left.
 */
export class RedisTopicPresence {
  readonly #commands: RedisClient
  readonly #prefix: string
  readonly #instanceId: string

  constructor(options: { commands: RedisClient; prefix: string; instanceId: string }) {
    this.#commands = options.commands
    this.#prefix = options.prefix
    this.#instanceId = options.instanceId
  }

  /** Adds `delta` to this instance's count; resolves with the user's total on every live instance. */
  async change(topic: string, userId: string, delta: number): Promise<number> {
    // A topic has no `|`, so `<topic>|<user>` splits at its first one.
    const member = `${topic}|${userId}`
    const p = this.#prefix
    // EVALSHA: this runs on every join and leave of a presence topic; the body travels once.
    const total = await runScript(
      this.#commands,
      CHANGE,
      [`${p}instances`, `${p}pr:${member}`, `${p}prk:${this.#instanceId}`, `${p}pri`],
      [this.#instanceId, String(delta), member],
    )
    return Number(total)
  }

  /** Clears what dead instances held; returns the users who are now gone from a topic. */
  async reap(): Promise<TopicUser[]> {
    const p = this.#prefix
    const left = (await runScript(this.#commands, REAP, [`${p}instances`, `${p}pri`], [p])) as string[]
    return left.map((member) => {
      const bar = member.indexOf('|')
      return { topic: member.slice(0, bar), userId: member.slice(bar + 1) }
    })
  }
}
