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

function encodeTarget(target: EventTarget): string {
  if (target.broadcast === true) return '*'
  return JSON.stringify({ u: target.userIds, c: target.clientIds, p: target.topics })
}

/** The four values of an entry, in the order the append script takes them. */
export function valuesOf(message: BusMessage): [string, string, string, string] {
  return [message.event, JSON.stringify(message.data) ?? 'null', encodeTarget(message.target), message.origin]
}

function strings(value: unknown): readonly string[] | undefined {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) return undefined
  return value as string[]
}

function decodeTarget(raw: string): EventTarget | null {
  if (raw === '*') return { broadcast: true }
  const parsed = JSON.parse(raw) as { u?: unknown; c?: unknown; p?: unknown }
  const userIds = strings(parsed.u)
  const clientIds = strings(parsed.c)
  const topics = strings(parsed.p)
  if (userIds === undefined && clientIds === undefined && topics === undefined) return null
  return {
    ...(userIds ? { userIds } : {}),
    ...(clientIds ? { clientIds } : {}),
    ...(topics ? { topics } : {}),
  }
}

/** Turns a stream entry back into a bus event; null for an entry this service did not write. */
export function decodeEntry(entry: StreamEntry): BusEvent | null {
  const { e: event, d: data, t: target, o: origin } = entry.message
  if (event === undefined || data === undefined || target === undefined) return null
  try {
    const decodedTarget = decodeTarget(target)
    if (decodedTarget === null) return null
    return {
      id: entry.id,
      event,
      data: JSON.parse(data),
      target: decodedTarget,
      origin: origin ?? '',
      publishedAt: idTime(entry.id),
    }
  } catch {
    return null
  }
}

/** A raw `[id, [field, value, ...]]` entry from a script. */
export function entryOf(raw: unknown): StreamEntry {
  const [id, fields] = raw as [string, string[]]
  const message: Record<string, string> = {}
  for (let i = 0; i + 1 < fields.length; i += 2) message[fields[i] as string] = fields[i + 1] as string
  return { id, message }
}
