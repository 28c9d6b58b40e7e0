import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, type Registry } from 'prom-client'
import { RedisBus, type Refusals } from '../bus/redis-bus.js'

/** A counter fed from a running total kept elsewhere: each scrape adds what changed since the last. */
function totalCounter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labels: readonly L[],
  read: () => Record<L, number>,
): void {
  const reported = new Map<string, number>()
  new Counter({
    name,
    help,
    labelNames: labels.length > 0 ? ['reason'] : [],
    registers: [registry],
    collect() {
      const now = read()
      for (const key of Object.keys(now) as L[]) {
        const delta = now[key] - (reported.get(key) ?? 0)
        reported.set(key, now[key])
        if (labels.length > 0) this.labels(key).inc(delta)
        else this.inc(delta)
      }
    },
  })
}

const REASONS = ['unavailable', 'backlog', 'replicas'] as const

/**
 * What the bus and the idempotency plugin count: refused publishes by reason, gaps (events
 * trimmed before this instance read them), publishes waiting for Redis, idempotent replays.
 */
export function registerBusMetrics(registry: Registry, app: FastifyInstance): void {
  const redis = () => (app.cluster.bus instanceof RedisBus ? app.cluster.bus : null)
  totalCounter(
    registry,
    'sse_publishes_refused_total',
    'Events refused with 503, by reason: unavailable (Redis down), backlog (REDIS_MAX_PENDING_BYTES, or the reader behind past REDIS_LAG_WAIT_MS), replicas (REDIS_WAIT_REPLICAS)',
    REASONS,
    (): Refusals => {
      const refused = redis()?.refused
      return {
        unavailable: refused?.unavailable ?? 0,
        backlog: refused?.backlog ?? 0,
        replicas: refused?.replicas ?? 0,
      }
    },
  )
  totalCounter(
    registry,
    'sse_bus_gaps_total',
    'Times this instance found events trimmed from Redis before it read them (its streams were ended; they reconnect with recovered: false)',
    [],
    () => ({ gaps: redis()?.gaps ?? 0 }),
  )
  totalCounter(
    registry,
    'sse_bus_paced_publishes_total',
    "Publishes that waited for this instance's Redis reader, more than half the stream behind (REDIS_LAG_WAIT_MS)",
    [],
    () => ({ paced: redis()?.paced ?? 0 }),
  )
  totalCounter(
    registry,
    'sse_idempotent_replays_total',
    'Publishes with a known Idempotency-Key answered with the first result, nothing published',
    [],
    () => ({ replays: app.idempotency?.replays ?? 0 }),
  )
  new Gauge({
    name: 'sse_redis_pending_publish_bytes',
    help: 'Bytes of publishes sent to Redis and not answered yet (bounded by REDIS_MAX_PENDING_BYTES)',
    registers: [registry],
    collect() {
      this.set(redis()?.pendingBytes ?? 0)
    },
  })
}
