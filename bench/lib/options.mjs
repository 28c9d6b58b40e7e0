// The command line of `npm run bench`, the parameters of each scenario, and the limits of this machine.
import { execFileSync, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

/**
 * Every server kind, in the order of a round (reversed every other round). The floor runs right after
 * the service, so that the two ratios that matter most are measured on the same machine state.
 */
export const KINDS = ['service', 'floor', 'redis', 'baseline']

const FULL = {
  n: 10_000,
  broadcastEvents: 200,
  broadcastRate: 100,
  satN: 2000,
  satEvents: 2000,
  targetedSends: 1000,
  targetedRate: 200,
  replayEvents: 5000,
  replayRuns: 5,
  batchEvents: 200_000,
  batchSize: 100,
  singleEvents: 30_000,
  redisBatchEvents: 200_000,
  // The baseline needs about 200 s for scenario 3 on a busy 2-core machine (one write per event per client).
  timeoutMs: 420_000,
}
const QUICK = {
  n: 1000,
  broadcastEvents: 100,
  broadcastRate: 100,
  satN: 500,
  satEvents: 500,
  targetedSends: 200,
  targetedRate: 200,
  replayEvents: 5000,
  replayRuns: 3,
  batchEvents: 20_000,
  batchSize: 100,
  singleEvents: 5000,
  redisBatchEvents: 20_000,
  timeoutMs: 30_000,
}

export const USAGE = `npm run bench [-- [scenario ...] [--quick] [--repeat K] [--only ${KINDS.join(',')}]
  [--workers W] [--connections N] [--publish-connections C] [--entry other/server.js] [--no-build]
  [--cpu-prof] [--floor-write socket|response] [--markdown]]
scenarios (names or numbers, also --scenarios 1,2): `

/**
 * Reads the command line. `scenarios` are the scenario modules, each with `name`, `number` and `kinds`.
 * Throws an Error whose message is meant for the user on a bad option.
 */
export function readOptions(argv, scenarios) {
  const { values: opt, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      quick: { type: 'boolean', default: false },
      repeat: { type: 'string', default: '1' },
      only: { type: 'string' },
      workers: { type: 'string', default: '1' },
      connections: { type: 'string' },
      'no-build': { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      scenarios: { type: 'string' },
      /** Another build of the service to measure (A/B of a change), instead of dist/server.js. */
      entry: { type: 'string' },
      'publish-connections': { type: 'string', default: '64' },
      /** How the floor writes each turn's buffer: straight to the socket (default) or with res.write. */
      'floor-write': { type: 'string', default: 'socket' },
      markdown: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  const names = scenarios.map((s) => `${s.number} ${s.name}`).join(', ')
  if (opt.help) throw Object.assign(new Error(USAGE + names), { help: true })

  const asked = [...(opt.scenarios?.split(',') ?? []), ...positionals].map((x) => x.trim()).filter(Boolean)
  const known = (x) => scenarios.some((s) => s.name === x || String(s.number) === x)
  const unknown = asked.find((x) => !known(x))
  if (unknown !== undefined) throw new Error(`unknown scenario "${unknown}"; there are: ${names}`)
  const selected =
    asked.length === 0
      ? scenarios
      : scenarios.filter((s) => asked.includes(s.name) || asked.includes(String(s.number)))

  const only = opt.only ? opt.only.split(',').map((k) => k.trim()) : KINDS
  const unknownKind = only.find((k) => !KINDS.includes(k))
  if (unknownKind !== undefined)
    throw new Error(`--only takes ${KINDS.join(', ')} (comma-separated), not ${unknownKind}`)
  // A kind runs only when a selected scenario measures it (the redis kind only has scenario 6).
  const kinds = KINDS.filter((k) => only.includes(k) && selected.some((s) => s.kinds.includes(k)))
  if (!['socket', 'response'].includes(opt['floor-write']))
    throw new Error('--floor-write takes socket or response')

  const P = { ...(opt.quick ? QUICK : FULL) }
  const workerCount = Math.max(1, Number(opt.workers))
  const notes = []
  const N = connectionLimit(opt.connections ? Number(opt.connections) : P.n, workerCount, notes)
  P.satN = Math.min(P.satN, N)
  if (opt.quick)
    notes.push(
      'quick: scenario 2 offers only N x 100 events/s, which every server may keep up with; its ratios say little',
    )
  if (opt['floor-write'] === 'response')
    notes.push('floor writes with ServerResponse.write (--floor-write response), not straight to the socket')
  return {
    opt,
    P,
    N,
    workerCount,
    repeat: Math.max(1, Number(opt.repeat)),
    scenarios: selected,
    kinds,
    notes,
  }
}

/** N, lowered when the open-files limit or the ephemeral port range cannot hold it (with a note). */
function connectionLimit(wanted, workers, notes) {
  // Every server holds N sockets, each load process N / workers, all from one source IP to one port.
  const nofile = Number(execFileSync('bash', ['-c', 'ulimit -n']).toString().trim())
  if (process.env.BENCH_NOFILE_WAS !== String(nofile))
    notes.push(`open-files limit raised from ${process.env.BENCH_NOFILE_WAS} to ${nofile} (the hard limit)`)
  const [portLo, portHi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
    .trim()
    .split(/\s+/)
    .map(Number)
  const maxByFiles = Math.min(nofile - 300, (nofile - 300) * workers)
  const maxByPorts = portHi - portLo + 1 - 2000
  if (wanted <= maxByFiles && wanted <= maxByPorts) return wanted
  const lowered = Math.min(maxByFiles, maxByPorts)
  notes.push(
    `N lowered from ${wanted} to ${lowered}: open-files limit ${nofile}, ephemeral ports ${portLo}-${portHi}`,
  )
  return lowered
}

/**
 * Node cannot raise its own open-files limit: the entry runs itself again under `ulimit -n <hard>`
 * and the children inherit it. Returns only in the re-run process.
 */
export function reexecWithFileLimit(entry) {
  if (process.env.BENCH_NOFILE !== undefined) return
  const soft = execFileSync('bash', ['-c', 'ulimit -Sn']).toString().trim()
  const hard = execFileSync('bash', ['-c', 'ulimit -Hn']).toString().trim()
  const nrOpen = Number(readFileSync('/proc/sys/fs/nr_open', 'utf8'))
  const target = hard === 'unlimited' ? nrOpen : Math.min(Number(hard), nrOpen)
  const result = spawnSync(
    'bash',
    [
      '-c',
      `ulimit -n ${target} 2>/dev/null; exec "$0" "$@"`,
      process.execPath,
      entry,
      ...process.argv.slice(2),
    ],
    { stdio: 'inherit', env: { ...process.env, BENCH_NOFILE: String(target), BENCH_NOFILE_WAS: soft } },
  )
  process.exit(result.status ?? 1)
}
