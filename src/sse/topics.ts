/**
 * Topics and topic patterns. A topic names a thing (`orders/42`, `chat:room-7`); a pattern
 * says which topics a token may subscribe to (`orders/*`, `public/**`, `users/{sub}/**`).
 * Patterns only authorize: they are matched once per subscribe, never per publish.
 */

export const MAX_TOPIC_LENGTH = 256
const MAX_PATTERN_LENGTH = 512
/** Letters, digits and `_ - . : @ /`, segments split by `/`, none empty. */
export const TOPIC_SOURCE = '^(?=.{1,256}$)[A-Za-z0-9_.:@-]+(?:/[A-Za-z0-9_.:@-]+)*$'
const TOPIC = new RegExp(TOPIC_SOURCE)
const SEGMENT = /^[A-Za-z0-9_.:@-]+$/
const SUB = '{sub}'

export function isValidTopic(value: unknown): value is string {
  return typeof value === 'string' && TOPIC.test(value)
}

/** Whether `value` is a pattern: a topic whose segments may also be `*`, a final `**`, or hold `{sub}`. */
export function isValidPattern(value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_PATTERN_LENGTH) return false
  const segments = value.split('/')
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] as string
    if (segment === '*') continue
    if (segment === '**') {
      if (i !== segments.length - 1) return false
      continue
    }
    const literal = segment.split(SUB).join('')
    // `{sub}` alone is a whole segment; anything else must be plain topic characters.
    if (literal === '' ? !segment.includes(SUB) : !SEGMENT.test(literal)) return false
  }
  return true
}

/** A pattern split once, ready to be matched against topics. */
export interface CompiledPattern {
  readonly source: string
  /** Null when `{sub}` could not be filled in (no subject, or one that is not a topic segment). */
  readonly segments: readonly string[] | null
}

/**
 * Fills in `{sub}` and splits. A subject is used only as literal text of one segment: one with
 * `/`, `*` or other characters outside a topic's never widens a pattern, it makes it match nothing.
 */
export function compilePattern(pattern: string, subject: string | null): CompiledPattern {
  if (!pattern.includes(SUB)) return { source: pattern, segments: pattern.split('/') }
  if (subject === null || !SEGMENT.test(subject)) return { source: pattern, segments: null }
  const segments = pattern.split('/').map((s) => (s === '*' || s === '**' ? s : s.split(SUB).join(subject)))
  return { source: pattern, segments }
}

export function matchesPattern(pattern: CompiledPattern, topic: string): boolean {
  const p = pattern.segments
  if (p === null) return false
  const t = topic.split('/')
  for (let i = 0; i < p.length; i++) {
    const segment = p[i] as string
    if (segment === '**') return t.length > i
    if (i >= t.length) return false
    if (segment !== '*' && segment !== t[i]) return false
  }
  return t.length === p.length
}

/** The patterns a connection may subscribe with, compiled once for its subject. */
export class TopicPolicy {
  readonly #patterns: readonly CompiledPattern[]

  constructor(patterns: readonly string[], subject: string | null) {
    this.#patterns = patterns.filter(isValidPattern).map((p) => compilePattern(p, subject))
  }

  allows(topic: string): boolean {
    if (!isValidTopic(topic)) return false
    for (const pattern of this.#patterns) if (matchesPattern(pattern, topic)) return true
    return false
  }

  /** The first topic of `topics` that no pattern allows, if any. */
  firstForbidden(topics: Iterable<string>): string | undefined {
    for (const topic of topics) if (!this.allows(topic)) return topic
    return undefined
  }
}

/** What a change of subscriptions leads to: the new list, what it adds and what it removes. */
export function planSubscriptions(
  current: readonly string[],
  add: readonly string[],
  remove: readonly string[],
): { topics: string[]; added: string[]; removed: string[] } {
  const removing = new Set(remove)
  const topics = current.filter((t) => !removing.has(t))
  const removed = current.filter((t) => removing.has(t))
  const added: string[] = []
  for (const topic of new Set(add)) {
    if (removing.has(topic) || topics.includes(topic)) continue
    topics.push(topic)
    added.push(topic)
  }
  return { topics, added, removed }
}
