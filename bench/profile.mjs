// Summarizes the CPU profiles of a `--cpu-prof` run, within each measured burst only: V8 stamps its
// samples with the same monotonic clock as process.hrtime, and bench/results.json keeps every burst's
// window, so the connecting, the warm-up and the other scenarios are left out.
//
//   npm run bench -- --only service,floor broadcast saturation --cpu-prof
//   node bench/profile.mjs [--top 25] [--inclusive] [--focus deliver,write_,verify] [--windows broadcast,batch]
//
// For each server and scenario: self time by function and by module, as % of the samples in which the
// process was not idle; with --inclusive, also the time under each function (callees included); with
// --focus, the self and total time of the functions whose label contains one of the given strings.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { table } from './lib/measure.mjs'

const bench = fileURLToPath(new URL('.', import.meta.url))
const { values: opt } = parseArgs({
  options: {
    top: { type: 'string', default: '25' },
    inclusive: { type: 'boolean', default: false },
    focus: { type: 'string' },
    /** Only the windows whose path (`broadcast`, `topics.speed.viaTopic.0`) contains one of these. */
    windows: { type: 'string' },
    results: { type: 'string', default: join(bench, 'results.json') },
    profiles: { type: 'string', default: join(bench, 'profiles') },
  },
})
const TOP = Number(opt.top)
const results = JSON.parse(readFileSync(opt.results, 'utf8'))

/** Every profile under bench/profiles/<server>/, by the pid in its file name. */
function profilesByPid() {
  const out = new Map()
  let dirs = []
  try {
    dirs = readdirSync(opt.profiles)
  } catch {
    return out
  }
  for (const dir of dirs) {
    for (const file of readdirSync(join(opt.profiles, dir))) {
      const pid = Number(/^CPU\.\d+\.\d+\.(\d+)\./.exec(file)?.[1])
      if (pid) out.set(pid, join(opt.profiles, dir, file))
    }
  }
  return out
}

const where = (cf) => {
  const url = cf.url.replace(/^file:\/\/.*?\/(node_modules|dist|bench)\//, '$1/')
  return url === '' ? '' : ` ${url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}`
}
const label = (cf) => `${cf.functionName || '(anonymous)'}${where(cf)}`

/** What a frame belongs to: the service, a package, a part of Node, or V8 itself. */
function moduleOf(cf) {
  const url = cf.url
  if (url === '') return cf.functionName.startsWith('(') ? cf.functionName : `native ${cf.functionName}`
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg) return pkg[1]
  const dist = /\/dist\/(.+)$/.exec(url)
  if (dist) return `service ${dist[1]}`
  if (url.startsWith('node:')) return url.replace(/^node:internal\//, 'node:')
  return url.split('/').slice(-1)[0]
}

/** Samples between fromUs and toUs, by node id. */
function windowCounts(profile, fromUs, toUs) {
  const counts = new Map()
  let t = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]
    if (t < fromUs || t > toUs) continue
    const id = profile.samples[i]
    counts.set(id, (counts.get(id) ?? 0) + 1)
  }
  return counts
}

function summarize(profile, fromUs, toUs) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const counts = windowCounts(profile, fromUs, toUs)
  let total = 0
  let idle = 0
  const self = new Map()
  const modules = new Map()
  const inclusive = new Map()
  for (const [id, count] of counts) {
    const cf = nodes.get(id).callFrame
    total += count
    if (cf.functionName === '(idle)') {
      idle += count
      continue
    }
    const key = label(cf)
    self.set(key, (self.get(key) ?? 0) + count)
    const mod = moduleOf(cf)
    modules.set(mod, (modules.get(mod) ?? 0) + count)
    // Each function once per sample, however often it recurses.
    const seen = new Set()
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const k = label(nodes.get(at).callFrame)
      if (seen.has(k)) continue
      seen.add(k)
      inclusive.set(k, (inclusive.get(k) ?? 0) + count)
    }
  }
  return { total, idle, busy: total - idle, self, modules, inclusive }
}

const pct = (n, of) => `${((n / of) * 100).toFixed(1)}%`
const top = (map, busy) =>
  [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP)
    .map(([k, n]) => [pct(n, busy), String(n), k])

const byPid = profilesByPid()
const loaded = new Map()
function profileOf(pid) {
  const file = byPid.get(pid)
  if (file === undefined) return null
  if (!loaded.has(pid)) loaded.set(pid, JSON.parse(readFileSync(file, 'utf8')))
  return loaded.get(pid)
}

/**
 * Every measured window under a run, with the servers it measured: a result's `pid` (or scenario 6's
 * `pids`) holds for everything below it, so the fresh servers of scenarios 7 and 8 are found too.
 */
function* windows(node, pids, path) {
  if (node === null || typeof node !== 'object') return
  if (Array.isArray(node)) {
    for (const [i, item] of node.entries()) yield* windows(item, pids, [...path, String(i)])
    return
  }
  const here = typeof node.pid === 'number' ? [node.pid] : Array.isArray(node.pids) ? node.pids : pids
  if (node.window !== undefined) for (const pid of here) yield { pid, path, window: node.window }
  for (const [key, value] of Object.entries(node)) {
    if (key !== 'window' && typeof value === 'object') yield* windows(value, here, [...path, key])
  }
}

let printed = 0
for (const [kind, rounds] of Object.entries(results.runs)) {
  for (const [round, run] of rounds.entries()) {
    for (const { pid, path, window: w } of windows(run, [], [])) {
      if (opt.windows && !opt.windows.split(',').some((x) => path.join('.').includes(x))) continue
      const profile = profileOf(pid)
      if (profile === null) continue
      const interval = (profile.endTime - profile.startTime) / profile.samples.length
      const s = summarize(profile, w.fromUs, w.toUs)
      if (s.total === 0) continue
      printed++
      process.stdout.write(
        `\n== ${kind}${rounds.length > 1 ? ` round ${round + 1}` : ''}, ${path.join('.')} (pid ${pid}): ` +
          `${s.total} samples (~${Math.round(interval)} µs each) in ${((w.toUs - w.fromUs) / 1e6).toFixed(2)} s, ` +
          `busy ${s.busy} (${pct(s.busy, s.total)}); % of busy samples\n`,
      )
      process.stdout.write(`${table(top(s.modules, s.busy), ['self', 'samples', 'module'])}\n\n`)
      process.stdout.write(`${table(top(s.self, s.busy), ['self', 'samples', 'function'])}\n`)
      if (opt.focus) {
        const wanted = opt.focus.split(',')
        const rows = [...s.inclusive.entries()]
          .filter(([k]) => wanted.some((w) => k.includes(w)))
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => [pct(n, s.busy), pct(s.self.get(k) ?? 0, s.busy), k])
        process.stdout.write(`\n${table(rows, ['total', 'self', 'focus'])}\n`)
      }
      if (opt.inclusive)
        process.stdout.write(
          `\n${table(top(s.inclusive, s.busy), ['total', 'samples', 'function (with callees)'])}\n`,
        )
    }
  }
}
if (printed === 0)
  process.stdout.write(`no profile matches a server of ${opt.results}: run the bench with --cpu-prof first\n`)
