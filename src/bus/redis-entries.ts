import type { EventTarget } from '../sse/target.js'
import { type BusEvent, type BusMessage, idTime } from './bus.js'

// How events are written to the Redis stream and read back: fields `e` (name), `d` (JSON data),
// `t` (target) and `o` (origin).

export interface StreamEntry {
  id: string
  message: Record<string, string>
}

/** The stream key, for the history and the tests. */
export function eventsKey(prefix: string): string {
  return `${prefix}events`
}

/** The running byte total of the stream. */
export function eventsBytesKey(prefix: string): string {
  return `${prefix}events:bytes`
}

/** The id of the newest large entry (LARGE_ENTRY_BYTES): how readers bound what one read holds. */
export function eventsLargeKey(prefix: string): string {
  return `${prefix}events:large`
}

function encodeTarget(target: EventTarget): string {
  if (target.broadcast === true) return '*'
  return JSON.stringify({ u: target.userIds, c: target.clientIds, p: target.topics })
}

/** The four values of an entry, in the order the append script takes them. */
export function valuesOf(message: BusMessage): [string, string, string, string] {
  return [
    message.event,
    message.json ?? JSON.stringify(message.data) ?? 'null',
    encodeTarget(message.target),
    message.origin,
  ]
}

/** A list of strings, or undefined for anything else (a target field this service did not write). */
function strings(value: unknown): readonly string[] | undefined {
  if (!Array.isArray(value)) return undefined
  for (let i = 0; i < value.length; i++) if (typeof value[i] !== 'string') return undefined
  return value as string[]
}

const USERS_START = '{"u":["'
const USERS_END = '"]}'

/**
 * `{"u":["a","b"]}` with nothing escaped, the commonest target, read without a JSON parse: with no
 * backslash a JSON string holds no quote, so `","` only ever separates ids and `"]` ends the list.
 */
function usersOnly(raw: string): readonly string[] | undefined {
  if (raw.length < USERS_START.length + USERS_END.length) return undefined
  if (!raw.startsWith(USERS_START) || !raw.endsWith(USERS_END) || raw.includes('\\')) return undefined
  const inner = raw.slice(USERS_START.length, -USERS_END.length)
  return inner.includes('"]') ? undefined : inner.split('","')
}

function decodeTarget(raw: string): EventTarget | null {
  if (raw === '*') return { broadcast: true }
  const users = usersOnly(raw)
  if (users !== undefined) return { userIds: users }
  const parsed = JSON.parse(raw) as { u?: unknown; c?: unknown; p?: unknown }
  const userIds = strings(parsed.u)
  const clientIds = strings(parsed.c)
  const topics = strings(parsed.p)
  if (userIds === undefined && clientIds === undefined && topics === undefined) return null
  const target: { userIds?: readonly string[]; clientIds?: readonly string[]; topics?: readonly string[] } =
    {}
  if (userIds !== undefined) target.userIds = userIds
  if (clientIds !== undefined) target.clientIds = clientIds
  if (topics !== undefined) target.topics = topics
  return target
}

const UNPARSED = Symbol('unparsed')

/**
 * An event read from the stream. Its data stays the JSON text it was stored as: frames are built
 * from that text, so an instance parses it only if something asks for `data`.
 */
class StreamEvent implements BusEvent {
  #data: unknown = UNPARSED

  constructor(
    readonly id: string,
    readonly event: string,
    readonly json: string,
    readonly target: EventTarget,
    readonly origin: string,
    readonly publishedAt: number,
  ) {}

  get data(): unknown {
    if (this.#data === UNPARSED) this.#data = JSON.parse(this.json)
    return this.#data
  }
}

/** Turns a stream entry back into a bus event; null for an entry this service did not write. */
export function decodeEntry(entry: StreamEntry): BusEvent | null {
  const { e: event, d: data, t: target, o: origin } = entry.message
  return decodeFields(entry.id, event, data, target, origin)
}

function decodeFields(
  id: string,
  event: string | undefined,
  json: string | undefined,
  target: string | undefined,
  origin: string | undefined,
): BusEvent | null {
  if (event === undefined || json === undefined || target === undefined) return null
  try {
    const decodedTarget = decodeTarget(target)
    if (decodedTarget === null) return null
    return new StreamEvent(id, event, json, decodedTarget, origin ?? '', idTime(id))
  } catch {
    return null
  }
}

/** A raw `[id, [field, value, ...]]` entry from a script, decoded without an object per entry first. */
export function decodeRaw(raw: unknown): { id: string; event: BusEvent | null } {
  const [id, fields] = raw as [string, string[]]
  let event: string | undefined
  let json: string | undefined
  let target: string | undefined
  let origin: string | undefined
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const value = fields[i + 1]
    switch (fields[i]) {
      case 'e':
        event = value
        break
      case 'd':
        json = value
        break
      case 't':
        target = value
        break
      case 'o':
        origin = value
        break
    }
  }
  return { id, event: decodeFields(id, event, json, target, origin) }
}
