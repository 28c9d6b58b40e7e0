// HTTP/2 test helpers: a self-signed certificate made here, a TLS app, and an event stream
// over node:http2 read into the same EventLog as test/helper.ts's openStream.
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  type SecureClientSessionOptions,
} from 'node:http2'
import selfsigned from 'selfsigned'
import type { Config } from '../src/config.js'
import type { TlsConfig } from '../src/tls.js'
import { build, type EventLog, eventLog, type Served } from './helper.js'

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

export interface H2Stream extends EventLog {
  req: ClientHttp2Stream
  status: number
  headers: Record<string, string | string[] | number | undefined>
  /** The RST_STREAM code the stream was closed with (0 for a normal end). */
  rstCode: number | undefined
  body: unknown
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
  const log = eventLog()
  const stream: H2Stream = Object.assign(log, {
    req,
    status: 0,
    headers: {} as H2Stream['headers'],
    rstCode: undefined as number | undefined,
    body: undefined as unknown,
    close() {
      if (!req.closed) req.close()
    },
  })
  req.on('close', () => {
    stream.rstCode = req.rstCode
    log.end()
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
  req.on('data', (chunk: string) => log.feed(chunk))
  return stream
}
