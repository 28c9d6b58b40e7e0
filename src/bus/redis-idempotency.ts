import type { BusMessage } from './bus.js'
import type { IdempotencyStore, PublishOutcome } from './idempotency.js'
import type { RedisBus } from './redis-bus.js'
import type { RedisClient } from './redis-client.js'
import { READ_RECORD, runScript, SET_RECORD } from './redis-scripts.js'

export interface RedisIdempotencyOptions {
  bus: RedisBus
  /** A command connection (never the blocked reader). */
  commands: RedisClient
  prefix: string
}

/**
 * Idempotency records shared by every instance: a hash `<prefix>idem:<key>` with the body's
 * fingerprint (`h`), the ids (`i`) and the time (`a`) written by the bus's append script together
 * with the events, then the answer (`r`), all expiring IDEMPOTENCY_TTL_MS after the publish.
 */
export class RedisIdempotency implements IdempotencyStore {
  readonly #bus: RedisBus
  readonly #commands: RedisClient
  readonly #prefix: string

  constructor(options: RedisIdempotencyOptions) {
    this.#bus = options.bus
    this.#commands = options.commands
    this.#prefix = `${options.prefix}idem:`
  }

  publish(
    key: string,
    fingerprint: string,
    messages: readonly BusMessage[],
    ttlMs: number,
  ): Promise<PublishOutcome> {
    return this.#bus.publishOnce(messages, { key: this.#prefix + key, fingerprint, ttlMs })
  }

  async read(key: string, fingerprint: string): Promise<PublishOutcome | null> {
    const reply = (await runScript(this.#commands, READ_RECORD, [this.#prefix + key], [])) as string[]
    if (reply.length === 0) return null
    const [seen, ids = '', answer = '', failed = '', age = '0'] = reply
    if (seen !== fingerprint) return { kind: 'mismatch' }
    return {
      kind: 'seen',
      record: {
        ids: ids === '' ? [] : ids.split(','),
        answer: answer === '' ? null : answer,
        failed: failed !== '',
        ageMs: Number(age),
      },
    }
  }

  async complete(key: string, answer: string): Promise<void> {
    await runScript(this.#commands, SET_RECORD, [this.#prefix + key], ['r', answer])
  }

  confirm(key: string): Promise<void> {
    return this.#bus.confirm(this.#prefix + key)
  }
}
