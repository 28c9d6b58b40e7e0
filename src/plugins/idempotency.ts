import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Type } from 'typebox'
import type { IdempotencyStore, PublishOutcome } from '../bus/idempotency.js'
import type { Config } from '../config.js'
import { errors } from '../errors.js'
import { jsonText } from '../json-text.js'
import { type BusSender, LOCAL_DELIVERY_WAIT_MS } from './cluster-publish.js'

/** 1 to 128 visible ASCII characters: no spaces, no control characters, nothing else. */
const KEY = /^[\x21-\x7e]{1,128}$/

/** The header, for the routes' schemas (and so the OpenAPI document). */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 128,
      pattern: '^[\\x21-\\x7E]+$',
      description:
        'Makes a retry safe: a repeat of this key (per token subject and route) within IDEMPOTENCY_TTL_MS ' +
        'answers the first result with `idempotent-replayed: true` and publishes nothing. ' +
        'The same key with another body is 422; a repeat while the first is in flight waits for it, or 409.',
    }),
  ),
})

/** How long a repeat waits for the first request with its key to answer, before 409. */
export const IN_FLIGHT_WAIT_MS = 2000
const POLL_MS = 50

export interface Answer {
  statusCode: number
  body: unknown
}

export interface IdempotentWork {
  /** Keys are scoped per route: the same key on another route is another key. */
  route: string
  /** Publishes through `send` (undefined when the request has no key: the plain path) and builds the answer. */
  publish(send: BusSender | undefined): Promise<Answer>
  /** The answer for a first request whose events were stored but that never answered (its instance died). */
  fromIds(ids: readonly string[]): Answer
}

export interface Idempotency {
  /** A `preValidation` hook: 400 SSE_ERR_INVALID_IDEMPOTENCY_KEY for a malformed key, before the body is validated. */
  checkKey(request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void
  /** Runs a publish once per key: the first publishes, a repeat gets the first's answer. */
  run(request: FastifyRequest, reply: FastifyReply, work: IdempotentWork): Promise<Answer>
  /** Repeats answered without publishing (for metrics). */
  readonly replays: number
}

declare module 'fastify' {
  interface FastifyInstance {
    idempotency: Idempotency
  }
}

/** Thrown by the sender when the store found the key: nothing was published. */
class Repeat {
  constructor(readonly outcome: Exclude<PublishOutcome, { kind: 'published' }>) {}
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

/**
 * `Idempotency-Key` on the publish routes. The key is scoped to the token's subject and the
 * route (hashed: a publisher can neither see nor collide with another's keys); the body's hash
 * tells a repeat from a reuse. Checking the key and publishing are one step of the store (one
 * script over Redis), so a lost reply cannot let a retry publish twice.
 */
export const idempotencyPlugin = fp<{ config: Config }>(
  async (app, { config }) => {
    const store: IdempotencyStore = app.idempotencyStore
    const ttlMs = config.idempotencyTtlMs
    // The longest a first request can still be working after its events were stored: past it,
    // a record without an answer belongs to a request that failed (a lost reply, a dead instance).
    const firstBoundMs =
      LOCAL_DELIVERY_WAIT_MS + (config.redisWaitReplicas > 0 ? config.redisWaitTimeoutMs : 0) + 500
    let replays = 0

    const replayed = (reply: FastifyReply, answer: Answer): Answer => {
      replays++
      reply.header('idempotent-replayed', 'true')
      return answer
    }

    const unavailable = (err: unknown): never => {
      if ((err as { code?: unknown })?.code === 'SSE_ERR_BUS_UNAVAILABLE') throw err
      app.log.warn({ err }, 'reading an idempotency record failed')
      throw new errors.SSE_ERR_BUS_UNAVAILABLE('redis unavailable')
    }

    /** A repeat: the first's answer, or its ids once it cannot answer any more, or 409. null: the record is gone. */
    async function repeat(
      reply: FastifyReply,
      key: string,
      fingerprint: string,
      work: IdempotentWork,
      first: Repeat['outcome'],
    ): Promise<Answer | null> {
      const deadline = Date.now() + IN_FLIGHT_WAIT_MS
      let outcome: PublishOutcome | null = first
      for (;;) {
        if (outcome === null) return null
        if (outcome.kind === 'mismatch') throw new errors.SSE_ERR_IDEMPOTENCY_MISMATCH()
        if (outcome.kind !== 'seen') return null
        const record = outcome.record
        if (record.answer !== null) return replayed(reply, JSON.parse(record.answer) as Answer)
        if (record.failed || record.ageMs > firstBoundMs) {
          // Stored, and the first will never answer: answer its ids once they are as durable as asked.
          await store.confirm(key)
          const answer = work.fromIds(record.ids)
          await store.complete(key, JSON.stringify(answer)).catch(() => undefined)
          return replayed(reply, answer)
        }
        if (Date.now() >= deadline) throw new errors.SSE_ERR_IDEMPOTENCY_IN_FLIGHT()
        await sleep(POLL_MS)
        outcome = await store.read(key, fingerprint).catch(unavailable)
      }
    }

    const idempotency: Idempotency = {
      // A callback hook: no promise and no extra turn of the microtask queue on every publish.
      checkKey(request, _reply, done) {
        const raw = request.headers['idempotency-key']
        if (raw !== undefined && (typeof raw !== 'string' || !KEY.test(raw))) {
          done(new errors.SSE_ERR_INVALID_IDEMPOTENCY_KEY())
        } else done()
      },

      async run(request, reply, work) {
        const raw = request.headers['idempotency-key']
        if (typeof raw !== 'string') return work.publish(undefined)
        const key = sha256(`${work.route}\n${request.auth?.userId ?? ''}\n${raw}`)
        const fingerprint = sha256(jsonText(request.body ?? null))
        // A record that vanished (expired, or its first stored nothing) lets this request go first.
        for (let attempt = 0; ; attempt++) {
          let clean = false
          const send: BusSender = async (messages) => {
            const outcome = await store.publish(key, fingerprint, messages, ttlMs)
            if (outcome.kind !== 'published') throw new Repeat(outcome)
            clean = outcome.ids.every((id) => typeof id === 'string')
            return outcome.ids
          }
          try {
            const answer = await work.publish(send)
            if (clean) {
              await store.complete(key, JSON.stringify(answer)).catch((err: unknown) => {
                request.log.warn({ err }, 'could not store the answer of an idempotent publish')
              })
            }
            return answer
          } catch (err) {
            if (!(err instanceof Repeat)) throw err
            const answer = await repeat(reply, key, fingerprint, work, err.outcome)
            if (answer !== null) return answer
            if (attempt >= 2) throw new errors.SSE_ERR_IDEMPOTENCY_IN_FLIGHT()
          }
        }
      },

      get replays() {
        return replays
      },
    }
    app.decorate('idempotency', idempotency)
  },
  { name: 'sse-idempotency', fastify: '5.x', dependencies: ['sse-bus'] },
)
