// The bench's child processes: every one is tracked and killed when the runner exits, whatever the
// reason (end, error, Ctrl-C, global timeout), so that no server or load process outlives a run.
import { fork } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const bench = fileURLToPath(new URL('..', import.meta.url))
const children = new Set()
const exitHooks = []
let stopping = false

export function track(child) {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

/** Runs `fn` (synchronously) when the runner exits, after the children are killed. */
export function onExit(fn) {
  exitHooks.push(fn)
}

process.on('exit', () => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  for (const fn of exitHooks) fn()
})
for (const signal of ['SIGINT', 'SIGTERM'])
  process.on(signal, () => {
    // Say so: another session's cleanup can stop a run, and a silent end looks like a crash.
    process.stderr.write(`bench: stopped by ${signal}\n`)
    process.exit(130)
  })

/** The load stops by itself: past `ms`, the whole run ends (and every child with it). */
export function globalTimeout(ms) {
  setTimeout(() => {
    process.stderr.write(`bench: global timeout (${ms / 1000} s) reached, stopping\n`)
    process.exit(2)
  }, ms).unref()
}

/** One load process (bench/load.mjs), driven over IPC. */
export class LoadWorker {
  constructor(index) {
    this.index = index
    this.waiters = new Map()
    this.child = track(fork(join(bench, 'load.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
    this.child.on('message', (msg) => {
      const waiter = this.waiters.get(msg.type)
      this.waiters.delete(msg.type)
      waiter?.(msg)
    })
    this.child.on('exit', (code, signal) => {
      // A load process that dies mid-run would leave every later number wrong: stop.
      if (!stopping) {
        process.stderr.write(`bench: load process ${index} exited (${code ?? signal})\n`)
        process.exit(1)
      }
    })
  }

  get pid() {
    return this.child.pid
  }

  /** Sends a command; returns one promise per reply type, resolved in order. */
  send(msg, ...types) {
    const replies = types.map((type) => new Promise((resolve) => this.waiters.set(type, resolve)))
    this.child.send(msg)
    return replies
  }
}

export function startLoadWorkers(count) {
  return Array.from({ length: count }, (_, i) => new LoadWorker(i))
}

export function stopLoadWorkers(workers) {
  stopping = true
  for (const w of workers) w.child.send({ cmd: 'exit' })
}
