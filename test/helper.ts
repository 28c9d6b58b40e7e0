import { Writable } from 'node:stream'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { createSigner } from 'fast-jwt'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import { request } from 'undici'
import { buildApp } from '../src/app.js'
import { type Config, loadConfig } from '../src/config.js'

export const SECRET = 'test-secret-0123456789-abcdefghijklmnop'

export interface Teardown {
  teardown(fn: () => unknown): void
}

export function testConfig(overrides: Partial<Config> = {}, env: Record<string, string> = {}): Config {
  // The dev login is asked for explicitly, as a developer with a configured secret would.
  const base = loadConfig({
    NODE_ENV: 'test',
    JWT_SECRET: SECRET,
    LOG_LEVEL: 'silent',
    DEV_LOGIN: 'true',
    ...env,
  })
  return Object.freeze({ ...base, ...overrides })
}

/** Captures every log line the app writes, for assertions on logs. */
export function memoryLogger(level = 'info'): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk))
      cb()
    },
  })
  return { logger: pino({ level }, stream), lines }
}

export interface TokenOptions {
  scopes?: string[]
  expiresInMs?: number
  secret?: string
  algorithm?: 'HS256' | 'HS384' | 'HS512'
  claims?: Record<string, unknown>
  noExp?: boolean
}

export function mint(sub: string | undefined, options: TokenOptions = {}): string {
  const sign = createSigner({
    key: options.secret ?? SECRET,
    algorithm: options.algorithm ?? 'HS256',
    ...(options.noExp ? {} : { expiresIn: options.expiresInMs ?? 3_600_000 }),
  })
  const payload: Record<string, unknown> = { ...options.claims }
  if (sub !== undefined) payload.sub = sub
  if (options.scopes !== undefined) payload.scope = options.scopes.join(' ')
  return sign(payload)
}

export const PUBLISHER = () => mint('publisher-service', { scopes: ['sse:publish'] })
export const ADMIN = () => mint('operator', { scopes: ['sse:admin'] })

export async function build(t: Teardown, overrides: Partial<Config> = {}, logger?: pino.Logger) {
  const app = await buildApp(testConfig(overrides), logger ? { loggerInstance: logger } : {})
  t.teardown(() => app.close())
  await app.ready()
  return app
}

export interface Served {
  app: FastifyInstance
  url: string
}

/** A real listening server on an ephemeral port. */
export async function serve(
  t: Teardown,
  overrides: Partial<Config> = {},
  logger?: pino.Logger,
): Promise<Served> {
  const app = await build(t, overrides, logger)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  return { app, url: `http://127.0.0.1:${address.port}` }
}

export interface ParsedEvent {
  event: string
  id: string | undefined
  data: string
  json: unknown
}

/** The events of one stream as they arrive, and ways to wait for them (HTTP/1.1 and HTTP/2 alike). */
export interface EventLog {
  events: ParsedEvent[]
  /** Raw text received so far. */
  text: string
  ended: boolean
  /** Resolves with the first event (from the start) that satisfies `predicate`. */
  waitFor(predicate: (e: ParsedEvent) => boolean, timeoutMs?: number): Promise<ParsedEvent>
  /** Resolves once `count` events named `event` arrived. */
  waitForCount(event: string, count: number, timeoutMs?: number): Promise<ParsedEvent[]>
  waitForEnd(timeoutMs?: number): Promise<void>
  named(event: string): ParsedEvent[]
}

/** An EventLog fed with the stream's text (`feed`) and told when it ends (`end`). */
export function eventLog(): EventLog & { feed(text: string): void; end(): void } {
  const listeners = new Set<() => void>()
  const notify = () => {
    for (const l of listeners) l()
  }
  const parser = createParser({
    onEvent(message: EventSourceMessage) {
      let json: unknown
      try {
        json = JSON.parse(message.data)
      } catch {
        json = undefined
      }
      log.events.push({ event: message.event ?? 'message', id: message.id, data: message.data, json })
      notify()
    },
  })
  function waitUntil<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const now = check()
      if (now !== undefined) return resolve(now)
      const timer = setTimeout(() => {
        listeners.delete(listener)
        reject(
          new Error(`timed out waiting for ${what}; got ${JSON.stringify(log.events.map((e) => e.event))}`),
        )
      }, timeoutMs)
      const listener = () => {
        const value = check()
        if (value !== undefined) {
          clearTimeout(timer)
          listeners.delete(listener)
          resolve(value)
        }
      }
      listeners.add(listener)
    })
  }
  const log = {
    events: [] as ParsedEvent[],
    text: '',
    ended: false,
    named: (event: string) => log.events.filter((e) => e.event === event),
    waitFor(predicate: (e: ParsedEvent) => boolean, timeoutMs = 5000) {
      return waitUntil(() => log.events.find(predicate), timeoutMs, 'event')
    },
    waitForCount(event: string, count: number, timeoutMs = 5000) {
      return waitUntil(
        () => {
          const found = log.named(event)
          return found.length >= count ? found : undefined
        },
        timeoutMs,
        `${count} ${event} events`,
      )
    },
    waitForEnd(timeoutMs = 5000) {
      return waitUntil(() => (log.ended ? true : undefined), timeoutMs, 'end').then(() => undefined)
    },
    feed(text: string) {
      log.text += text
      parser.feed(text)
    },
    end() {
      log.ended = true
      notify()
    },
  }
  return log
}

