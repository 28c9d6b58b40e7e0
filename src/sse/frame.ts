/**
 * Wire encoding of server-sent events (WHATWG HTML, "Server-sent events").
 *
 * Frames are encoded once per published event and the resulting Buffer is shared
 * by every recipient, so everything here is pure and allocation-conscious.
 */

/** Event names a publisher may use: 1 to 64 letters, digits and `_ - . : /`. */
export const EVENT_NAME_PATTERN = /^[A-Za-z0-9_\-.:/]{1,64}$/

/** Events the service sends itself; publishers may not use them. */
export const RESERVED_EVENTS: ReadonlySet<string> = new Set([
  'connected',
  'heartbeat',
  'disconnected',
  'subscriptions',
  'presence',
])

/** Event ids are `<milliseconds>-<sequence>`, the same shape Redis Streams use. */
export const EVENT_ID_PATTERN = /^\d{1,16}-\d{1,16}$/

/** The longest id a client may send back; anything longer is treated as unknown without parsing. */
export const MAX_EVENT_ID_LENGTH = 40

export function isValidEventName(name: string): boolean {
  return EVENT_NAME_PATTERN.test(name)
}

export function isReservedEvent(name: string): boolean {
  return RESERVED_EVENTS.has(name)
}

export function isValidEventId(id: unknown): id is string {
  return typeof id === 'string' && id.length <= MAX_EVENT_ID_LENGTH && EVENT_ID_PATTERN.test(id)
}

const LINE_BREAK = /\r\n|\r|\n/
const HAS_LINE_BREAK = /[\r\n]/

/**
 * Renders one `data:` line per line of `payload`. CR, LF and CRLF all end a line in
 * the SSE grammar, so each of them must start a new `data:` field: otherwise a
 * payload could end the event early or inject `event:`/`id:` fields.
 */
function dataLines(payload: string): string {
  if (!HAS_LINE_BREAK.test(payload)) return `data: ${payload}\n`
  let out = ''
  for (const line of payload.split(LINE_BREAK)) out += `data: ${line}\n`
  return out
}

/** Field values other than data (event, id) must be a single line; callers validate them. */
function assertSingleLine(field: string, value: string): void {
  if (HAS_LINE_BREAK.test(value)) throw new TypeError(`SSE ${field} must not contain a line break`)
}

export interface FrameFields {
  /** Event name (`event:` field). */
  event: string
  /** Any JSON-serializable value; it is sent as JSON. */
  data: unknown
  /**
   * `data` already serialized (as `JSON.stringify` wrote it, e.g. read back from Redis): sent as
   * it is, so that it is neither parsed nor serialized again.
   */
  json?: string | undefined
  /** Event id (`id:` field); omitted for heartbeats and control frames. */
  id?: string | undefined
  /** Reconnection delay hint (`retry:` field) in milliseconds. */
  retry?: number | undefined
}

/** Serializes `data` as JSON; `undefined` (which JSON cannot express) becomes `null`. */
export function toJson(data: unknown): string {
  return JSON.stringify(data) ?? 'null'
}

/**
 * Encodes one event as text. Field order: `retry`, `event`, `id`, `data` (parsers do not
 * care; people reading a stream see each event's name first).
 */
export function encodeFrameText(fields: FrameFields): string {
  let out = ''
  if (fields.retry !== undefined) out += `retry: ${Math.max(0, Math.floor(fields.retry))}\n`
  assertSingleLine('event', fields.event)
  out += `event: ${fields.event}\n`
  if (fields.id !== undefined) {
    assertSingleLine('id', fields.id)
    if (fields.id.includes('\0')) throw new TypeError('SSE id must not contain NUL')
    out += `id: ${fields.id}\n`
  }
  out += dataLines(fields.json ?? toJson(fields.data))
  return `${out}\n`
}

/** Encodes one event to the bytes written on the wire. */
export function encodeFrame(fields: FrameFields): Buffer {
  return Buffer.from(encodeFrameText(fields), 'utf8')
}

/** A comment line; parsers ignore it. Useful as a keep-alive that fires no event. */
export function encodeComment(text: string): Buffer {
  return Buffer.from(`: ${text.replace(/[\r\n]+/g, ' ')}\n\n`, 'utf8')
}
