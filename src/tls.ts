import { createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { SecureServerOptions } from 'node:http2'
import { ConfigError } from './errors.js'

/** The service's own certificate and key (PEM contents, read once at startup). */
export interface TlsConfig {
  /** The certificate, optionally followed by its intermediates. */
  readonly cert: string
  readonly key: string
}

function readPem(variable: string, path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable'
    throw new ConfigError(variable, `cannot read the PEM file "${path}" (${code})`)
  }
}

/**
 * `TLS_CERT` and `TLS_KEY`, file paths, both or neither. Both files are read and checked here
 * (a certificate, an unencrypted private key, and the one belongs to the other) so that a
 * wrong file stops startup naming its variable rather than failing at the first handshake.
 */
export function loadTls(certPath: string | undefined, keyPath: string | undefined): TlsConfig | null {
  if (certPath === undefined && keyPath === undefined) return null
  if (certPath === undefined)
    throw new ConfigError('TLS_CERT', 'is required with TLS_KEY (set both or neither)')
  if (keyPath === undefined)
    throw new ConfigError('TLS_KEY', 'is required with TLS_CERT (set both or neither)')
  const cert = readPem('TLS_CERT', certPath.trim())
  const key = readPem('TLS_KEY', keyPath.trim())
  let certificate: X509Certificate
  try {
    certificate = new X509Certificate(cert)
  } catch {
    throw new ConfigError('TLS_CERT', `"${certPath.trim()}" is not a PEM certificate`)
  }
  let privateKey: ReturnType<typeof createPrivateKey>
  try {
    privateKey = createPrivateKey(key)
  } catch {
    throw new ConfigError(
      'TLS_KEY',
      `"${keyPath.trim()}" is not an unencrypted PEM private key (a passphrase is not supported)`,
    )
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new ConfigError('TLS_KEY', 'is not the private key of the certificate in TLS_CERT')
  }
  return Object.freeze({ cert, key })
}

/**
 * The secure server's options: HTTP/2 and HTTP/1.1, chosen by ALPN. Every connection gets
 * no Nagle delay and TCP keep-alive here, once: under HTTP/2 one socket carries many streams,
 * so the stream route does not touch it.
 */
export function secureServerOptions(tls: TlsConfig): SecureServerOptions {
  return {
    cert: tls.cert,
    key: tls.key,
    allowHTTP1: true,
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: 30_000,
  }
}

/**
 * Fastify's options for the secure server, none without TLS. Typed as a plain object on
 * purpose: Fastify's overloads pick the instance's server type from `http2`, and
 * `buildApp` returns one FastifyInstance type whichever protocol it serves.
 */
export function fastifyTlsOptions(tls: TlsConfig | null): object {
  return tls === null ? {} : { http2: true, https: secureServerOptions(tls) }
}
