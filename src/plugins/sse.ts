import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import type { SseClient } from '../sse/client.js'
import { MemoryHistory } from '../sse/history.js'
import { SseManager, type SseManagerHooks } from '../sse/manager.js'

declare module 'fastify' {
  interface FastifyInstance {
    sse: SseManager
  }
}

export interface SsePluginOptions {
  config: Config
  /** Extra observers (metrics); connect and disconnect are logged here already. */
  hooks?: SseManagerHooks
}

/**
 * Creates the connection manager, decorates `fastify.sse` with it, and ends every
 * stream in `preClose` so that `close()` does not wait on open responses.
 */
export const ssePlugin = fp<SsePluginOptions>(
  async (app, { config, hooks }) => {
    const log = app.log.child({ component: 'sse' })
    // With the bus plugin registered first, events come through it (and, on Redis, so does the history).
    const cluster = app.hasDecorator('cluster') ? app.cluster : undefined
    const manager = new SseManager({
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      cleanupIntervalMs: config.cleanupIntervalMs,
      retryMs: config.clientRetryMs,
      maxBufferedBytes: config.maxBufferedBytes,
      maxFlushDelayMs: config.flushMaxDelayMs,
      maxConnectionLifetimeMs: config.maxConnectionLifetimeMs,
      replayMaxBytes: config.replayMaxBytes,
      history:
        cluster?.history ??
        new MemoryHistory({
          maxEvents: config.historySize,
          maxBytes: config.historyMaxBytes,
          ttlMs: config.historyTtlMs,
        }),
      ...(cluster ? { instanceId: cluster.instanceId } : {}),
      hooks: {
        ...hooks,
        onSubscriptions(client, change) {
          log.info(
            { clientId: client.id, added: change.added, removed: change.removed },
            'subscriptions changed',
          )
          cluster?.topicsChanged(client, change.added, change.removed)
          hooks?.onSubscriptions?.(client, change)
        },
        onConnect(client, replay) {
          log.info(
            {
              clientId: client.id,
              userId: client.userId,
              anonymous: client.anonymous,
              lastEventId: replay.lastEventId,
              recovered: replay.recovered,
              replayed: replay.replayed,
            },
            'stream connected',
          )
          cluster?.topicsChanged(client, client.topics, [])
          hooks?.onConnect?.(client, replay)
        },
        onDisconnect(client: SseClient, reason) {
          const fields = {
            clientId: client.id,
            userId: client.userId,
            reason,
            durationMs: Date.now() - client.connectedAt,
            eventsSent: client.eventsSent,
            bytesSent: client.bytesSent,
          }
          if (reason === 'slow') log.warn(fields, 'stream disconnected: client too slow')
          else log.info(fields, 'stream disconnected')
          cluster?.released(client)
          // A stream that ended before its connected event never joined.
          if (client.started) cluster?.topicsChanged(client, [], client.topics)
          hooks?.onDisconnect?.(client, reason)
        },
      },
    })
    app.decorate('sse', manager)
    await cluster?.attach(manager)

    app.addHook('preClose', async () => {
      const ended = manager.shutdown()
      if (ended > 0) log.info({ clients: ended }, 'ended every stream for shutdown')
    })
    app.addHook('onClose', async () => {
      manager.close()
    })
  },
  { name: 'sse-manager', fastify: '5.x' },
)
