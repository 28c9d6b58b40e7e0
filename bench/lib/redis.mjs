// What the bench knows of the Redis that scenario 6 uses, and the cleanup of the keys it writes there.
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createClient } from 'redis'
import { onExit } from './processes.mjs'

export const REDIS_URL = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379'

/** Filled in by probeRedis(); `pid` is set only when redis-server runs here (its CPU is then measured). */
export const redisServer = {
  url: REDIS_URL.replace(/\/\/[^@/]*@/, '//***@'),
  available: false,
  version: null,
  pid: null,
}

/** Key prefixes not yet deleted: deleted with redis-cli when the run stops early. */
const prefixes = new Set()
onExit(() => {
  for (const prefix of prefixes)
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
})

export function rememberPrefix(prefix) {
  prefixes.add(prefix)
}

function redisClient() {
  const client = createClient({ url: REDIS_URL, socket: { connectTimeout: 2000, reconnectStrategy: false } })
  client.on('error', () => {})
  return client
}

/** Whether Redis answers; its version, and its pid when it runs on this machine. */
export async function probeRedis() {
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
export async function deleteKeys(prefix) {
  const client = redisClient()
  try {
    await client.connect()
    let deleted = 0
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 }))
      if (keys.length > 0) deleted += await client.del(keys)
    let left = 0
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) left += keys.length
    if (left === 0) prefixes.delete(prefix)
    return { deleted, left }
  } catch (err) {
    return { error: err.message || String(err) }
  } finally {
    if (client.isOpen) client.destroy()
  }
}
