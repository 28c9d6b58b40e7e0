import {
  type EventHistory,
  MemoryHistory,
  type ReplayWindow,
  type StoredEvent,
} from '../../src/sse/history.js'

/** A history that answers only when the test says so (`release`), like a shared store does. */
export class SlowHistory implements EventHistory {
  readonly inner = new MemoryHistory({ maxEvents: 1000, ttlMs: 0 })
  release: (() => void) | undefined
  /** Set to make the next since() fail when released, as a store that went away does. */
  fail = false
  append(event: StoredEvent) {
    this.inner.append(event)
  }
  latestId() {
    return this.inner.latestId()
  }
  get size() {
    return this.inner.size
  }
  since(id: string): Promise<ReplayWindow> {
    const window = this.inner.since(id)
    const fail = this.fail
    return new Promise((resolve, reject) => {
      this.release = () => (fail ? reject(new Error('the store went away')) : resolve(window))
    })
  }
}
