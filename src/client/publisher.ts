/**
 * The publisher SDK: what a backend service imports (`sse-manager/client`) to push
 * events through the service. It depends on undici only, never on the server code.
 */
import { Agent, request } from 'undici'
import type {
  BatchResult,
  DisconnectAllResult,
  EventMap,
  NotificationData,
  Publisher,
  PublisherErrorInit,
  PublisherOptions,
  PublishResult,
  Stats,
  TopicPresence,
} from './types.js'

export type * from './types.js'

/**
 * Every failure of the SDK. `statusCode` and `code` are the service's own
 * (`SSE_ERR_MISSING_SCOPE`, ...) when it answered, else `statusCode` is null and
 * `code` is one of `ClientErrorCode`.
 */
export class PublisherError extends Error {
  readonly statusCode: number | null
  readonly code: string
  /** The HTTP status text the service sent, when it answered. */
  readonly error: string | undefined
  /** How many requests were made, retries included. */
  readonly attempts: number

  constructor(message: string, init: PublisherErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause })
    this.name = 'PublisherError'
    this.statusCode = init.statusCode
    this.code = init.code
    this.error = init.error
    this.attempts = init.attempts
  }
}

/** Errors raised before the request reached the service or while the socket broke: safe enough to retry. */
const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_CLOSED',
])

interface Answer {
  status: number
  body: unknown
  retryAfterMs: number | null
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

function retryAfter(header: string | string[] | undefined): number | null {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined) return null
  const seconds = Number(value)
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now())
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Creates a publisher with its own keep-alive connection pool. Retries happen only
 * when the service could not take the request (network errors, 503), with exponential
 * backoff and full jitter. Every publish sends an Idempotency-Key (a fresh UUID per call, the
 * same on each of its retries), so publishes are also retried after a timeout or a 409: the
 * service answers a repeat with the first result instead of publishing it again. Other calls
 * are not retried after a timeout.
 */
