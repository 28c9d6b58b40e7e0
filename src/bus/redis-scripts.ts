import { createHash } from 'node:crypto'
import type { IdempotencyRecord } from './idempotency.js'
import type { RedisClient } from './redis-client.js'

/**
 * The Lua scripts of the event stream. Redis trims a stream by count or by id only, never by
 * bytes, so publishing keeps a running byte total next to the stream and trims the oldest
 * entries itself, in the same script as the XADD: the total is always exact, and so is the bound.
 */

/** What one entry is counted as besides its id, field names and values: Redis's own bookkeeping. */
export const ENTRY_OVERHEAD_BYTES = 64

/**
 * An entry whose field names and values pass this many bytes is large: publishing records the
 * newest such id next to the stream, so that a reader knows when plain reads of 512 entries stay
 * within a MiB and when it must size entries one by one.
 */
export const LARGE_ENTRY_BYTES = 2048

/** `a` before `b`, for `<ms>-<seq>` ids (numbers, not strings: `9-0` is before `10-0`). */
const BEFORE = `local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am < bm end
  return tonumber(as) < tonumber(bs)
end`

const NOW_MS = `local function nowMs()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end`

/** What XINFO STREAM says of a stream that exists: its first and last ids, entries ever added, length. */
const STREAM_INFO = `local function streamInfo(key)
  local info = redis.call('XINFO', 'STREAM', key)
  local first, last, added, len = '0-0', '0-0', 0, 0
  for i = 1, #info, 2 do
    local name = info[i]
    if name == 'recorded-first-entry-id' then first = info[i + 1]
    elseif name == 'last-generated-id' then last = info[i + 1]
    elseif name == 'entries-added' then added = info[i + 1]
    elseif name == 'length' then len = info[i + 1] end
  end
  return first, last, added, len
end`

/**
 * Appends entries and keeps the stream within its bounds.
 *
 * KEYS: stream, byte total, newest large entry id, [idempotency record].
 * ARGV: maxLen, maxBytes, minId ('' for none), minReplicas, maxLagSeconds, overhead, fingerprint,
 * ttlMs, n, then n times (event, data, target, origin).
 *
 * Returns {'ok', 'id,id,...', entriesAdded, length, bytes}; {'replicas', online} when fewer replicas than asked are online
 * (nothing written); {'mismatch'} or {'seen', ids, answer, failed, ageMs} for a known record
 * (nothing written). Every check comes before the first write, so a refusal stores nothing.
 * Past a bound the oldest entries go, down to 1% under it, so that trimming comes in batches
 * rather than once per publish. Entries added by this call are never trimmed by it: a blocked
 * reader must still find them.
 */
