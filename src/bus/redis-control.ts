import { randomUUID } from 'node:crypto'
import { errors } from '../errors.js'
import { type BusLogger, REDIS_UNAVAILABLE, type RedisClient } from './redis-client.js'

/** Answers a request from another instance (or this one); the result goes back as JSON. */
export type ControlHandler = (type: string, payload: unknown) => unknown

export interface RedisControlOptions {
  commands: RedisClient
  /** The pub/sub connection. */
  subscriber: RedisClient
  prefix: string
  instanceId: string
  /** How long a request waits for the other instances. */
  replyTimeoutMs?: number
  log?: BusLogger
}

interface Request {
  type: string
  requestId: string
  replyTo: string
  payload?: unknown
}

interface Reply {
  requestId: string
  instanceId: string
  result: unknown
}

/**
 * Requests to every instance, with their answers: a `control` channel every instance listens
 * to and a `reply:<id>` channel per instance. PUBLISH says how many instances heard the
 * request; the caller waits for that many replies, or for the timeout, so an instance that
 * died simply does not count.
 */
export class RedisControl {
  readonly #commands: RedisClient
  readonly #subscriber: RedisClient
  readonly #prefix: string
  readonly #instanceId: string
  readonly #timeoutMs: number
  readonly #log: BusLogger | undefined
  readonly #waiting = new Map<string, (reply: Reply) => void>()
  #handler: ControlHandler | undefined
  #closed = false

  constructor(options: RedisControlOptions) {
    this.#commands = options.commands
    this.#subscriber = options.subscriber
    this.#prefix = options.prefix
    this.#instanceId = options.instanceId
    this.#timeoutMs = options.replyTimeoutMs ?? 2000
    this.#log = options.log
  }

  /** Subscribes. Does not wait for Redis: the subscription is made once it is up. */
  start(handler: ControlHandler): void {
    this.#handler = handler
    const subscribed = Promise.all([
      this.#subscriber.subscribe(`${this.#prefix}control`, (raw) => this.#onRequest(raw)),
      this.#subscriber.subscribe(`${this.#prefix}reply:${this.#instanceId}`, (raw) => this.#onReply(raw)),
    ])
    subscribed.catch((err) => {
      if (!this.#closed) this.#log?.error({ err }, 'could not subscribe to the control channel')
    })
  }

  /** Asks every instance, this one included; resolves with the answers that came in time. */
  async ask(type: string, payload?: unknown): Promise<unknown[]> {
    const requestId = randomUUID()
    const results: unknown[] = []
    let expected = Number.POSITIVE_INFINITY
    let done: () => void = () => {}
    const complete = new Promise<void>((resolve) => {
      done = resolve
    })
    this.#waiting.set(requestId, (reply) => {
      results.push(reply.result)
      if (results.length >= expected) done()
    })
    const timer = setTimeout(() => done(), this.#timeoutMs)
    timer.unref()
    try {
      const request: Request = { type, requestId, replyTo: this.#instanceId, payload }
      expected = Number(await this.#commands.publish(`${this.#prefix}control`, JSON.stringify(request)))
      if (results.length >= expected) done()
      await complete
    } catch (err) {
      this.#log?.warn({ err, type }, 'could not send a request to the other instances through redis')
      throw new errors.SSE_ERR_BUS_UNAVAILABLE(REDIS_UNAVAILABLE)
    } finally {
      clearTimeout(timer)
      this.#waiting.delete(requestId)
    }
    if (results.length < expected) {
      this.#log?.warn({ type, expected, answered: results.length }, 'some instances did not answer in time')
    }
    return results
  }

  close(): void {
    this.#closed = true
  }

  #onRequest(raw: string): void {
    let request: Request
    try {
      request = JSON.parse(raw) as Request
    } catch {
      return
    }
    if (this.#handler === undefined || typeof request.type !== 'string') return
    let result: unknown
    try {
      result = this.#handler(request.type, request.payload)
    } catch (err) {
      this.#log?.error({ err, type: request.type }, 'answering a request from another instance failed')
      result = null
    }
    const reply: Reply = { requestId: request.requestId, instanceId: this.#instanceId, result }
    this.#commands
      .publish(`${this.#prefix}reply:${request.replyTo}`, JSON.stringify(reply))
      .catch((err) => this.#log?.warn({ err }, 'could not answer a request from another instance'))
  }

  #onReply(raw: string): void {
    try {
      const reply = JSON.parse(raw) as Reply
      this.#waiting.get(reply.requestId)?.(reply)
    } catch {
      // not ours
    }
  }
}
