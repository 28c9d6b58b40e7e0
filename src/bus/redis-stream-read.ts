import { compareEventIds } from '../sse/event-id.js'
import type { RedisClient } from './redis-client.js'
import { LARGE_ENTRY_BYTES, READ, runScript } from './redis-scripts.js'

/** One read takes at most this many entries, and stops past READ_MAX_BYTES: what a reader holds at once. */
export const READ_COUNT = 512
export const READ_MAX_BYTES = READ_COUNT * LARGE_ENTRY_BYTES

/** One read of the stream, with where the stream stood at that moment (atomically). */
export interface StreamRead {
  /** The oldest id kept ('0-0' for none) and the last id ever generated ('' when the stream does not exist). */
  first: string
  generated: string
  /** Entries ever added, and how many the stream holds. */
  added: number
  length: number
  /** The newest entry larger than LARGE_ENTRY_BYTES ('0-0' for none). */
  large: string
  /** `[id, [field, value, ...]]`, oldest first. */
  entries: unknown[]
}

/**
 * The byte-bounded read, a script: it sizes every entry as it goes, which costs Redis about seven
 * times what a plain XRANGE does, so it is used only where entries may be large.
 * KEYS: stream, large-entry id. ARGV: lastId, count, maxBytes.
 */
export async function scriptRead(
  client: RedisClient,
  keys: [string, string],
  lastId: string,
): Promise<StreamRead> {
  const reply = (await runScript(client, READ, keys, [
    lastId,
    String(READ_COUNT),
    String(READ_MAX_BYTES),
  ])) as [string, string, number, number, string | null, unknown[]]
  const [first, generated, added, length, large, entries] = reply
  return { first, generated, added: Number(added), length: Number(length), large: large ?? '0-0', entries }
}

const NO_SUCH_KEY = /no such key/i

/**
 * The plain read: XINFO STREAM, the large-entry id and XRANGE in one MULTI (atomic, so a trim
 * cannot slip between the check and the read). At most `count` entries after `lastId`, up to
 * `end`: a caller reads many only up to an end before which it knows no entry is large. A count of
 * 0 reads no entry, only where the stream stands.
 */
export async function rangeRead(
  client: RedisClient,
  keys: [string, string],
  lastId: string,
  end: string,
  count: number,
): Promise<StreamRead> {
  const multi = client.multi().addCommand(['XINFO', 'STREAM', keys[0]]).addCommand(['GET', keys[1]])
  if (count > 0) multi.addCommand(['XRANGE', keys[0], `(${lastId}`, end, 'COUNT', String(count)])
  let replies: unknown[]
  try {
    replies = (await multi.exec()) as unknown[]
  } catch (err) {
    const failed = err as { replies?: unknown[]; errorIndexes?: number[] }
    // XINFO of a stream that does not exist is an error; nothing else in the MULTI is.
    const only = failed.errorIndexes?.length === 1 && failed.errorIndexes[0] === 0
    if (!only || !NO_SUCH_KEY.test(String((failed.replies?.[0] as Error | undefined)?.message))) throw err
    return { first: '', generated: '', added: 0, length: 0, large: '0-0', entries: [] }
  }
  const info = fieldsOf(replies[0])
  return {
    first: String(info['recorded-first-entry-id'] ?? '0-0'),
    generated: String(info['last-generated-id'] ?? '0-0'),
    added: Number(info['entries-added'] ?? 0),
    length: Number(info.length ?? 0),
    large: (replies[1] as string | null) ?? '0-0',
    entries: (replies[2] as unknown[] | undefined) ?? [],
  }
}

/** XINFO's answer as an object, whether the client gave a map, an object or a flat list of pairs. */
function fieldsOf(reply: unknown): Record<string, unknown> {
  if (reply instanceof Map) return Object.fromEntries(reply)
  if (!Array.isArray(reply)) return reply as Record<string, unknown>
  const fields: Record<string, unknown> = {}
  for (let i = 0; i + 1 < reply.length; i += 2) fields[String(reply[i])] = reply[i + 1]
  return fields
}

/** Whether the entries after `lastId` up to `end` are all small, as `large` (read when `end` was the stream's end) says. */
export function smallUpTo(lastId: string, end: string, large: string): boolean {
  return compareEventIds(end, lastId) > 0 && compareEventIds(large, lastId) <= 0
}
