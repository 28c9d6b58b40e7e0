import type { RedisClientType } from 'redis'
import type { BusLogger } from './redis-client.js'

/**
 * REDIS_WAIT_REPLICAS: how many replicas acknowledged what was sent on the publisher connection.
 * Redis runs a connection's commands in order, so a WAIT sent after a script covers it: publishes
 * share WAITs (one per replica round trip, however many publishes), and a publish waits at most
 * for the WAIT in flight and the one after it.
 */
export class ReplicaWaits {
  readonly wanted: number
  readonly #publisher: RedisClientType
  readonly #timeoutMs: number
  readonly #log: BusLogger
  /** Scripts sent on the publisher connection, and the newest WAIT with how many it covers. */
  #sent = 0
  #wait: { covers: number; acked: Promise<number> } | null = null

  constructor(publisher: RedisClientType, wanted: number, timeoutMs: number, log: BusLogger) {
    this.#publisher = publisher
    this.wanted = wanted
    this.#timeoutMs = timeoutMs
    this.#log = log
  }

  /** Counts a script as it is sent on the publisher connection; returns its number for `acked`. */
  sent(): number {
    return ++this.#sent
  }

  /** How many replicas acknowledged everything up to the `seq`-th script sent. */
  acked(seq: number): Promise<number> {
    const latest = this.#wait
    if (latest !== null && latest.covers >= seq) return latest.acked
    const wait = {
      covers: this.#sent,
      acked: this.#publisher.wait(this.wanted, this.#timeoutMs).catch((err: unknown) => {
        this.#log.warn({ err }, 'WAIT failed in redis')
        return 0
      }),
    }
    this.#wait = wait
    return wait.acked
  }
}
