// `npm run bench [-- scenario ...] [options]` (see bench/README.md, or `npm run bench -- --help`).
// Builds the service, then measures it, the floor (bench/floor.mjs) and the node:http baseline
// (bench/baseline.mjs), one after the other as child processes on 127.0.0.1, with the same load from
// separate load processes (bench/load.mjs); prints one table of every figure with the ratios
// service/floor and service/baseline; bench/results.json keeps every number.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fmt, median } from './lib/measure.mjs'
import { readOptions, reexecWithFileLimit } from './lib/options.mjs'
import { globalTimeout, startLoadWorkers, stopLoadWorkers } from './lib/processes.mjs'
import { probeRedis, redisServer } from './lib/redis.mjs'
import { buildReport, everyBurst, HEADER } from './lib/report.mjs'
import { writeResults } from './lib/results.mjs'
import { runRounds } from './lib/runner.mjs'
import { bench, root } from './lib/targets.mjs'
import * as batch from './scenarios/batch.mjs'
import * as broadcast from './scenarios/broadcast.mjs'
import * as idle from './scenarios/idle.mjs'
import * as redis from './scenarios/redis.mjs'
import * as replay from './scenarios/replay.mjs'
import * as saturation from './scenarios/saturation.mjs'
import * as targeted from './scenarios/targeted.mjs'
import * as topics from './scenarios/topics.mjs'

/**
 * In the order they run on one server (the table lists them by number): 1 to 3 share their streams,
 * and 8 reuses the N users of 4.
 */
const SCENARIOS = [idle, broadcast, saturation, targeted, batch, replay, topics, redis]

reexecWithFileLimit(fileURLToPath(import.meta.url))

const log = (line) => process.stdout.write(`${line}\n`)
let options
try {
  options = readOptions(process.argv.slice(2), SCENARIOS)
} catch (err) {
  // --help is an answer, not a failure.
  ;(err.help ? process.stdout : process.stderr).write(`${err.help ? '' : 'bench: '}${err.message}\n`)
  process.exit(err.help ? 0 : 1)
}
const ctx = {
  ...options,
  log,
  seq: 0,
  workers: [],
  logDir: mkdtempSync(join(os.tmpdir(), 'sse-bench-')),
  // Starts the two instances on Redis for every scenario with a part there (6, 8).
  redisRunner: redis,
}
const { opt, notes } = ctx
const startedAt = Date.now()
globalTimeout((opt.quick ? 150_000 : 1_800_000) * ctx.repeat)

if (!opt['no-build'] && ctx.kinds.some((k) => k === 'service' || k === 'redis')) {
  log('bench: npm run build')
  const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' })
  if (build.status !== 0) {
    process.stderr.write('bench: the build failed\n')
    process.exit(1)
  }
}

if (ctx.kinds.includes('redis')) {
  await probeRedis()
  if (!redisServer.available) {
    notes.push(
      `scenario 6 skipped: Redis at ${redisServer.url} did not answer (${redisServer.error}); ` +
        'start one or set BENCH_REDIS_URL',
    )
    ctx.kinds = ctx.kinds.filter((k) => k !== 'redis')
  } else if (
    ctx.scenarios.includes(redis) &&
    (!ctx.scenarios.includes(broadcast) || !ctx.kinds.includes('service'))
  )
    notes.push('scenario 6 runs without scenario 2 of the service: no comparison with one instance')
}

const loadavgStart = os.loadavg()
const loadavg = (l) => l.map((x) => x.toFixed(2)).join(' ')
log(
  `bench: N=${ctx.N}, ${ctx.workerCount} load process(es), ${os.cpus().length} CPUs, ` +
    `node ${process.version}, load average ${loadavg(loadavgStart)}${opt.quick ? ', quick' : ''}; ` +
    `scenarios ${ctx.scenarios.map((s) => s.name).join(', ')}; servers ${ctx.kinds.join(', ')}` +
    (ctx.kinds.includes('redis') ? `; Redis ${redisServer.version} at ${redisServer.url}` : ''),
)
for (const note of notes) log(`bench: ${note}`)

ctx.workers = startLoadWorkers(ctx.workerCount)
const runs = await runRounds(ctx)
stopLoadWorkers(ctx.workers)

const report = buildReport(ctx, runs)
const noise = everyBurst(runs).map((m) => m.cpu.otherCpuPct)
const durationS = (Date.now() - startedAt) / 1000
log(`\n${report.text}`)
log(
  `\n${ctx.repeat > 1 ? `medians of ${ctx.repeat} rounds; ` : ''}N=${ctx.N}; other processes used ` +
    `${fmt(median(noise))}% of a core (median, max ${fmt(Math.max(0, ...noise.filter((x) => x !== undefined)))}%) ` +
    `while measuring; load average ${loadavg(loadavgStart)} at start, ${loadavg(os.loadavg())} at end; ` +
    `the run took ${fmt(durationS)} s`,
)
const extra = redis.extraTable(ctx, runs)
if (extra !== null) log(`\n${extra}`)
if (opt.markdown) log(`\n${report.markdown}`)
for (const note of notes) log(`note: ${note}`)

const git = (args) => {
  try {
    return execFileSync('git', args, { cwd: root }).toString().trim()
  } catch {
    return null
  }
}
writeResults(join(bench, 'results.json'), {
  date: new Date().toISOString(),
  durationS,
  commit: git(['rev-parse', '--short', 'HEAD']),
  uncommittedSourceFiles: git(['status', '--porcelain', 'src'])?.split('\n').filter(Boolean).length ?? null,
  node: process.version,
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model,
  quick: opt.quick,
  connections: ctx.N,
  workers: ctx.workers.length,
  repeat: ctx.repeat,
  publishConnections: Number(opt['publish-connections']),
  floorWrite: opt['floor-write'],
  entry: opt.entry ?? 'dist/server.js',
  scenarios: ctx.scenarios.map((s) => s.name),
  kinds: ctx.kinds,
  parameters: ctx.P,
  redis: ctx.kinds.includes('redis') || redisServer.error ? redisServer : null,
  redisComparison: redis.comparison(runs),
  notes,
  loadavg: { start: loadavgStart, end: os.loadavg() },
  table: { header: HEADER, rows: report.rows },
  checks: report.checks,
  runs,
})
// Server logs are kept only when a server logged something.
if (!Object.values(runs).some((list) => list.some((run) => run.serverLogLines > 0)))
  rmSync(ctx.logDir, { recursive: true, force: true })
log('bench: wrote bench/results.json')
process.exit(0)
