import { type ChildProcess, spawn } from 'node:child_process'
import type { Test } from 'tap'
import type { Config } from '../../src/config.js'
import { TEST_REDIS_URL, uniquePrefix } from '../bus/redis.js'
import { type ParsedEvent, PUBLISHER, post, type Served, type Stream, serve } from '../helper.js'

/** `n` instances on ephemeral ports sharing one Redis under a prefix of their own. */
export async function instances(
  t: Test,
  n: number,
  overrides: Partial<Config> = {},
  url = TEST_REDIS_URL,
): Promise<Served[]> {
  const prefix = uniquePrefix(t, url)
  const out: Served[] = []
  for (let i = 0; i < n; i++) {
    out.push(
      await serve(t, {
        redisUrl: url,
        redisPrefix: prefix,
        statsReportIntervalMs: 200,
        heartbeatIntervalMs: 0,
        ...overrides,
      }),
    )
  }
  return out
}

export async function publish(url: string, body: Record<string, unknown>) {
  const res = await post(url, '/api/sse', body, PUBLISHER())
  if (res.status !== 202) throw new Error(`publish failed: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body as { id: string; delivered: number }
}

/** The events a stream got that a publisher sent (not connected/heartbeat/disconnected). */
export function published(stream: Stream): ParsedEvent[] {
  return stream.events.filter(
    (e) => e.event !== 'connected' && e.event !== 'heartbeat' && e.event !== 'disconnected',
  )
}

export function clientIdOf(stream: Stream): string {
  const connected = stream.events.find((e) => e.event === 'connected')
  if (connected === undefined) throw new Error('no connected event yet')
  return (connected.json as { clientId: string }).clientId
}

export interface Proc {
  child: ChildProcess
  url: string
  output: () => string
}

/** Starts `src/server.ts` as a real process and resolves once it listens. */
export async function startServer(t: Test, env: Record<string, string>): Promise<Proc> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += String(chunk)
  })
  child.stderr?.on('data', (chunk) => {
    output += String(chunk)
  })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within 40 s:\n${output}`)), 40_000)
    const check = () => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
      if (match?.[1]) {
        clearTimeout(timer)
        child.stdout?.off('data', check)
        resolve(match[1])
      }
    }
    child.stdout?.on('data', check)
    child.once('exit', (code) => reject(new Error(`exited with ${code}:\n${output}`)))
  })
  return { child, url, output: () => output }
}
