import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { ADMIN, eventually, get, mint, openStream, PUBLISHER, post, SECRET } from './helper.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SHUTDOWN_TIMEOUT_MS = 5000

/** A port nobody listens on right now. */
async function freePort(): Promise<number> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  server.close()
  await once(server, 'close')
  return address.port
}

interface Server {
  child: ChildProcess
  url: string
  stdout: () => string
  stderr: () => string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Runs `node --import tsx src/server.ts` with only the given environment (plus PATH and HOME). */
function start(t: Tap, env: Record<string, string>, port = 0): Server {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString('utf8')
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8')
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  // Whatever happens in the test, the child never outlives it.
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return { child, url: `http://127.0.0.1:${port}`, stdout: () => out, stderr: () => err, exited }
}
type Tap = Test

async function waitUntilListening(server: Server): Promise<void> {
  const up = await eventually(
    async () => {
      if (server.child.exitCode !== null)
        throw new Error(`server exited early: ${server.stderr()}${server.stdout()}`)
      try {
        return (await get(server.url, '/health')).status === 200
      } catch {
        return false
      }
    },
    20_000,
    50,
  )
  if (!up) throw new Error(`server did not start: ${server.stderr()}${server.stdout()}`)
}

function logLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

/** Fails the test instead of hanging when the child does not exit in time. */
async function exitWithin(t: Tap, server: Server, ms: number) {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms)
  })
  const result = await Promise.race([server.exited, timeout])
  clearTimeout(timer)
  if (result === null) {
    t.fail(`the server did not exit within ${ms} ms`)
    server.child.kill('SIGKILL')
    return server.exited
  }
  return result
}

t.test('SIGTERM: every stream gets disconnected server_shutdown and the process exits 0', async (t) => {
  const port = await freePort()
  const server = start(
    t,
    {
      NODE_ENV: 'test',
      PORT: String(port),
      HOST: '127.0.0.1',
      JWT_SECRET: SECRET,
      LOG_LEVEL: 'info',
      CLIENT_RETRY_MS: '1000',
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    },
    port,
  )
  await waitUntilListening(server)
  const queryToken = mint('alice')
  const headerToken = mint('bob')
  const streams = [
    await openStream(server.url),
    await openStream(server.url, { query: { token: queryToken } }),
    await openStream(server.url, { token: headerToken }),
  ]
  await Promise.all(streams.map((s) => s.waitFor((e) => e.event === 'connected')))
  const published = await post(
    server.url,
    '/api/sse',
    { event: 'before', data: 1, broadcast: true },
    PUBLISHER(),
  )
  t.equal(published.body.delivered, 3)
  await Promise.all(streams.map((s) => s.waitFor((e) => e.event === 'before')))
  t.equal(
    ((await get(server.url, '/api/sse/stats', ADMIN())).body as { totalConnections: number })
      .totalConnections,
    3,
  )

  const started = Date.now()
  server.child.kill('SIGTERM')
  for (const s of streams) {
    const last = await s.waitFor((e) => e.event === 'disconnected', SHUTDOWN_TIMEOUT_MS)
    t.match(last.json, {
      reason: 'server_shutdown',
      message: 'The server is shutting down; reconnect to continue',
      timestamp: String,
    })
    await s.waitForEnd(SHUTDOWN_TIMEOUT_MS)
    t.equal(s.events.at(-1), last, 'disconnected is the last event')
    const retries = [...s.text.matchAll(/^retry: (\d+)$/gm)].map((m) => Number(m[1]))
    const hint = retries.at(-1) ?? 0
    t.ok(hint >= 1000 && hint < 3000, `a spread reconnection hint (${hint} ms)`)
  }
  const { code, signal } = await exitWithin(t, server, SHUTDOWN_TIMEOUT_MS)
  t.equal(code, 0, 'exit code 0')
  t.equal(signal, null)
  t.comment(`exited ${Date.now() - started} ms after SIGTERM`)

  const logs = server.stdout()
  const lines = logLines(logs)
  t.ok(
    lines.some((l) => l.msg === 'shutting down' && l.signal === 'SIGTERM'),
    'the shutdown is logged',
  )
  t.ok(
    lines.some((l) => l.msg === 'stream connected' && l.userId === 'alice'),
    'streams are logged',
  )
  t.notOk(logs.includes(queryToken), 'a ?token= never reaches the logs')
  t.notOk(logs.includes(headerToken), 'an Authorization header never reaches the logs')
  t.notOk(logs.includes(queryToken.split('.')[2] ?? '-'), 'not even a token signature')
  t.match(logs, /token=%5BREDACTED%5D|token=\[REDACTED\]/, 'the query string is logged, redacted')
  t.equal(server.stderr(), '', 'nothing on stderr')
})

t.test('development without a key: a generated secret and a ready-to-use token in the log', async (t) => {
  const port = await freePort()
  const server = start(
    t,
    { NODE_ENV: 'development', PORT: String(port), HOST: '127.0.0.1', SHUTDOWN_TIMEOUT_MS: '3000' },
    port,
  )
  await waitUntilListening(server)
  let hint: Record<string, unknown> | undefined
  await eventually(() => {
    hint = logLines(server.stdout()).find((l) => typeof l.devToken === 'string')
    return hint !== undefined
  })
  t.ok(hint, 'the development token is logged')
  const devToken = String(hint?.devToken)
  t.match(
    String(hint?.try),
    new RegExp(`curl .*127\\.0\\.0\\.1:${port}|curl .*localhost:${port}`),
    'with a curl example',
  )
  const res = await post(server.url, '/api/sse', { event: 'hello', data: 1, broadcast: true }, devToken)
  t.equal(res.status, 202, 'the token publishes')
  t.equal((await get(server.url, '/api/sse/stats', devToken)).status, 200, 'and reads stats')
  server.child.kill('SIGINT')
  const { code } = await exitWithin(t, server, 3000)
  t.equal(code, 0)
})

t.test('a bad configuration stops startup with a message naming the variable', async (t) => {
  // One case is enough here: loadConfig's rules are unit-tested in test/config.test.ts.
  const server = start(t, { NODE_ENV: 'test', PORT: 'abc' })
  const { code } = await exitWithin(t, server, 20_000)
  t.equal(code, 1, 'exit code 1')
  t.match(server.stderr(), /invalid configuration: PORT/)
  t.equal(server.stdout(), '', 'nothing started, nothing logged')
})

t.test('a connection that never sent a request does not hold the shutdown up', async (t) => {
  const port = await freePort()
  const server = start(
    t,
    {
      NODE_ENV: 'test',
      PORT: String(port),
      HOST: '127.0.0.1',
      JWT_SECRET: SECRET,
      SHUTDOWN_TIMEOUT_MS: '1000',
    },
    port,
  )
  await waitUntilListening(server)
  // What a browser's speculative preconnect or a TCP health check leaves open.
  const idle = net.connect(port, '127.0.0.1')
  await once(idle, 'connect')
  idle.on('error', () => {})
  t.teardown(() => idle.destroy())
  const s = await openStream(server.url)
  await s.waitFor((e) => e.event === 'connected')
  server.child.kill('SIGTERM')
  await s.waitFor((e) => e.event === 'disconnected')
  const { code } = await exitWithin(t, server, 4000)
  t.equal(code, 0, 'a clean exit, not the forced one after SHUTDOWN_TIMEOUT_MS')
})