export const APPEND = `${BEFORE}
${NOW_MS}
${STREAM_INFO}
local stream, counter, large, record = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local maxLen, maxBytes, minId = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local minReplicas, maxLag, overhead = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local fingerprint, ttl, n = ARGV[7], ARGV[8], tonumber(ARGV[9])

if record then
  local seen = redis.call('HMGET', record, 'h', 'i', 'r', 'f', 'a')
  if seen[1] then
    if seen[1] ~= fingerprint then return {'mismatch'} end
    return {'seen', seen[2] or '', seen[3] or '', seen[4] or '', tostring(nowMs() - tonumber(seen[5] or '0'))}
  end
end

if minReplicas > 0 and n > 0 then
  local online = 0
  for lag in string.gmatch(redis.call('INFO', 'replication'), 'slave%d+:[^\\r\\n]*state=online[^\\r\\n]*lag=(%d+)') do
    if tonumber(lag) <= maxLag then online = online + 1 end
  end
  if online < minReplicas then return {'replicas', tostring(online)} end
end

local function sizeOf(id, fields)
  local size = #id + overhead
  for i = 1, #fields do size = size + #fields[i] end
  return size
end

local len = redis.call('XLEN', stream)
local ids, added, newestLarge = {}, 0, nil
for k = 0, n - 1 do
  local at = 10 + k * 4
  local e, d, t, o = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local id = redis.call('XADD', stream, '*', 'e', e, 'd', d, 't', t, 'o', o)
  ids[#ids + 1] = id
  local fields = 4 + #e + #d + #t + #o
  if fields > ${LARGE_ENTRY_BYTES} then newestLarge = id end
  added = added + #id + overhead + fields
end
if newestLarge then redis.call('SET', large, newestLarge) end
local bytes = n > 0 and redis.call('INCRBY', counter, added) or tonumber(redis.call('GET', counter) or '0')
if bytes == added and len > 0 then
  -- The total was gone (a Redis that lost the key): size the stream once.
  bytes = 0
  local cursor = '-'
  while true do
    local page = redis.call('XRANGE', stream, cursor, '+', 'COUNT', 256)
    for _, e in ipairs(page) do bytes = bytes + sizeOf(e[1], e[2]) end
    if #page < 256 then break end
    cursor = '(' .. page[#page][1]
  end
  redis.call('SET', counter, bytes)
end
len = len + n
local kept = bytes

-- Over a bound: the oldest go, down to 1% under it, so that the next trims come in batches, not
-- one per publish. Pages grow so that a small trim reads little.
if len > maxLen or bytes > maxBytes or minId ~= '' then
  local targetLen = len > maxLen and maxLen - math.floor(maxLen / 100) or maxLen
  local targetBytes = bytes > maxBytes and maxBytes - math.floor(maxBytes / 100) or maxBytes
  local removable, dropped, freed, cursor, size = len - n, 0, 0, '-', 4
  local function over(id)
    return len - dropped > targetLen or bytes - freed > targetBytes or (minId ~= '' and before(id, minId))
  end
  while removable > 0 do
    local page = redis.call('XRANGE', stream, cursor, '+', 'COUNT', size)
    local stop = #page == 0
    for _, e in ipairs(page) do
      if removable == 0 or not over(e[1]) then stop = true break end
      freed = freed + sizeOf(e[1], e[2])
      dropped = dropped + 1
      removable = removable - 1
    end
    if stop then break end
    cursor = '(' .. page[#page][1]
    size = math.min(size * 2, 128)
  end
  if dropped > 0 then
    redis.call('XTRIM', stream, 'MAXLEN', len - dropped)
    if len - dropped > 0 then redis.call('DECRBY', counter, freed) else redis.call('DEL', counter) end
    kept = bytes - freed
  end
end

if record and n > 0 then
  redis.call('HSET', record, 'h', fingerprint, 'i', table.concat(ids, ','), 'a', tostring(nowMs()))
  redis.call('PEXPIRE', record, ttl)
end
-- What a publisher needs to tell how far its instance's reader is behind.
if n == 0 then return {'ok', ''} end
local _, _, total, length = streamInfo(stream)
return {'ok', table.concat(ids, ','), tostring(total), tostring(length), tostring(kept)}`

/**
 * A replica counts for REDIS_WAIT_REPLICAS only when it acknowledged within this (it does every
 * second): Redis's own default for `min-replicas-max-lag`. A replica that lags less still has to
 * confirm each publish through WAIT.
 */
const MAX_REPLICA_LAG_S = 10

/** The bounds APPEND keeps: the stream's length and bytes, the replicas a publish needs online. */
export interface AppendLimits {
  readonly maxLength: number
  readonly maxBytes: number
  readonly replicas: number
}

/** APPEND's arguments before its entries (ARGV[1] to ARGV[9]); `n` entries follow, 4 values each. */
export function appendArgs(
  limits: AppendLimits,
  minId: string,
  fingerprint: string,
  ttlMs: number,
  n: number,
): string[] {
  return [
    String(limits.maxLength),
    String(limits.maxBytes),
    minId,
    String(limits.replicas),
    String(MAX_REPLICA_LAG_S),
    String(ENTRY_OVERHEAD_BYTES),
    fingerprint,
    String(ttlMs),
    String(n),
  ]
}

/** What APPEND answered, decoded. */
export type AppendReply =
  | { readonly status: 'mismatch' }
  | { readonly status: 'seen'; readonly record: IdempotencyRecord }
  | { readonly status: 'replicas'; readonly online: number }
  /** Stored: the ids, and the stream's `entries-added`, length and bytes after it (for the pacer). */
  | {
      readonly status: 'ok'
      readonly ids: string[]
      readonly added: number
      readonly length: number
      readonly bytes: number
    }

