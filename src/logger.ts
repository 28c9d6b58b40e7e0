import { type FastifyReply, type FastifyRequest, LogController } from 'fastify'
import pino, { type Logger } from 'pino'
import type { Config } from './config.js'

/** Removes the `token` query parameter from a URL, for logs. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?')
  if (q === -1) return url
  const parts = url.slice(q + 1).split('&')
  let changed = false
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string
    const eq = part.indexOf('=')
    const rawKey = eq === -1 ? part : part.slice(0, eq)
    let key = rawKey
    try {
      key = decodeURIComponent(rawKey.replace(/\+/g, ' '))
    } catch {
      // an undecodable key is compared as it is
    }
    if (key.trim().toLowerCase() === 'token') {
      parts[i] = `${rawKey}=[REDACTED]`
      changed = true
    }
  }
  return changed ? `${url.slice(0, q)}?${parts.join('&')}` : url
}

interface RawRequest {
  method?: string
  url?: string
  socket?: { remoteAddress?: string }
  ip?: string
}

/** What every logger of the app applies, whoever created the base logger: tokens never reach a log line. */
const serializers = {
  req(req: RawRequest) {
    return {
      method: req.method,
      url: redactUrl(req.url ?? ''),
      remoteAddress: req.ip ?? req.socket?.remoteAddress,
    }
  },
}
const redact = {
  paths: ['req.headers.authorization', 'headers.authorization', 'authorization', '*.token', 'token'],
  censor: '[REDACTED]',
}

export interface LoggerOptions {
  /** A logger to build on (tests pass one writing to memory). */
  base?: Logger
  pretty?: boolean
}

export function createLogger(config: Config, options: LoggerOptions = {}): Logger {
  const base =
    options.base ??
    pino({
      level: config.logLevel,
      ...(options.pretty
        ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l' } } }
        : {}),
    })
  return base.child({}, { serializers, redact })
}

/** The routes a busy backend calls thousands of times a second; metrics count them. */
const PUBLISH_ROUTES = new Set(['/api/sse', '/api/sse/batch'])

function isPublish(request: FastifyRequest): boolean {
  return request.method === 'POST' && PUBLISH_ROUTES.has(request.routeOptions.url ?? '')
}

/**
 * Fastify's two lines per request (`incoming request`, `request completed`) at info, except for
 * publishes: their incoming line is at debug, and so is the completion of a successful one. At
 * thousands per second those lines would cost the service about a quarter of its CPU, and
 * `sse_events_published_total` counts them; a refused publish is still logged once
 * (`request rejected`, then its completion), errors at error.
 */
export class RequestLog extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    if (isPublish(request)) request.log.debug({ req: request }, 'incoming request')
    else request.log.info({ req: request }, 'incoming request')
  }

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    if (error) {
      reply.log.error({ res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored')
      return
    }
    // The URL too: a publish's incoming line may not have been written.
    const fields = { req: request, res: reply, responseTime: reply.elapsedTime }
    if (reply.statusCode < 300 && isPublish(request)) reply.log.debug(fields, 'request completed')
    else reply.log.info(fields, 'request completed')
  }
}