export function createPublisher<Events extends EventMap = EventMap>(
  options: PublisherOptions,
): Publisher<Events> {
  let base: URL
  try {
    base = new URL(options.url.endsWith('/') ? options.url : `${options.url}/`)
  } catch {
    throw new TypeError(`createPublisher: url must be an absolute URL, got "${options.url}"`)
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new TypeError('createPublisher: url must start with http:// or https://')
  }
  const timeoutMs = options.timeoutMs ?? 10_000
  const retries = Math.max(0, Math.floor(options.retries ?? 2))
  const retryDelayMs = options.retryDelayMs ?? 100
  const maxRetryDelayMs = options.maxRetryDelayMs ?? 5_000
  const ownDispatcher = options.dispatcher === undefined
  const dispatcher =
    options.dispatcher ??
    new Agent({ connections: options.connections ?? 10, keepAliveTimeout: 30_000, pipelining: 1 })
  let closed = false

  async function authorization(): Promise<string> {
    const token = typeof options.token === 'function' ? await options.token() : options.token
    return `Bearer ${token}`
  }

  async function once(method: 'GET' | 'POST', path: string, body: unknown, key?: string): Promise<Answer> {
    const res = await request(new URL(path, base), {
      method,
      dispatcher,
      signal: AbortSignal.timeout(timeoutMs),
      headers: {
        accept: 'application/json',
        authorization: await authorization(),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(key === undefined ? {} : { 'idempotency-key': key }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await res.body.text()
    let parsed: unknown
    try {
      parsed = text === '' ? undefined : JSON.parse(text)
    } catch {
      parsed = text
    }
    return { status: res.statusCode, body: parsed, retryAfterMs: retryAfter(res.headers['retry-after']) }
  }

  function backoff(attempt: number, retryAfterMs: number | null): number {
    const exponential = Math.min(maxRetryDelayMs, retryDelayMs * 2 ** attempt)
    const jittered = Math.random() * exponential
    return retryAfterMs === null ? jittered : Math.min(maxRetryDelayMs, Math.max(retryAfterMs, jittered))
  }

  /** `key`: the Idempotency-Key of a publish; with it a timeout and a 409 are safe to retry. */
  async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown, key?: string): Promise<T> {
    if (closed)
      throw new PublisherError('The publisher is closed', {
        statusCode: null,
        code: 'SSE_CLIENT_CLOSED',
        attempts: 0,
      })
    for (let attempt = 0; ; attempt++) {
      const attempts = attempt + 1
      let answer: Answer
      try {
        answer = await once(method, path, body, key)
      } catch (err) {
        const code = errorCode(err)
        const name = (err as { name?: unknown } | null)?.name
        if (
          name === 'TimeoutError' ||
          code === 'UND_ERR_HEADERS_TIMEOUT' ||
          code === 'UND_ERR_BODY_TIMEOUT'
        ) {
          // The event may have been taken: only a retry with the same key cannot publish it twice.
          if (key !== undefined && attempt < retries && !closed) {
            await sleep(backoff(attempt, null))
            continue
          }
          throw new PublisherError(`${method} ${path}: no answer within ${timeoutMs} ms`, {
            statusCode: null,
            code: 'SSE_CLIENT_TIMEOUT',
            attempts,
            cause: err,
          })
        }
        const retryable = code !== undefined && RETRYABLE_NETWORK_CODES.has(code)
        if (retryable && attempt < retries && !closed) {
          await sleep(backoff(attempt, null))
          continue
        }
        throw new PublisherError(
          `${method} ${path}: ${(err as Error)?.message ?? String(err)}${code ? ` (${code})` : ''}`,
          { statusCode: null, code: 'SSE_CLIENT_NETWORK', attempts, cause: err },
        )
      }
      if (answer.status >= 200 && answer.status < 300) return answer.body as T
      const problem = (answer.body ?? {}) as { code?: unknown; error?: unknown; message?: unknown }
      // 409 SSE_ERR_IDEMPOTENCY_IN_FLIGHT: an earlier attempt of this call is still being processed.
      const inFlight =
        answer.status === 409 && key !== undefined && problem.code === 'SSE_ERR_IDEMPOTENCY_IN_FLIGHT'
      if ((answer.status === 503 || inFlight) && attempt < retries && !closed) {
        await sleep(backoff(attempt, answer.retryAfterMs))
        continue
      }
      const hasCode = typeof problem.code === 'string'
      throw new PublisherError(
        typeof problem.message === 'string' ? problem.message : `${method} ${path} answered ${answer.status}`,
        {
          statusCode: answer.status,
          code: hasCode ? (problem.code as string) : 'SSE_CLIENT_BAD_RESPONSE',
          ...(typeof problem.error === 'string' ? { error: problem.error } : {}),
          attempts,
        },
      )
    }
  }

  // One fresh key per call, reused by that call's retries.
  const newKey = (): string => globalThis.crypto.randomUUID()
  const publish = (body: Record<string, unknown>, key: string = newKey()) =>
    call<PublishResult>('POST', 'api/sse', body, key)

  return {
    broadcastMessage: (event, data) => publish({ event, data, broadcast: true }),
    sendToUsers: (event, data, userIds) => publish({ event, data, userIds: [...userIds] }),
    sendToClients: (event, data, clientIds) => publish({ event, data, clientIds: [...clientIds] }),
    publishToTopics: (event, data, topics) => publish({ event, data, topics: [...topics] }),
    publish: (event, data, target, options) => publish({ event, data, ...target }, options?.idempotencyKey),
    publishBatch: (events, options) =>
      call<BatchResult>('POST', 'api/sse/batch', { events }, options?.idempotencyKey ?? newKey()),
    changeSubscriptions: (change) => call<{ matched: number }>('POST', 'api/sse/subscriptions', change),
    presence: (topic) => call<TopicPresence>('GET', `api/sse/topics/${encodeURIComponent(topic)}/presence`),
    sendNotification: (userId, title, message, type = 'info') => {
      const data: NotificationData = { title, message, type, timestamp: new Date().toISOString() }
      return publish({ event: 'notification', data, userIds: [userId] })
    },
    stats: () => call<Stats>('GET', 'api/sse/stats'),
    disconnectAll: () => call<DisconnectAllResult>('POST', 'api/sse/disconnect-all'),
    async close() {
      if (closed) return
      closed = true
      if (ownDispatcher) await dispatcher.close()
    },
  }
}
