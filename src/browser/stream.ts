import { createParser, type ParsedMessage } from './parser.js'

/** How one request for the stream ended. */
export type Outcome =
  /** The response streamed, then ended (the server closed it, or the network dropped it). */
  | { kind: 'ended' }
  /** The service answered with an error (the body is its JSON error, when it is one). */
  | { kind: 'refused'; status: number; code?: string; message?: string; retryAfterMs: number }
  /** No answer, or one that is not an event stream. */
  | { kind: 'failed'; message: string }

interface ErrorBody {
  code?: unknown
  message?: unknown
}

const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined)

/**
 * One request for the stream. fetch() rather than EventSource: it can send the token in a header
 * and show why a (re)connect was refused, which an EventSource hides behind a bare `error`.
 */
export async function openStream(
  url: string,
  headers: Record<string, string>,
  credentials: 'include' | 'same-origin',
  signal: AbortSignal,
  onMessage: (message: ParsedMessage) => void,
  onRetry: (ms: number) => void,
): Promise<Outcome> {
  let res: Response
  try {
    // no-store: Firefox otherwise holds back a second request for the same URL (another tab's
    // stream) until the first response is complete, which a stream never is. (The cast: Node's
    // RequestInit, which the Node tests compile this with, has no `cache`.)
    res = await fetch(url, { headers, credentials, signal, cache: 'no-store' } as RequestInit)
  } catch (err) {
    return { kind: 'failed', message: String(err) }
  }
  const type = res.headers.get('content-type') ?? ''
  if (res.status !== 200) {
    const body = (await res.json().catch(() => ({}))) as ErrorBody
    const seconds = Number(res.headers.get('retry-after'))
    return {
      kind: 'refused',
      status: res.status,
      code: text(body.code),
      message: text(body.message),
      retryAfterMs: seconds > 0 ? seconds * 1000 : 0,
    }
  }
  if (!/^text\/event-stream/i.test(type) || res.body === null) {
    // Not read: a 200 that is not a stream (a proxy's page) may never end.
    res.body?.cancel().catch(() => {})
    return { kind: 'failed', message: `not an event stream (${type || 'no content-type'})` }
  }
  const reader = res.body.getReader()
  // The parser drops the one BOM the spec allows; the decoder must leave it in.
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true })
  const parser = createParser(onMessage, onRetry)
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      parser.feed(decoder.decode(value, { stream: true }))
    }
  } catch {
    // Aborted, or the connection dropped: either way the stream is over.
  }
  return { kind: 'ended' }
}
