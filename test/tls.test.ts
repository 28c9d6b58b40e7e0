// TLS_CERT and TLS_KEY: checked at startup (each failure names its variable), and the server
// process serves HTTPS with HTTP/2, says so with the URL it prints, and shuts down cleanly.
import { type ChildProcess, spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { loadConfig } from '../src/config.js'
import { ConfigError } from '../src/errors.js'
import { eventually, SECRET } from './helper.js'
import { h2Session, openH2Stream, testCertificate } from './http2-helper.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { cert, key } = await testCertificate()
const dir = mkdtempSync(join(tmpdir(), 'sse-tls-test-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const file = (name: string, content: string) => {
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}
const CERT = file('cert.pem', cert)
const KEY = file('key.pem', key)

const base = { NODE_ENV: 'test', JWT_SECRET: SECRET }

function refusal(t: Tap, env: Record<string, string>, variable: string, message: RegExp) {
  try {
    loadConfig({ ...base, ...env })
    t.fail(`${variable} should have been refused`)
  } catch (err) {
    t.ok(err instanceof ConfigError, 'a ConfigError')
    t.equal((err as ConfigError).variable, variable, `names ${variable}`)
    t.match((err as Error).message, message)
  }
}
type Tap = Test

t.test('without TLS_CERT and TLS_KEY: plain HTTP/1.1', async (t) => {
  t.equal(loadConfig(base).tls, null)
  t.equal(loadConfig({ ...base, TLS_CERT: ' ', TLS_KEY: '' }).tls, null, 'blank is unset')
})

t.test('both set: the PEM contents are in the config', async (t) => {
  const config = loadConfig({ ...base, TLS_CERT: CERT, TLS_KEY: KEY })
  t.same(config.tls, { cert, key })
  t.ok(Object.isFrozen(config.tls))
})

t.test('each failure names its variable', async (t) => {
  refusal(t, { TLS_CERT: CERT }, 'TLS_KEY', /both or neither/)
  refusal(t, { TLS_KEY: KEY }, 'TLS_CERT', /both or neither/)
  refusal(
    t,
    { TLS_CERT: join(dir, 'missing.pem'), TLS_KEY: KEY },
    'TLS_CERT',
    /cannot read .*missing\.pem.*ENOENT/,
  )
  refusal(t, { TLS_CERT: CERT, TLS_KEY: dir }, 'TLS_KEY', /cannot read/)
  refusal(t, { TLS_CERT: KEY, TLS_KEY: KEY }, 'TLS_CERT', /not a PEM certificate/)
  refusal(t, { TLS_CERT: CERT, TLS_KEY: CERT }, 'TLS_KEY', /not an unencrypted PEM private key/)
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const otherKey = file('other.pem', other.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
  refusal(t, { TLS_CERT: CERT, TLS_KEY: otherKey }, 'TLS_KEY', /not the private key of the certificate/)
  const encrypted = file(
    'encrypted.pem',
    other.privateKey.export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'secret',
    }) as string,
  )
  refusal(t, { TLS_CERT: CERT, TLS_KEY: encrypted }, 'TLS_KEY', /passphrase/)
})

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address() as net.AddressInfo
  server.close()
  await once(server, 'close')
  return address.port
}

t.test('the server process serves HTTPS with HTTP/2 and prints its https URL', async (t) => {
  const port = await freePort()
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      NODE_ENV: 'development',
      PORT: String(port),
      HOST: '127.0.0.1',
      TLS_CERT: CERT,
      TLS_KEY: KEY,
      SHUTDOWN_TIMEOUT_MS: '3000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let out = ''
  let err = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString('utf8')
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8')
  })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  const lines = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
  const up = await eventually(() => lines().some((l) => typeof l.devToken === 'string'), 20_000, 50)
  t.ok(up, `the server started${up ? '' : `: ${err}${out}`}`)
  const url = `https://localhost:${port}`
  const serving = lines().find((l) => l.url !== undefined)
  t.match(serving, { url, protocols: ['h2', 'http/1.1'], msg: `serving ${url}` }, 'prints the https URL')
  t.ok(
    lines().some((l) => l.msg === `Server listening at https://127.0.0.1:${port}`),
    "Fastify's own line says https too",
  )
  const hint = lines().find((l) => typeof l.devToken === 'string')
  t.match(
    String(hint?.try),
    `curl --cacert '${CERT}' -N ${url}/api/sse`,
    'a curl example that trusts the certificate',
  )

  const session = await h2Session(t, `https://127.0.0.1:${port}`, cert)
  const s = await openH2Stream(session)
  await s.waitFor((e) => e.event === 'connected')
  child.kill('SIGTERM')
  const last = await s.waitFor((e) => e.event === 'disconnected', 5000)
  t.match(last.json, { reason: 'server_shutdown' })
  const [code] = await exited
  t.equal(code, 0, 'a clean exit')
  t.equal(err, '', 'nothing on stderr')
})
