import pino, { type Logger } from 'pino'
import type { Config } from './config.js'

/** Removes the `token` query parameter from a URL, for logs. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?')
  if (q === -1 || !url.includes('token', q)) return url
  return url.slice(0, q) + url.slice(q).replace(/([?&]token=)[^&#]*/gi, '$1[REDACTED]')
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
