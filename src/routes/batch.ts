import type { FastifyBaseLogger, FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { Compile } from 'typebox/compile'
import type { Config } from '../config.js'
import { errors } from '../errors.js'
import { SCOPES } from '../plugins/auth.js'
import type { BatchItem } from '../plugins/cluster-publish.js'
import { type Answer, IdempotencyHeaders } from '../plugins/idempotency.js'
import { errorResponses } from '../schemas.js'
import { toJson } from '../sse/frame.js'
import { checkEvent, SendBody, SendResult } from './send.js'

export const MAX_BATCH_EVENTS = 1000

export const BatchBody = Type.Object(
  {
    events: Type.Array(Type.Unknown({ description: 'An event as POST /api/sse takes it' }), {
      minItems: 1,
      maxItems: MAX_BATCH_EVENTS,
      description: `1 to ${MAX_BATCH_EVENTS} events, each {event, data, broadcast | userIds | clientIds | topics}`,
    }),
  },
  { additionalProperties: false },
)

const ItemError = Type.Object({
  error: Type.Object({ statusCode: Type.Integer(), code: Type.String(), message: Type.String() }),
})
const BatchResult = Type.Object({
  results: Type.Array(Type.Union([SendResult, ItemError]), { description: 'One per event, in order' }),
})

const checkItem = Compile(SendBody)

interface Failure {
  statusCode: number
  code: string
  message: string
}

/** An item's error as the answer shows it; one that is not the service's own is logged and said no more of. */
function failureOf(err: unknown, log: FastifyBaseLogger): Failure {
  const e = err as { statusCode?: number; code?: string; message?: string }
  if (typeof e.code === 'string' && e.code.startsWith('SSE_ERR_') && typeof e.statusCode === 'number') {
    return { statusCode: e.statusCode, code: e.code, message: e.message ?? '' }
  }
  log.error({ err }, 'a batch event failed')
  const internal = new errors.SSE_ERR_INTERNAL()
  return { statusCode: 500, code: internal.code, message: internal.message }
}

/** `POST /api/sse/batch`: many events in one request, each validated and published on its own, in order. */
export const batchRoutes: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  app.post(
    '/api/sse/batch',
    {
      bodyLimit: config.maxBatchBytes,
      config: config.rateLimitPublish > 0 ? { rateLimit: { max: config.rateLimitPublish } } : {},
      preParsing: app.requireScope(SCOPES.publish),
      preValidation: app.idempotency.checkKey,
      schema: {
        tags: ['publish'],
        summary: 'Publish up to 1000 events in one request, in order',
        description:
          'Each event is validated and published on its own. 202 when every event was accepted, else 207; ' +
          '`results` has one entry per event, in order: `{id, delivered}` or `{error: {statusCode, code, message}}`. ' +
          'Over Redis the batch is one round trip and ids increase in event order. ' +
          'An Idempotency-Key covers the whole batch: a repeat answers the results of the first.',
        security: [{ bearerAuth: [] }],
        headers: IdempotencyHeaders,
        body: BatchBody,
        response: {
          202: BatchResult,
          207: BatchResult,
          ...errorResponses(400, 401, 403, 409, 413, 415, 422, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const { events } = request.body as { events: unknown[] }
      const results: ({ id: string; delivered: number } | { error: Failure })[] = new Array(events.length)
      const accepted: BatchItem[] = []
      const slots: number[] = []
      events.forEach((raw, i) => {
        try {
          accepted.push(validate(raw, i))
          slots.push(i)
        } catch (err) {
          results[i] = { error: failureOf(err, request.log) }
        }
      })
      const answerOf = (published: readonly ({ id: string; delivered: number } | Error)[]): Answer => {
        const out = [...results]
        published.forEach((result, j) => {
          out[slots[j] as number] =
            result instanceof Error ? { error: failureOf(result, request.log) } : result
        })
        return { statusCode: out.some((r) => 'error' in r) ? 207 : 202, body: { results: out } }
      }
      // One Idempotency-Key covers the whole batch: a repeat answers the first batch's results.
      const answer =
        accepted.length === 0
          ? answerOf([])
          : await app.idempotency.run(request, reply, {
              route: 'batch',
              publish: async (send) => answerOf(await app.cluster.publishBatch(accepted, send)),
              fromIds: (ids) => answerOf(ids.map((id) => ({ id, delivered: 0 }))),
            })
      if (answer.statusCode === 207)
        request.log.info({ events: events.length, accepted: accepted.length }, 'batch partly refused')
      return reply.code(answer.statusCode as 202 | 207).send(answer.body)
    },
  )

  function validate(raw: unknown, index: number): BatchItem {
    if (!checkItem.Check(raw)) {
      const [first] = checkItem.Errors(raw)
      const where = `events/${index}${first?.instancePath ?? ''}`
      throw new errors.SSE_ERR_INVALID_EVENT(`${where} ${first?.message ?? 'is not a valid event'}`)
    }
    const body = raw as SendBody
    // The depth first: JSON.stringify recurses, and data nested 100,000 deep would overflow its stack.
    const target = checkEvent(body, config.maxDataDepth)
    // Encoded once: the size check reads it and the bus carries it, so the frame is not encoded again.
    const json = toJson(body.data)
    if (itemBytes(body, json) > config.maxPayloadBytes) {
      throw new errors.SSE_ERR_EVENT_TOO_LARGE(config.maxPayloadBytes)
    }
    return { event: body.event, data: body.data, target, json }
  }
}

/** The bytes of `item` as JSON, its data encoded as `json`: the rest of it is encoded with a 1-byte data. */
function itemBytes(item: SendBody, json: string): number {
  return Buffer.byteLength(JSON.stringify({ ...item, data: 0 })) - 1 + Buffer.byteLength(json)
}
