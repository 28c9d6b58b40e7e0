// Publishing the benchmark's events: POST /api/sse (or /api/sse/batch) through each server's keep-alive
// pool. Every event carries its sequence number and its publish time on the monotonic clock, which the
// load processes read back (`data: {"s":<seq>,"t":<µs>`) for losses, duplicates and latency.
import { nowUs, sleep } from './measure.mjs'
import { publisherToken } from './targets.mjs'

const PAD = 'x'.repeat(68) // data is about 100 bytes of JSON
const HEADERS = { authorization: `Bearer ${publisherToken}`, 'content-type': 'application/json' }

/**
 * One event as JSON. `to` says whom it is for: null (a broadcast), a number (user u<to>) or
 * `{ topic }` (every stream subscribed to that topic).
 */
export function eventJson(s, to) {
  const data = `{"s":${s},"t":${nowUs()},"p":"${PAD}"}`
  if (to === null) return `{"event":"bench","data":${data},"broadcast":true}`
  if (typeof to === 'number') return `{"event":"bench","data":${data},"userIds":["u${to}"]}`
  return `{"event":"bench","data":${data},"topics":["${to.topic}"]}`
}

/** The body of one publish: a broadcast when `userIndex` is null, else a send to user u<userIndex>. */
export const eventBody = (s, userIndex) => eventJson(s, userIndex)

function failed(target, events, reason) {
  target.publishFailures += events
  target.lastFailure = reason
  return null
}

/** One publish through the target's undici pool; the answer's JSON, or null (counted in `target.publishFailures`). */
export async function post(target, body) {
  try {
    const res = await target.pool.request({ path: '/api/sse', method: 'POST', headers: HEADERS, body })
    return answerOf(target, res.statusCode, await res.body.text(), 1, false)
  } catch (err) {
    return failed(target, 1, err.message)
  }
}

/**
 * What an answer to `events` events says: the JSON, or null. POST /api/sse answers 202; the batch
 * route 202, or 207 with the refused events' errors, each counted as a failure.
 */
function answerOf(target, status, text, events, batch) {
  if (!batch) return status === 202 ? JSON.parse(text) : failed(target, 1, `${status} ${text.slice(0, 200)}`)
  if (status !== 202 && status !== 207) return failed(target, events, `${status} ${text.slice(0, 200)}`)
  const answer = JSON.parse(text)
  const refused = answer.results.filter((r) => r.error !== undefined)
  if (refused.length > 0 || answer.results.length !== events)
    failed(target, events - answer.results.length + refused.length, JSON.stringify(refused[0] ?? answer))
  return answer
}

/** One POST with the publisher's token (it also has sse:admin) on the target's raw sockets. */
export function rawPost(target, path, body) {
  const bytes = Buffer.from(body)
  const head =
    `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${target.port}\r\n` +
    `Authorization: ${HEADERS.authorization}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${bytes.length}\r\n\r\n`
  return target.raw.request(head, bytes)
}

/** One POST of `events` events (one: /api/sse, more: /api/sse/batch) on the target's raw sockets. */
async function postRaw(target, body, events) {
  const batch = events > 1
  try {
    const { status, body: text } = await rawPost(target, batch ? '/api/sse/batch' : '/api/sse', body)
    return answerOf(target, status, text, events, batch)
  } catch (err) {
    return failed(target, events, err.message)
  }
}

/** Calls `fn(i)` for i from 0 to count - 1 with `concurrency` calls outstanding (a closed loop). */
export async function closedLoop(count, concurrency, fn) {
  let next = 0
  const lane = async () => {
    while (next < count) await fn(next++)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane))
}

/**
 * Publishes `count` events numbered from `first` at `rate` per second (0: all at once), alternating
 * between `targets`; `toOf(i)` is whom the i-th is for (see eventJson). Returns the answers'
 * promises once every publish is sent.
 */
export async function publish(targets, count, rate, first, toOf) {
  const posts = []
  const start = performance.now()
  for (let i = 0; i < count; i++) {
    if (rate > 0) {
      const wait = start + (i * 1000) / rate - performance.now()
      if (wait >= 1) await sleep(wait)
    }
    posts.push(post(targets[i % targets.length], eventBody(first + i, toOf(i))))
  }
  return posts
}

/**
 * Publishes `count` events numbered from `first` as fast as the servers answer, with exactly
 * `inFlight` requests outstanding (a closed loop: each answer sends the next request), `batch`
 * events per request (1: POST /api/sse, more: POST /api/sse/batch), on each target's raw sockets
 * (see raw-http.mjs). Requests alternate between `targets`. Each body is built just before it is
 * sent, so that `t` is its publish time. Resolves when every request is answered, with the time of
 * the last answer (µs).
 */
export async function publishInFlight(targets, count, { first, toOf, inFlight, batch }) {
  const requests = Math.ceil(count / batch)
  await closedLoop(requests, inFlight, async (r) => {
    const target = targets[r % targets.length]
    const from = r * batch
    if (batch === 1) return postRaw(target, eventJson(first + from, toOf(from)), 1)
    const n = Math.min(batch, count - from)
    const events = new Array(n)
    for (let j = 0; j < n; j++) events[j] = eventJson(first + from + j, toOf(from + j))
    return postRaw(target, `{"events":[${events.join(',')}]}`, n)
  })
  return { requests, lastAnswerUs: nowUs() }
}

/** Reserves `count` sequence numbers; returns the first. */
export function reserve(ctx, count) {
  const first = ctx.seq + 1
  ctx.seq += count
  return first
}
