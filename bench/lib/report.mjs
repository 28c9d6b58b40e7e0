// The table: one row per figure, the service next to the floor and the baseline, the two ratios, and the
// targets. Scenarios describe their rows (`rows(ctx)`); this file picks the medians over the rounds,
// divides, checks and formats.
import { fmt, markdownTable, median, table } from './measure.mjs'

export const HEADER = [
  'scenario',
  'metric',
  'service',
  'floor',
  'baseline',
  'service/floor',
  'service/baseline',
  'target',
  'met',
]

/** A dotted path in a run's result (`broadcast.cpu.serverCpuS`). */
export const get = (obj, path) =>
  path.split('.').reduce((o, key) => (o === undefined || o === null ? o : o[key]), obj)

export const has = (x) => x !== null && x !== undefined && !Number.isNaN(x)
export const ratio = (a, b) => (has(a) && has(b) && b !== 0 ? a / b : null)

/** The median over the rounds of one figure of one server kind. */
export const pick = (runs, kind, path) => median((runs[kind] ?? []).map((run) => get(run, path)))

/**
 * service ÷ reference, round by round (in a round the two run a minute apart at most, so they see about
 * the same machine), then the median over the rounds: steadier on a busy machine than a ratio of medians.
 */
export function pairedRatio(runs, kind, path) {
  const service = runs.service ?? []
  const reference = runs[kind] ?? []
  const rounds = Math.min(service.length, reference.length)
  if (rounds === 0) return null
  return median(
    Array.from({ length: rounds }, (_, k) => ratio(get(service[k], path), get(reference[k], path))),
  )
}

const compare = (op, value, limit) => (!has(value) ? null : op === '>=' ? value >= limit : value <= limit)

/** Target: service ÷ floor `op` x (issue 14). */
export const vsFloor = (op, x) => ({
  text: `${op} ${x}x floor`,
  pass: (v) => compare(op, v.vsFloor, x),
})

/** Target: service ÷ baseline `op` x (issue 3). */
export const vsBaseline = (op, x) => ({
  text: `${op} ${x}x baseline`,
  pass: (v) => compare(op, v.vsBaseline, x),
})

/** Target: the service's own figure below a limit (issue 3). */
export const below = (limit, unit) => ({
  text: `< ${fmt(limit)} ${unit}`,
  pass: (v) => (has(v.service) ? v.service < limit : null),
})

/**
 * Rows spec: `{ metric, path }` picks the figure of every kind the scenario measures; `{ metric, values }`
 * gives them (`{ service, floor, baseline }`). `checks` are targets, `ratios: false` hides the ratios
 * (counts of lost events), `text` replaces a formatted cell.
 */
export function buildReport(ctx, runs) {
  const rows = []
  const checks = []
  // By number, whatever order they ran in (8 runs right after 4, to reuse its streams).
  for (const scenario of [...ctx.scenarios].sort((a, b) => a.number - b.number)) {
    const label = `${scenario.number} ${scenario.name}`
    for (const spec of scenario.rows(ctx, runs)) {
      const v = {}
      for (const kind of ['service', 'floor', 'baseline']) {
        const measured = spec.values
          ? kind in spec.values
          : scenario.kinds.includes(kind) && runs[kind]?.length > 0
        v[kind] = spec.values ? spec.values[kind] : measured ? pick(runs, kind, spec.path) : undefined
        v[`${kind}Measured`] = measured
      }
      const paired = (kind) =>
        spec.ratios === false || !v[`${kind}Measured`]
          ? null
          : spec.values
            ? ratio(v.service, v[kind])
            : pairedRatio(runs, kind, spec.path)
      v.vsFloor = paired('floor')
      v.vsBaseline = paired('baseline')
      const results = (spec.checks ?? []).map((c) => {
        const pass = ctx.opt.quick && c.quickSkip ? null : c.pass(v)
        checks.push({
          scenario: label,
          metric: spec.metric,
          target: c.text,
          service: v.service ?? null,
          floor: v.floor ?? null,
          baseline: v.baseline ?? null,
          pass,
        })
        return pass === null ? 'n/a' : pass ? 'yes' : 'NO'
      })
      const cell = (kind) => spec.text?.[kind] ?? (v[`${kind}Measured`] ? fmt(v[kind]) : '')
      const times = (x) => (has(x) ? `${fmt(x)}x` : '')
      rows.push([
        label,
        spec.metric,
        cell('service'),
        cell('floor'),
        cell('baseline'),
        times(v.vsFloor),
        times(v.vsBaseline),
        (spec.checks ?? []).map((c) => c.text).join('; '),
        results.join('; '),
      ])
    }
  }
  return { rows, checks, text: table(rows, HEADER), markdown: markdownTable(rows, HEADER) }
}

