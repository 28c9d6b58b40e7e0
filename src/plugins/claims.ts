import type { ClaimsConfig } from '../config/auth.js'
import { errors } from '../errors.js'
import { isValidPattern } from '../sse/topics.js'

/** The standard claims, as every token carries them unless configured otherwise. */
export const DEFAULT_CLAIMS: ClaimsConfig = Object.freeze({
  user: 'sub',
  scope: 'scope',
  topics: 'topics',
  scopeMap: Object.freeze(Object.create(null)),
})

export const MAX_SUBJECT_LENGTH = 256
/** A token's topic patterns are matched on each subscribe: bound how many are looked at. */
const MAX_TOKEN_TOPICS = 256
/** Scope values looked at per token: provider role lists can be long, none needs to be huge. */
const MAX_SCOPE_VALUES = 1024

export type Payload = Record<string, unknown>

function isObject(value: unknown): value is Payload {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * A claim by name: the exact name first (`https://example.com/roles`, or a name holding dots),
 * then a dotted path into nested objects (`realm_access.roles`), where any prefix may itself be a
 * name holding dots (`https://example.com/app.roles`). Only own properties count, so `__proto__`
 * or `constructor` never reach anything the token did not carry.
 */
export function claimAt(payload: unknown, name: string): unknown {
  if (!isObject(payload)) return undefined
  if (Object.hasOwn(payload, name)) return payload[name]
  for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
    const head = name.slice(0, dot)
    if (!Object.hasOwn(payload, head)) continue
    const found = claimAt(payload[head], name.slice(dot + 1))
    if (found !== undefined) return found
  }
  return undefined
}

/** A space-separated string or an array of strings; anything else holds nothing. */
function words(value: unknown): string[] {
  if (typeof value === 'string') return value.split(' ').filter((s) => s !== '')
  if (Array.isArray(value)) return value.filter((s): s is string => typeof s === 'string' && s !== '')
  return []
}

export interface Identity {
  readonly userId: string
  readonly scopes: readonly string[]
  readonly topics: readonly string[]
}

/**
 * Reads who the bearer of a verified token is, where the configuration says: the user id (a
 * non-empty string, never anything else), the scopes (the scope claim's values plus what
 * JWT_SCOPE_MAP grants for them) and the topic patterns (malformed ones are dropped).
 */
export function identityOf(payload: Payload, claims: ClaimsConfig): Identity {
  const user = claimAt(payload, claims.user)
  if (user === undefined) {
    throw new errors.SSE_ERR_INVALID_TOKEN(`it lacks a required claim (exp and ${claims.user} are required)`)
  }
  if (typeof user !== 'string' || user === '' || user.length > MAX_SUBJECT_LENGTH) {
    throw new errors.SSE_ERR_INVALID_TOKEN(
      `its ${claims.user} must be a string of 1 to ${MAX_SUBJECT_LENGTH} characters`,
    )
  }
  const raw = claimAt(payload, claims.scope) ?? (claims.scope === 'scope' ? payload.scp : undefined)
  const values = words(raw).slice(0, MAX_SCOPE_VALUES)
  const scopes = new Set(values)
  for (const value of values) {
    if (Object.hasOwn(claims.scopeMap, value)) for (const s of claims.scopeMap[value] ?? []) scopes.add(s)
  }
  const topics = words(claimAt(payload, claims.topics))
    .filter((p) => isValidPattern(p))
    .slice(0, MAX_TOKEN_TOPICS)
  return { userId: user, scopes: [...scopes], topics }
}
