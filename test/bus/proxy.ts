import net from 'node:net'

interface Teardown {
  teardown(fn: () => unknown): void
}

interface Pair {
  client: net.Socket
  server: net.Socket
  cut: boolean
}

/**
 * A TCP proxy on 127.0.0.1 in front of a Redis, to make faults a real network has: `stall()`
 * holds every byte both ways (the connections stay open, as behind a frozen process or a
 * partition), `resume()` lets them through; `cutReplyTo(marker)` drops the answer to the next
 * command that carries `marker` and resets that connection, so the command runs but its reply is lost.
 */
export class RedisProxy {
  readonly #target: number
  readonly #server: net.Server
  readonly #pairs = new Set<Pair>()
  #stalled = false
  #marker: string | null = null
  /** Replies dropped by cutReplyTo. */
  dropped = 0

  private constructor(target: number) {
    this.#target = target
    this.#server = net.createServer((client) => this.#accept(client))
  }

  static async start(t: Teardown, targetPort: number): Promise<RedisProxy> {
    const proxy = new RedisProxy(targetPort)
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve))
    t.teardown(() => proxy.close())
    return proxy
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  stall(): void {
    this.#stalled = true
    for (const { client, server } of this.#pairs) {
      client.pause()
      server.pause()
    }
  }

  resume(): void {
    this.#stalled = false
    for (const { client, server } of this.#pairs) {
      client.resume()
      server.resume()
    }
  }

  /** The next command carrying `marker` reaches Redis; its reply is dropped and its connection reset. */
  cutReplyTo(marker: string): void {
    this.#marker = marker
  }

  close(): Promise<void> {
    for (const { client, server } of this.#pairs) {
      client.destroy()
      server.destroy()
    }
    return new Promise((resolve) => this.#server.close(() => resolve()))
  }

  #accept(client: net.Socket): void {
    const server = net.connect(this.#target, '127.0.0.1')
    const pair: Pair = { client, server, cut: false }
    this.#pairs.add(pair)
    const end = () => {
      this.#pairs.delete(pair)
      client.destroy()
      server.destroy()
    }
    client.on('error', end).on('close', end)
    server.on('error', end).on('close', end)
    client.on('data', (chunk: Buffer) => {
      if (this.#marker !== null && chunk.includes(this.#marker)) {
        this.#marker = null
        pair.cut = true
      }
      server.write(chunk)
    })
    server.on('data', (chunk) => {
      if (pair.cut) {
        this.dropped++
        end()
        return
      }
      client.write(chunk)
    })
    if (this.#stalled) {
      client.pause()
      server.pause()
    }
  }
}
