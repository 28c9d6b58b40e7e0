import { createClient, type RedisClientOptions } from 'redis'
import type { RedisClient } from './redis-client.js'

/** Reconnect delay: 100 ms doubling to 2 s, with jitter so that instances do not retry in step. */
export function reconnectDelay(retries: number): number {
  return Math.min(100 * 2 ** Math.min(retries, 5), 2000) + Math.floor(Math.random() * 100)
}

/** The connections an instance holds to one Redis node. */
export interface Trio {
  readonly commands: RedisClient
  readonly reader: RedisClient
  readonly subscriber: RedisClient
  /** Only with `publisher: true`: publishes and their WAIT, which holds the connection it is sent on. */
  readonly publisher?: RedisClient
}

/**
 * New, unconnected clients to the node `options` names. `name` tags them in CLIENT LIST as
 * `<name>:commands`, `<name>:reader`, ...; `publisher` adds the fourth connection.
 */
export function createTrio(
  options: RedisClientOptions,
  { name, publisher }: { name: string | undefined; publisher: boolean },
): Trio {
  const named = (role: string) => (name ? { name: `${name}:${role}` } : {})
  const commands = createClient({ ...options, ...named('commands') }) as RedisClient
  return {
    commands,
    reader: commands.duplicate(named('reader')),
    // The subscriber keeps its offline queue: SUBSCRIBE made while Redis is down is sent
    // when it comes up, and node-redis subscribes again after every reconnect.
    subscriber: commands.duplicate({ disableOfflineQueue: false, ...named('subscriber') }),
    ...(publisher ? { publisher: commands.duplicate(named('publisher')) } : {}),
  }
}

export function clientsOf(trio: Trio): RedisClient[] {
  return [trio.commands, trio.reader, trio.subscriber, ...(trio.publisher ? [trio.publisher] : [])]
}

/** close() waits for pending replies; a client that is not up (or is being replaced) has none worth waiting for. */
export async function closeTrio(trio: Trio, now = false): Promise<void> {
  await Promise.all(
    clientsOf(trio).map(async (client) => {
      try {
        if (client.isReady && !now) await client.close()
        else if (client.isOpen) client.destroy()
      } catch {
        // already closed
      }
    }),
  )
}
