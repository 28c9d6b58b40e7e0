// A minimal keep-alive HTTP/1.1 client for the closed-loop publishes of scenario 8: a fixed set of
// sockets, one request in flight on each, bytes written as they are and answers read by their
// Content-Length. Why not undici there: on this 2-core machine undici spends about 95 µs of CPU per
// request and this about 45 µs, and every µs the publisher spends is taken from the server it
// measures. Only what the bench's servers answer is understood (Content-Length, no chunked bodies).
import net from 'node:net'

const HEAD_END = Buffer.from('\r\n\r\n')

export class RawPool {
  #port
  #idle = []
  #queue = []
  #sockets = []

  constructor(port) {
    this.#port = port
  }

  get connected() {
    return this.#sockets.filter((s) => !s.destroyed).length
  }

  /** Opens `count` sockets (keeps those already open). */
  async open(count) {
    const opening = []
    while (this.#sockets.filter((s) => !s.destroyed).length + opening.length < count)
      opening.push(this.#connect())
    await Promise.all(opening)
  }

  #connect() {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port: this.#port, noDelay: true })
      const conn = { sock, waiter: null, buf: null }
      sock.once('connect', () => {
        this.#sockets.push(sock)
        this.#release(conn)
        resolve()
      })
      sock.on('data', (chunk) => this.#onData(conn, chunk))
      sock.on('error', (err) => {
        if (conn.waiter !== null) conn.waiter.reject(err)
        conn.waiter = null
        reject(err)
      })
      sock.on('close', () => {
        this.#idle = this.#idle.filter((c) => c !== conn)
        if (conn.waiter !== null) conn.waiter.reject(new Error('the server closed the connection'))
        conn.waiter = null
      })
    })
  }

  /** One request; resolves with `{ status, body }` (the body as a string). */
  request(head, body) {
    return new Promise((resolve, reject) => {
      const job = { bytes: Buffer.concat([Buffer.from(head, 'latin1'), body]), resolve, reject }
      const conn = this.#idle.pop()
      if (conn === undefined) this.#queue.push(job)
      else this.#send(conn, job)
    })
  }

  #send(conn, job) {
    conn.waiter = job
    conn.sock.write(job.bytes)
  }

  #release(conn) {
    const job = this.#queue.shift()
    if (job === undefined) this.#idle.push(conn)
    else this.#send(conn, job)
  }

  #onData(conn, chunk) {
    let buf = conn.buf === null ? chunk : Buffer.concat([conn.buf, chunk])
    for (;;) {
      const end = buf.indexOf(HEAD_END)
      if (end === -1) break
      const head = buf.toString('latin1', 0, end)
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? Number.NaN)
      if (Number.isNaN(length)) {
        conn.waiter?.reject(new Error(`an answer without Content-Length: ${head.slice(0, 200)}`))
        conn.waiter = null
        conn.sock.destroy()
        return
      }
      if (buf.length < end + 4 + length) break
      const status = Number(head.slice(9, 12))
      const text = buf.toString('utf8', end + 4, end + 4 + length)
      buf = buf.subarray(end + 4 + length)
      const job = conn.waiter
      conn.waiter = null
      job?.resolve({ status, body: text })
      this.#release(conn)
    }
    conn.buf = buf.length > 0 ? Buffer.from(buf) : null
  }

  close() {
    for (const sock of this.#sockets) sock.destroy()
    this.#sockets = []
    this.#idle = []
  }
}
