import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createClient } from 'redis'
import { freePort, redisReachable } from '../bus/redis.js'
import { sleep } from '../helper.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** One redis-server (or sentinel) process of the test's own, on a free loopback port. */
export class RedisProcess {
  readonly port: number
  readonly #child: ChildProcess
  #output = ''

  private constructor(port: number, child: ChildProcess) {
    this.port = port
    this.#child = child
    child.stdout?.on('data', (chunk) => {
      this.#output = (this.#output + String(chunk)).slice(-20_000)
    })
  }

  static async start(t: Teardown, args: string[], password?: string): Promise<RedisProcess> {
    const own = await freePort()
    const child = spawn('redis-server', [...args, '--port', String(own)], {
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    const node = new RedisProcess(own, child)
    t.teardown(() => node.kill())
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      if (child.exitCode !== null)
        throw new Error(`redis-server exited with ${child.exitCode}:\n${node.#output}`)
      if (await redisReachable(password ? `redis://:${password}@127.0.0.1:${own}` : node.url)) return node
      await sleep(50)
    }
    throw new Error(`redis-server on port ${own} did not start:\n${node.#output}`)
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  get output(): string {
    return this.#output
  }

  /** SIGKILL by its pid; resolves once it is gone. */
  async kill(): Promise<void> {
    const child = this.#child
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }

  signal(signal: NodeJS.Signals): void {
    this.#child.kill(signal)
  }
}

const NODE_ARGS = [
  '--bind',
  '127.0.0.1',
  '--save',
  '',
  '--appendonly',
  'no',
  '--repl-diskless-sync-delay',
  '0',
]

/** A data node; with `primary`, a replica of it; with `password`, one that requires it. */
export function startNode(t: Teardown, primary?: RedisProcess, password?: string): Promise<RedisProcess> {
  return RedisProcess.start(
    t,
    [
      ...NODE_ARGS,
      ...(primary ? ['--replicaof', '127.0.0.1', String(primary.port)] : []),
      ...(password ? ['--requirepass', password, '--masterauth', password] : []),
    ],
    password,
  )
}

/** A sentinel (`redis-server <config> --sentinel`) with a config file of its own in a temporary directory. */
export async function startSentinel(
  t: Teardown,
  primary: RedisProcess,
  name: string,
  password?: string,
): Promise<RedisProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'sse-sentinel-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'sentinel.conf')
  writeFileSync(
    file,
    [
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${primary.port} 2`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`,
      `sentinel parallel-syncs ${name} 2`,
      ...(password ? [`sentinel auth-pass ${name} ${password}`] : []),
      '',
    ].join('\n'),
  )
  return RedisProcess.start(t, [file, '--sentinel'])
}

async function ask(port: number, args: string[]): Promise<unknown> {
  const client = createClient({ socket: { host: '127.0.0.1', port, reconnectStrategy: false } })
  client.on('error', () => {})
  try {
    await client.connect()
    return await client.sendCommand(args)
  } finally {
    if (client.isOpen) client.destroy()
  }
}

/** A map reply, as a flat array or as the object node-redis makes of it. */
function fields(reply: unknown): Record<string, string> {
  if (!Array.isArray(reply)) return (reply ?? {}) as Record<string, string>
  const out: Record<string, string> = {}
  const flat = reply as string[]
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string
  return out
}

/** Waits until every sentinel sees the primary, its replicas and the other sentinels (they must, to fail over). */
export async function sentinelsReady(
  sentinels: RedisProcess[],
  name: string,
  replicas: number,
  timeoutMs = 30_000,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const views = await Promise.all(
      sentinels.map((s) =>
        ask(s.port, ['SENTINEL', 'MASTER', name]).then(fields, () => ({}) as Record<string, string>),
      ),
    )
    if (
      views.every(
        (v) =>
          Number(v['num-other-sentinels']) === sentinels.length - 1 &&
          Number(v['num-slaves']) === replicas &&
          v.flags === 'master',
      )
    ) {
      return true
    }
    await sleep(200)
  }
  return false
}

/** How many replicas the node at `port` sees online. */
export async function onlineReplicas(port: number): Promise<number> {
  const info = String(await ask(port, ['INFO', 'replication']))
  return info.split('\n').filter((line) => /^slave\d+:.*state=online/.test(line)).length
}

/** The primary the first sentinel names. */
export async function primaryPort(sentinel: RedisProcess, name: string): Promise<number> {
  const reply = (await ask(sentinel.port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name])) as string[]
  return Number(reply[1])
}
