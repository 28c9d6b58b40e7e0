/**
 * Event ids: `<milliseconds>-<sequence>`, strictly increasing within a process and,
 * because the clock part only moves forward, across restarts of it. The same shape
 * as Redis Stream ids, so one comparison works for every history backend.
 */

/** Compares two well-formed ids; negative when `a` is older than `b`. */
export function compareEventIds(a: string, b: string): number {
  const da = a.indexOf('-')
  const db = b.indexOf('-')
  const msA = Number(a.slice(0, da))
  const msB = Number(b.slice(0, db))
  if (msA !== msB) return msA < msB ? -1 : 1
  const seqA = Number(a.slice(da + 1))
  const seqB = Number(b.slice(db + 1))
  return seqA === seqB ? 0 : seqA < seqB ? -1 : 1
}

export interface EventIdGenerator {
  next(): string
  /** The millisecond part of the id `next()` returned last (0 before the first). */
  readonly lastTime: number
}

export function createEventIdGenerator(now: () => number = Date.now): EventIdGenerator {
  let lastMs = 0
  let seq = 0
  return {
    next() {
      const ms = now()
      if (ms > lastMs) {
        lastMs = ms
        seq = 0
      } else {
        seq++
      }
      return `${lastMs}-${seq}`
    },
    get lastTime() {
      return lastMs
    },
  }
}
