import type { ParsedMessage } from './parser.js'
import { openStream } from './stream.js'
import type { ConnectionState, StateDetail, TokenSource } from './types.js'

export interface ConnectionOptions {
  /** Absolute, with the topics in it; asked at every (re)connect, as the topics can change. */
  url(): string
  token: TokenSource | undefined
  withCredentials?: boolean | undefined
  /** A token already fetched (to find this tab's group); used for the first request. */
  initialToken?: string | undefined
  /** Read at every (re)connect: in a shared stream, other tabs' events move it too. */
  lastEventId(): string | undefined
  onMessage(message: ParsedMessage): void
  onState(state: ConnectionState, detail: StateDetail): void
}

/** The spec leaves the first reconnection delay to the browser; 3 s is what browsers use. */
const DEFAULT_RETRY_MS = 3000
const MAX_DELAY_MS = 30_000

/** Exponential from the retry hint, capped, with jitter so that clients refused together spread out. */
export function backoff(retryMs: number, failures: number): number {
  const delay = Math.min(MAX_DELAY_MS, retryMs * 2 ** Math.max(0, failures - 1))
  return delay / 2 + (Math.random() * delay) / 2
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done)
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
  })
}

/** Calls the token source again until it gives a token (an auth service can be down for a while). */
export async function fetchToken(source: TokenSource, signal: AbortSignal): Promise<string | undefined> {
  for (let failures = 1; !signal.aborted; failures++) {
    try {
      return typeof source === 'string' ? source : await source()
    } catch {
      await sleep(backoff(DEFAULT_RETRY_MS, failures), signal)
    }
  }
  return undefined
}

function disconnectedDetail(data: string): StateDetail {
  try {
    const parsed: { reason?: unknown; message?: unknown } = JSON.parse(data)
    return {
      reason: typeof parsed.reason === 'string' ? parsed.reason : undefined,
      message: typeof parsed.message === 'string' ? parsed.message : undefined,
    }
  } catch {
    return {}
  }
}

/**
 * Holds one stream, reconnecting as the service asks: after `retry:` when it drops, at once with a
 * fresh token after `token_expired` or a 401, with backoff while refused or unreachable, never after
 * `server_disconnect`. Resolves with why it ended for good, or with undefined once `signal` aborts.
 */
export async function runConnection(
  options: ConnectionOptions,
  signal: AbortSignal,
): Promise<StateDetail | undefined> {
  const refreshable = typeof options.token === 'function'
  let token = options.initialToken
  // A 401 for a token that was just fetched is not cured by fetching another at once.
  let fresh = false
  let retry = DEFAULT_RETRY_MS
  let failures = 0
  let detail: StateDetail = {}
  while (!signal.aborted) {
    options.onState('connecting', detail)
    if (token === undefined && options.token !== undefined) {
      token = await fetchToken(options.token, signal)
      fresh = true
      if (token === undefined) break
    }
    const headers: Record<string, string> = { accept: 'text/event-stream' }
    if (token !== undefined) headers.authorization = `Bearer ${token}`
    const last = options.lastEventId()
    if (last) headers['last-event-id'] = last
    let opened = false
    let ended: StateDetail | undefined
    const outcome = await openStream(
      options.url(),
      headers,
      options.withCredentials ? 'include' : 'same-origin',
      signal,
      (message) => {
        if (message.event === 'disconnected') ended = disconnectedDetail(message.data)
        // The event first: once the state says open, the client id of its `connected` is known.
        options.onMessage(message)
        if (!opened) {
          opened = true
          failures = 0
          options.onState('open', {})
        }
      },
      (ms) => {
        retry = ms
      },
    )
    if (signal.aborted) break
    const usedFresh = fresh
    fresh = false
    let delay: number
    if (outcome.kind === 'ended') {
      detail = ended ?? {}
      const reason = detail.reason
      if (reason === 'server_disconnect') return detail
      if (reason === 'token_expired' || reason === 'lifetime') {
        if (reason === 'token_expired' && refreshable) token = undefined
        delay = 0
      } else {
        delay = opened ? retry : backoff(retry, ++failures)
      }
    } else if (outcome.kind === 'refused') {
      const { status, code, message } = outcome
      detail = { status, code, message }
      if (status === 401 && refreshable) {
        token = undefined
        delay = usedFresh ? backoff(retry, ++failures) : 0
      } else if (status === 408 || status === 429 || status >= 500) {
        delay = Math.max(backoff(retry, ++failures), outcome.retryAfterMs)
      } else {
        // 401 without a way to get another token, 403, 404, 204...: retrying would get the same.
        return detail
      }
    } else {
      detail = { message: outcome.message }
      delay = backoff(retry, ++failures)
    }
    if (delay > 0) await sleep(delay, signal)
  }
  return undefined
}
