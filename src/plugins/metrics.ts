import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import { errors } from '../errors.js'
import { errorResponses } from '../schemas.js'
import type { DisconnectReason } from '../sse/client.js'
import type { SseManagerHooks } from '../sse/manager.js'
import { registerBusMetrics } from './bus-metrics.js'

/** The label values of `sse_disconnects_total`: few and stable, whatever reasons the core adds. */
export type DisconnectLabel = 'client' | 'slow' | 'expired' | 'server'

const DISCONNECT_LABELS: Record<DisconnectReason, DisconnectLabel> = {
  client: 'client',
  error: 'client',
  slow: 'slow',
  lifetime: 'expired',
  token_expired: 'expired',
  server_disconnect: 'server',
  server_shutdown: 'server',
}

export interface SseMetrics {
  /** This app's own registry: tests build many apps, so nothing goes to prom-client's global one. */
  readonly registry: Registry
  /** Observers to hand to the connection manager (`ssePlugin`'s `hooks`). */
  readonly hooks: SseManagerHooks
}

/**
 * Creates the registry and the counters the manager's hooks feed. It is made before
 * the manager (which takes the hooks) and read by `metricsPlugin` after it.
 */
export function createSseMetrics(): SseMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const connects = new Counter({
    name: 'sse_connects_total',
    help: 'Streams opened',
    labelNames: ['auth'] as const,
    registers: [registry],
  })
  const disconnects = new Counter({
    name: 'sse_disconnects_total',
    help: 'Streams ended, by reason: client (went away or failed), slow (too far behind), expired (lifetime or token), server (disconnect-all or shutdown)',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const published = new Counter({
    name: 'sse_events_published_total',
    help: 'Events this instance delivered to its connections (published here or received from the bus)',
    registers: [registry],
  })
  const delivered = new Counter({
    name: 'sse_events_delivered_total',
    help: 'Event copies queued to connections (one event to N connections counts N)',
    registers: [registry],
  })
  const bytes = new Counter({
    name: 'sse_bytes_written_total',
    help: 'Bytes of events and heartbeats written to streams',
    registers: [registry],
  })
  const replayed = new Counter({
    name: 'sse_replayed_events_total',
    help: 'Missed events replayed to reconnecting clients (Last-Event-ID)',
    registers: [registry],
  })
  const recoveryFailures = new Counter({
    name: 'sse_recovery_failures_total',
    help: 'Reconnects with a Last-Event-ID that was no longer (or never) in the history: the client may have missed events',
    registers: [registry],
  })
  const heartbeat = new Histogram({
    name: 'sse_heartbeat_duration_seconds',
    help: 'Time to queue one heartbeat to every connection',
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
    registers: [registry],
  })
  const subscriptionChanges = new Counter({
    name: 'sse_subscription_changes_total',
    help: 'Topics added to or removed from connections: on connect, by POST /api/sse/subscriptions, on disconnect',
    labelNames: ['action'] as const,
    registers: [registry],
  })
  for (const action of ['add', 'remove']) subscriptionChanges.labels(action).inc(0)
  for (const auth of ['anonymous', 'authenticated']) connects.labels(auth).inc(0)
  for (const reason of new Set(Object.values(DISCONNECT_LABELS))) disconnects.labels(reason).inc(0)

  const hooks: SseManagerHooks = {
    onConnect(client, info) {
      connects.labels(client.anonymous ? 'anonymous' : 'authenticated').inc()
      if (client.topics.length > 0) subscriptionChanges.labels('add').inc(client.topics.length)
      if (info.replayed > 0) replayed.inc(info.replayed)
      // A failed recovery: the client asked to resume and the history could not serve it.
      if (!info.recovered && info.requestedLastEventId !== null) recoveryFailures.inc()
    },
    onDisconnect(client, reason) {
      disconnects.labels(DISCONNECT_LABELS[reason] ?? 'client').inc()
      if (client.started && client.topics.length > 0)
        subscriptionChanges.labels('remove').inc(client.topics.length)
    },
    onSubscriptions(_client, change) {
      if (change.added.length > 0) subscriptionChanges.labels('add').inc(change.added.length)
      if (change.removed.length > 0) subscriptionChanges.labels('remove').inc(change.removed.length)
    },
    onDeliver(_event, recipients) {
      published.inc()
      if (recipients > 0) delivered.inc(recipients)
    },
    onFlush(written) {
      if (written > 0) bytes.inc(written)
    },
    onHeartbeat(durationMs) {
      heartbeat.observe(durationMs / 1000)
    },
  }
  return { registry, hooks }
}

/**
 * Compares in time that does not depend on where, or whether, the two differ, lengths
 * included: both sides are hashed to 32 bytes first.
 */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

export interface MetricsPluginOptions {
  metrics: SseMetrics
  /** When set, scrapes must send `Authorization: Bearer <token>`. */
  token: string | null
}

/** `GET /metrics` in the Prometheus text format, with the open-connection gauge read from `app.sse`. */
export const metricsPlugin = fp<MetricsPluginOptions>(
  async (app, { metrics, token }) => {
    const { registry } = metrics
    new Gauge({
      name: 'sse_connections_open',
      help: 'Open streams on this instance',
      labelNames: ['auth'] as const,
      registers: [registry],
      collect() {
        const stats = app.sse.stats()
        this.labels('anonymous').set(stats.anonymousConnections)
        this.labels('authenticated').set(stats.authenticatedConnections)
      },
    })

    new Gauge({
      name: 'sse_topics',
      help: 'Topics with at least one subscriber on this instance',
      registers: [registry],
      collect() {
        this.set(app.sse.topicCount)
      },
    })
    registerBusMetrics(registry, app)

    const authorize = async (request: FastifyRequest) => {
      if (token === null) return
      const header = request.headers.authorization
      if (header === undefined)
        throw new errors.SSE_ERR_TOKEN_REQUIRED('send "Authorization: Bearer <METRICS_TOKEN>"')
      const match = /^Bearer (.+)$/i.exec(header)
      if (match === null || !sameSecret(match[1] as string, token)) {
        throw new errors.SSE_ERR_INVALID_TOKEN('it is not the metrics token')
      }
    }

    app.get(
      '/metrics',
      {
        logLevel: 'warn',
        onRequest: authorize,
        schema: {
          tags: ['operations'],
          summary: 'Prometheus metrics',
          description:
            'Prometheus text format: sse_connections_open{auth}, sse_connects_total{auth}, sse_disconnects_total{reason}, ' +
            'sse_events_published_total, sse_events_delivered_total, sse_bytes_written_total, sse_replayed_events_total, ' +
            'sse_recovery_failures_total, sse_heartbeat_duration_seconds, sse_topics, sse_subscription_changes_total, ' +
            'sse_publishes_refused_total{reason}, sse_bus_gaps_total, sse_bus_paced_publishes_total, ' +
            'sse_idempotent_replays_total, sse_redis_pending_publish_bytes, and the default Node.js process metrics. ' +
            'When METRICS_TOKEN is set, send it as a bearer token.',
          ...(token === null ? {} : { security: [{ metricsToken: [] }] }),
          response: {
            200: {
              description: 'Metrics in the Prometheus text exposition format',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
            ...errorResponses(401),
          },
        },
      },
      async (_request, reply) => {
        const body = await registry.metrics()
        return reply.type(registry.contentType).send(body)
      },
    )
  },
  { name: 'sse-metrics', fastify: '5.x', dependencies: ['sse-manager'] },
)
