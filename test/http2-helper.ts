// HTTP/2 test helpers: a self-signed certificate made here, a TLS app, and an event stream
// over node:http2 parsed by the same spec-compliant parser as test/helper.ts's openStream.
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  type SecureClientSessionOptions,
} from 'node:http2'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import selfsigned from 'selfsigned'
import type { Config } from '../src/config.js'
import type { TlsConfig } from '../src/tls.js'
import { build, type ParsedEvent, type Served } from './helper.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

let certificate: Promise<TlsConfig> | undefined

/** A self-signed certificate for localhost and 127.0.0.1 (made once per test process). */
export function testCertificate(): Promise<TlsConfig> {
  certificate ??= selfsigned
    .generate([{ name: 'commonName', value: 'localhost' }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notAfterDate: new Date(Date.now() + 2 * 86_400_000),
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
        { name: 'extKeyUsage', serverAuth: true },
        {
          name: 'subjectAltName',
          altNames: [
            { type: 2, value: 'localhost' },
            { type: 7, ip: '127.0.0.1' },
          ],
        },
      ],
    })
    .then((pems) => Object.freeze({ cert: pems.cert, key: pems.private }))
  return certificate
}

export interface ServedTls extends Served {
  /** The certificate's PEM: pass it as `ca` to trust the server. */
  cert: string
}

/** A listening app with TLS_CERT/TLS_KEY: HTTPS, HTTP/2 and HTTP/1.1 by ALPN. */
export async function serveTls(t: Teardown, overrides: Partial<Config> = {}): Promise<ServedTls> {
  const tls = await testCertificate()
  const app = await build(t, { ...overrides, tls })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  return { app, url: `https://127.0.0.1:${address.port}`, cert: tls.cert }
}

/** An HTTP/2 session that trusts the test certificate; destroyed in teardown. */
export async function h2Session(
  t: Teardown,
  url: string,
  cert: string,
  options: SecureClientSessionOptions = {},
): Promise<ClientHttp2Session> {
  const session = connect(url, { ca: cert, ...options })
  t.teardown(() => {
    if (!session.destroyed) session.destroy()
  })
  session.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve())
    session.once('error', reject)
  })
  return session
}

export interface H2Stream {
  req: ClientHttp2Stream
  status: number
  headers: Record<string, string | string[] | number | undefined>
  events: ParsedEvent[]
  text: string
  ended: boolean
  /** The RST_STREAM code the stream was closed with (0 for a normal end). */
  rstCode: number | undefined
  body: unknown
  named(event: string): ParsedEvent[]
  waitFor(predicate: (e: ParsedEvent) => boolean, timeoutMs?: number): Promise<ParsedEvent>
  waitForCount(event: string, count: number, timeoutMs?: number): Promise<ParsedEvent[]>
  waitForEnd(timeoutMs?: number): Promise<void>
  close(): void
}

export interface H2OpenOptions {
  path?: string
  headers?: Record<string, string>
}

/** Opens GET /api/sse (or `path`) on an HTTP/2 session and parses what arrives. */
export async function openH2Stream(
  session: ClientHttp2Session,
  options: H2OpenOptions = {},
): Promise<H2Stream> {
  const req = session.request({
    ':method': 'GET',
    ':path': options.path ?? '/api/sse',
    accept: 'text/event-stream',
    ...options.headers,
  })
  req.on('error', () => {})
  const listeners = new Set<() => void>()
  const notify = () => {
    for (const l of listeners) l()
  }
  const stream: H2Stream = {
    req,
    status: 0,
    headers: {},
    events: [],
    text: '',
    ended: false,
    rstCode: undefined,
    body: undefined,
    named: (event) => stream.events.filter((e) => e.event === event),
    waitFor(predicate, timeoutMs = 5000) {
      return waitUntil(() => stream.events.find(predicate), timeoutMs, 'event')
    },
    waitForCount(event, count, timeoutMs = 5000) {
      return waitUntil(
        () => {
          const found = stream.named(event)
          return found.length >= count ? found : undefined
        },
        timeoutMs,
        `${count} ${event} events`,
      )
    },
    waitForEnd(timeoutMs = 5000) {
      return waitUntil(() => (stream.ended ? true : undefined), timeoutMs, 'end').then(() => undefined)
    },
    close() {
      if (!req.closed) req.close()
    },
  }
  function waitUntil<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const now = check()
      if (now !== undefined) return resolve(now)
      const timer = setTimeout(() => {
        listeners.delete(listener)
        reject(
          new Error(
            `timed out waiting for ${what}; got ${JSON.stringify(stream.events.map((e) => e.event))}`,
          ),
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
  const parser = createParser({
    onEvent(message: EventSourceMessage) {
      let json: unknown
      try {
        json = JSON.parse(message.data)
      } catch {
        json = undefined
      }
      stream.events.push({ event: message.event ?? 'message', id: message.id, data: message.data, json })
      notify()
    },
  })
  req.on('close', () => {
    stream.rstCode = req.rstCode
    stream.ended = true
    notify()
  })
  await new Promise<void>((resolve, reject) => {
    req.once('response', (headers) => {
      stream.status = Number(headers[':status'])
      stream.headers = headers
      resolve()
    })
    req.once('close', () => reject(new Error(`stream closed before a response (code ${req.rstCode})`)))
  })
  if (stream.status !== 200) {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const text = Buffer.concat(chunks).toString('utf8')
    try {
      stream.body = JSON.parse(text)
    } catch {
      stream.body = text
    }
    return stream
  }
  req.setEncoding('utf8')
  req.on('data', (chunk: string) => {
    stream.text += chunk
    parser.feed(chunk)
  })
  return stream
}