export function appendReplyOf(reply: readonly string[]): AppendReply {
  const [status, a = '', b = '', c = '', d = '0'] = reply
  if (status === 'mismatch') return { status }
  if (status === 'seen') {
    const ids = a === '' ? [] : a.split(',')
    return { status, record: { ids, answer: b === '' ? null : b, failed: c !== '', ageMs: Number(d) } }
  }
  if (status === 'replicas') return { status, online: Number(a) }
  return { status: 'ok', ids: a.split(','), added: Number(b), length: Number(c), bytes: Number(d) }
}

/**
 * One read of the stream after `lastId`, with what tells whether entries after it were lost:
 * XTRIM leaves no trace of what it removed, so the reader counts entries (`entries-added` minus
 * `length` is how many were removed, oldest first) and compares with its own count.
 * KEYS: stream, newest large entry id. ARGV: lastId, count, maxBytes. Returns {firstId,
 * lastGeneratedId, entriesAdded, length, largeId, entries}; the ids are '' when the stream does not exist. Atomic, so a trim cannot slip
 * between the check and the read. Entries stop at `count` or once they pass `maxBytes` (at least
 * one is returned).
 */
export const READ = `if redis.call('EXISTS', KEYS[1]) == 0 then return {'', '', 0, 0, '0-0', {}} end
${STREAM_INFO}
local first, last, added, len = streamInfo(KEYS[1])
local out, bytes, cursor = {}, 0, '(' .. ARGV[1]
local count, maxBytes = tonumber(ARGV[2]), tonumber(ARGV[3])
while #out < count and bytes < maxBytes do
  local want = math.min(64, count - #out)
  local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', want)
  for _, e in ipairs(page) do
    if bytes >= maxBytes then break end
    out[#out + 1] = e
    for _, v in ipairs(e[2]) do bytes = bytes + #v end
  end
  if #page < want then break end
  cursor = '(' .. page[#page][1]
end
return {first, last, added, len, redis.call('GET', KEYS[2]) or '0-0', out}`

/** Where a new reader starts. KEYS: stream. Returns {newest entry id or '0-0', entriesAdded}. */
export const TAIL = `if redis.call('EXISTS', KEYS[1]) == 0 then return {'0-0', 0} end
${STREAM_INFO}
local _, _, added = streamInfo(KEYS[1])
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
return {newest[1] and newest[1][1] or '0-0', added}`

/** KEYS: record. Returns {fingerprint, ids, answer, failed, ageMs}, or {} when there is none. */
export const READ_RECORD = `${NOW_MS}
local seen = redis.call('HMGET', KEYS[1], 'h', 'i', 'r', 'f', 'a')
if not seen[1] then return {} end
return {seen[1], seen[2] or '', seen[3] or '', seen[4] or '', tostring(nowMs() - tonumber(seen[5] or '0'))}`

/** KEYS: record. ARGV: field, value. Sets a field of a record that still exists (its TTL unchanged). */
export const SET_RECORD = `if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`

const shas = new Map<string, string>()

function shaOf(script: string): string {
  let sha = shas.get(script)
  if (sha === undefined) {
    sha = createHash('sha1').update(script).digest('hex')
    shas.set(script, sha)
  }
  return sha
}

/**
 * EVALSHA, falling back to EVAL when this Redis has not seen the script yet (a restart, a
 * failover to a replica): the script body travels once, not with every call.
 */
export async function runScript(
  client: RedisClient,
  script: string,
  keys: string[],
  args: string[],
  /** Called as each attempt is written to the connection (a WAIT covers only what was sent before it). */
  onSend?: () => void,
): Promise<unknown> {
  const options = { keys, arguments: args }
  try {
    onSend?.()
    return await client.evalSha(shaOf(script), options)
  } catch (err) {
    if (!String((err as Error)?.message).startsWith('NOSCRIPT')) throw err
    onSend?.()
    return client.eval(script, options)
  }
}
