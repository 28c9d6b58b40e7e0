import type { RedisClientType } from 'redis'

/** What every Redis module of the bus holds: a node-redis client. */
export type RedisClient = RedisClientType

/** The few logger methods the bus uses; a pino logger fits. */
export interface BusLogger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

/** The one reason the outside hears about any Redis failure; the detail goes to the log. */
export const REDIS_UNAVAILABLE = 'redis unavailable'

/** A Redis failure as one line for the log and `status().lastError`. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message || err.name : String(err)
}