export interface Stream extends EventLog {
  status: number
  headers: Record<string, string | string[] | undefined>
  /** JSON body when the answer was not a stream. */
  body: unknown
  close(): void
}

export interface OpenOptions {
  token?: string
  query?: Record<string, string>
  headers?: Record<string, string>
}

/** Opens a stream with undici and parses it with a spec-compliant parser. */
export async function openStream(url: string, options: OpenOptions = {}): Promise<Stream> {
  const controller = new AbortController()
  const qs = new URLSearchParams(options.query ?? {}).toString()
  const headers: Record<string, string> = { accept: 'text/event-stream', ...options.headers }
  if (options.token) headers.authorization = `Bearer ${options.token}`
  const res = await request(`${url}/api/sse${qs ? `?${qs}` : ''}`, { headers, signal: controller.signal })
  const log = eventLog()
  const stream: Stream = Object.assign(log, {
    status: res.statusCode,
    headers: res.headers,
    body: undefined as unknown,
    close() {
      controller.abort()
    },
  })
  if (res.statusCode !== 200) {
    stream.body = await res.body.json().catch(() => undefined)
    stream.ended = true
    return stream
  }
  ;(async () => {
    try {
      for await (const chunk of res.body) {
        log.feed(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'))
      }
    } catch {
      // aborted or reset: the stream is over either way
    }
    log.end()
  })()
  return stream
}

export async function post(url: string, path: string, body: unknown, token?: string) {
  const res = await request(`${url}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.body.text()
  return { status: res.statusCode, body: text ? JSON.parse(text) : undefined, headers: res.headers }
}

export async function get(url: string, path: string, token?: string) {
  const res = await request(`${url}${path}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  })
  const text = await res.body.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {}
  return { status: res.statusCode, body, headers: res.headers }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it holds; for state that changes asynchronously (stats after a disconnect). */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 3000, stepMs = 20) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await sleep(stepMs)
  }
  return false
}

// --- Added for the issue 2 test suite (append-only) ---

type Asserts = Pick<import('tap').Test, 'equal' | 'same' | 'match'>

/** Asserts an error answer: the status, the code, and Fastify's exact shape `{statusCode, error, message, code}`. */
export function expectError(
  t: Asserts,
  res: { status: number; body: unknown; headers?: Record<string, unknown> },
  status: number,
  code: string,
  message?: RegExp,
): void {
  t.equal(res.status, status, `status ${status}`)
  const body = (res.body ?? {}) as Record<string, unknown>
  t.same(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'], 'error shape')
  t.equal(body.statusCode, status, 'statusCode in the body')
  t.equal(body.code, code, `code ${code}`)
  t.match(body.error, /^[A-Z][A-Za-z ]+$/, 'error is the status text')
  t.match(body.message, /\S/, 'a message')
  if (message) t.match(body.message, message)
  if (res.headers) t.match(res.headers['content-type'], /^application\/json/, 'a JSON answer')
}

/** Sends any bytes with any headers (for 413/415/invalid JSON). */
export async function postRaw(
  url: string,
  path: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
) {
  const res = await request(`${url}${path}`, { method: 'POST', headers, body })
  const text = await res.body.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {}
  return { status: res.statusCode, body: parsed, headers: res.headers }
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

/** An unsigned `alg: none` token (header.payload. with an empty signature). */
export function noneToken(sub: string, claims: Record<string, unknown> = {}): string {
  const payload = { sub, exp: Math.floor(Date.now() / 1000) + 3600, ...claims }
  return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(payload)}.`
}

/** Tokens that must all be refused with 401, by what is wrong with them. */
export function badTokens(sub = 'mallory'): Record<string, string> {
  return {
    expired: mint(sub, { expiresInMs: -60_000 }),
    'wrong algorithm (HS512)': mint(sub, { algorithm: 'HS512' }),
    'alg none': noneToken(sub),
    'bad signature': mint(sub, { secret: 'another-secret-0123456789-abcdefghijklmnop' }),
    'no exp': mint(sub, { noExp: true }),
    'no sub': mint(undefined),
    garbage: 'a.b.c',
  }
}
