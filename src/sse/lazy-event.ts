import { encodeFrame } from './frame.js'
import type { StoredEvent } from './history.js'
import type { EventTarget } from './target.js'

/** What a lazily encoded event is made from: a bus event, with its data as JSON text when the bus has it. */
export interface LazySource {
  readonly id: string
  readonly event: string
  readonly data: unknown
  readonly json?: string
  readonly target: EventTarget
  readonly publishedAt: number
}

/** The frame of an event from the bus: from its stored JSON text when it has one (its data is then never parsed). */
export function frameOf(source: LazySource): Buffer {
  const { id, event, json } = source
  return encodeFrame(
    json === undefined ? { id, event, data: source.data } : { id, event, data: undefined, json },
  )
}

/**
 * A stored event whose frame is encoded the first time it is read. An instance on a shared bus
 * hears every event of the deployment, many of them only for connections on other instances:
 * those are never encoded (nor their data parsed) here.
 */
export class LazyStoredEvent implements StoredEvent {
  readonly id: string
  readonly event: string
  readonly target: EventTarget
  readonly publishedAt: number
  #source: LazySource | null
  #frame: Buffer | null = null

  constructor(source: LazySource) {
    this.id = source.id
    this.event = source.event
    this.target = source.target
    this.publishedAt = source.publishedAt
    this.#source = source
  }

  get frame(): Buffer {
    const source = this.#source
    if (source !== null) {
      this.#frame = frameOf(source)
      this.#source = null
    }
    return this.#frame as Buffer
  }
}