/** The CPU rows every measured scenario shows: each server, the load client, the publisher, the rest. */
export function cpuRows(name, { perDelivery = true } = {}) {
  return [
    { metric: 'server CPU (s)', path: `${name}.cpu.serverCpuS` },
    ...(perDelivery
      ? [{ metric: 'server CPU per delivery (µs)', path: `${name}.serverCpuUsPerDelivery` }]
      : []),
    { metric: 'load client CPU (s)', path: `${name}.cpu.loadCpuS` },
    { metric: 'load client CPU (% of a core)', path: `${name}.cpu.loadCpuPctMax` },
    { metric: 'publisher CPU (s)', path: `${name}.cpu.publisherCpuS` },
    { metric: 'other processes (% of a core)', path: `${name}.cpu.otherCpuPct`, ratios: false },
  ]
}

/** `x` as a ratio cell. */
export const times = (x) => (has(x) ? `${fmt(x)}x` : 'n/a')

/** Per round, a ÷ b of one kind's own figures (two measurements of the same run), then the median. */
export const ownRatio = (runs, kind, a, b) =>
  median((runs[kind] ?? []).map((run) => ratio(get(run, a), get(run, b))))

/** Target: the figure in the service column `op` a limit (`unit` is appended to the text). */
export const limit = (op, x, unit = '', extra = {}) => ({
  text: `${op} ${fmt(x)}${unit}`,
  pass: (v) => compare(op, v.service, x),
  ...extra,
})

/**
 * A row of one figure that has no floor or baseline, in the service column: `kind`'s median at
 * `path`, or a `value` computed by the scenario (a ratio to a reference of the same run, shown as
 * `0.93x` when `asRatio`).
 */
export function figure(metric, { runs, kind = 'service', path, value, asRatio = false, checks = [] }) {
  const v = path === undefined ? value : pick(runs, kind, path)
  return {
    metric,
    values: { service: v },
    ...(asRatio ? { text: { service: times(v) } } : {}),
    ratios: false,
    checks,
  }
}

/**
 * One row with a burst's CPU (medians over the rounds), for each of `kinds` in its column (the
 * Redis pair's in the service's): the
 * servers, the load client (and its busiest process in % of a core), the publisher (this runner),
 * and every other process on the machine in % of a core, the noise.
 */
export function cpuLine(runs, kinds, path, metric = 'CPU (s): server / load client / publisher; others') {
  const values = {}
  const text = {}
  for (const kind of Array.isArray(kinds) ? kinds : [kinds]) {
    if (!(runs[kind] ?? []).some((run) => get(run, `${path}.cpu`) !== undefined)) continue
    const at = (key) => pick(runs, kind, `${path}.cpu.${key}`)
    // The Redis pair has no column of its own: its figures go in the service's.
    const column = kind === 'redis' ? 'service' : kind
    values[column] = at('serverCpuS')
    text[column] =
      `${fmt(at('serverCpuS'))} / ${fmt(at('loadCpuS'))} (${fmt(at('loadCpuPctMax'))}%) / ` +
      `${fmt(at('publisherCpuS'))}; others ${fmt(at('otherCpuPct'))}%`
  }
  return { metric, values, text, ratios: false }
}

/** Every measured burst in the runs, wherever a scenario keeps it (a burst has its `window`). */
export function everyBurst(runs) {
  const out = []
  const walk = (node) => {
    if (node === null || typeof node !== 'object') return
    if (Array.isArray(node)) {
      for (const item of node) if (typeof item === 'object') walk(item)
      return
    }
    if (node.window !== undefined && node.cpu !== undefined) out.push(node)
    for (const value of Object.values(node)) walk(value)
  }
  walk(runs)
  return out
}
