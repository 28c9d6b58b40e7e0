import { isIP } from 'node:net'
import { ConfigError } from '../errors.js'
import { type Env, list, present } from './env.js'

/** `false`, a hop count, or the addresses/CIDRs of the proxies in front (Fastify's `trustProxy`). */
export type TrustProxy = false | number | readonly string[]

export function redisUrl(env: Env): string | null {
  const raw = present(env, 'REDIS_URL')?.trim()
  if (raw === undefined) return null
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ConfigError('REDIS_URL', 'is not a URL like redis://127.0.0.1:6379')
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError('REDIS_URL', `must start with redis:// or rediss://, got ${url.protocol}//`)
  }
  return raw
}

export function redisPrefix(env: Env): string {
  const raw = env.REDIS_PREFIX
  if (raw === undefined || raw === '') return 'sse:'
  if (raw.length > 64 || /[\s*?[\]]/.test(raw)) {
    throw new ConfigError('REDIS_PREFIX', 'must be at most 64 characters without spaces or * ? [ ]')
  }
  return raw
}

/** REDIS_SENTINELS: `host:port,...`; with them REDIS_URL, when set, gives only credentials, database and TLS. */
export function redisSentinels(env: Env): readonly { readonly host: string; readonly port: number }[] | null {
  const entries = list(env, 'REDIS_SENTINELS')
  if (entries === undefined) return null
  if (entries.length === 0) throw new ConfigError('REDIS_SENTINELS', 'names no sentinel (host:port,...)')
  return Object.freeze(
    entries.map((entry) => {
      const match = /^(\[[0-9a-fA-F:]+\]|[^\s:[\]]+):(\d{1,5})$/.exec(entry)
      const port = Number(match?.[2])
      if (match === null || port < 1 || port > 65535) {
        throw new ConfigError('REDIS_SENTINELS', `"${entry}" is not host:port (e.g. 10.0.0.5:26379)`)
      }
      return Object.freeze({ host: (match[1] as string).replace(/^\[|\]$/g, ''), port })
    }),
  )
}

const NAMED_PROXY_RANGES = ['loopback', 'linklocal', 'uniquelocal']

/** TRUST_PROXY: `true` would let any client choose its own address through X-Forwarded-For. */
export function trustProxy(env: Env): TrustProxy {
  const raw = present(env, 'TRUST_PROXY')?.trim()
  if (raw === undefined) return false
  const lower = raw.toLowerCase()
  if (['false', 'no', 'off', '0'].includes(lower)) return false
  if (['true', 'yes', 'on'].includes(lower)) {
    throw new ConfigError(
      'TRUST_PROXY',
      'true would trust every hop, so any client could pick the address that per-IP limits and logs see ' +
        'by sending X-Forwarded-For; give the number of proxies in front (1) or their addresses/CIDRs ' +
        '(10.0.0.0/8,127.0.0.1)',
    )
  }
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw)
    if (hops > 32) throw new ConfigError('TRUST_PROXY', `a hop count must be 1 to 32, got ${hops}`)
    return hops
  }
  const entries = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
  for (const entry of entries) {
    if (NAMED_PROXY_RANGES.includes(entry)) continue
    const slash = entry.indexOf('/')
    const address = slash === -1 ? entry : entry.slice(0, slash)
    const family = isIP(address)
    const bits = slash === -1 ? undefined : entry.slice(slash + 1)
    const maxBits = family === 6 ? 128 : 32
    const badBits = bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > maxBits)
    if (family === 0 || badBits) {
      throw new ConfigError(
        'TRUST_PROXY',
        `"${entry}" is not an address or CIDR (use false, a hop count, or e.g. 10.0.0.0/8,::1)`,
      )
    }
  }
  return Object.freeze(entries)
}
