// Opening and closing the SSE streams the load processes hold. Scenarios say how many streams they
// need (ensureConnections) and the streams already open are reused: scenarios 1 to 3 share theirs.
import { SECRET, waitForConnections } from './targets.mjs'

/** `n` split as evenly as possible over `parts`. */
export const split = (n, parts) =>
  Array.from({ length: parts }, (_, i) => Math.floor(n / parts) + (i < n % parts ? 1 : 0))

/** What a set of streams is, to tell whether the ones open can be reused. */
const layoutOf = (auth, topics) => (topics === null ? auth : `${auth} ${JSON.stringify(topics)}`)

/**
 * Opens `count` more streams to `target`. `auth` is `anon`, `token` (`?token=` with subject u<i>)
 * or `query` (`?userId=u<i>`, the baseline's stand-in); streams are numbered from `userStart` (the
 * index a targeted measurement names them by). `topics` (`{ shared: [names], per: k }`) subscribes
 * each stream to the shared topics and to k of its own, t.<index>.0 to t.<index>.<k-1>.
 */
export async function openConnections(ctx, target, count, auth, userStart = 0, topics = null) {
  const counts = split(count, ctx.workers.length)
  let next = userStart
  const replies = ctx.workers.map((w, i) => {
    const msg = { cmd: 'open', port: target.port, count: counts[i], auth, secret: SECRET, timeoutMs: 120_000 }
    msg.userStart = next
    if (topics !== null) msg.topics = topics
    next += counts[i]
    return w.send(msg, 'opened')[0]
  })
  const all = await Promise.all(replies)
  // `open` is what each load process holds in all, to any server.
  const result = { open: 0, failed: 0, ms: 0, reasons: {} }
  for (const r of all) {
    result.open += r.open
    result.failed += r.failed
    result.ms = Math.max(result.ms, r.ms)
    for (const [k, v] of Object.entries(r.reasons)) result.reasons[k] = (result.reasons[k] ?? 0) + v
  }
  if (result.failed > 0) ctx.log(`  ${result.failed} connections failed: ${JSON.stringify(result.reasons)}`)
  target.streams = { open: result.open, auth, layout: layoutOf(auth, topics) }
  return result
}

/** Keeps the first `keep` streams and closes the others; with a target, waits until it agrees. */
export async function closeConnections(ctx, target, keep) {
  const counts = split(keep, ctx.workers.length)
  const replies = await Promise.all(
    ctx.workers.map((w, i) => w.send({ cmd: 'close', keep: counts[i] }, 'closed')[0]),
  )
  const open = replies.reduce((n, r) => n + r.open, 0)
  if (target !== null) {
    target.streams = { ...target.streams, open }
    await waitForConnections(target, keep)
  }
  return open
}

/**
 * Makes the load processes hold exactly `count` streams of kind `auth` (and `topics`) to `target`;
 * returns how many are open.
 */
export async function ensureConnections(ctx, target, count, auth, topics = null) {
  const layout = layoutOf(auth, topics)
  if (target.streams.open > 0 && target.streams.layout !== layout) await closeConnections(ctx, target, 0)
  const have = target.streams.open
  if (have > count) await closeConnections(ctx, target, count)
  else if (have < count) await openConnections(ctx, target, count - have, auth, have, topics)
  return target.streams.open
}
