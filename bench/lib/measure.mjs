// Measuring helpers: /proc readers, the latency histogram, medians, number formatting and tables.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100
  } catch {
    return 100
  }
})()

export const nowUs = () => Number(process.hrtime.bigint() / 1000n)
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resident memory of a process in bytes. */
export function rssOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024
}

/** CPU time (user + system) a process has used, in clock ticks; 0 once it is gone. */
export function ticksOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return 0
  }
}

/** The machine's busy ticks (excluding interrupt time, which the kernel does not charge to processes). */
export function machineTicks() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number)
  return {
    busy: user + nice + system + steal,
    irq: irq + softirq,
    all: user + nice + system + idle + iowait + irq + softirq + steal,
  }
}

// Latency histogram, the same buckets as bench/load.mjs: 10 µs wide below 1 ms, then 1% wide.
const LINEAR = 100
const bucketValue = (bucket) => (bucket < LINEAR ? bucket * 10 + 5 : 1000 * 1.01 ** (bucket - LINEAR) * 1.005)

/** Merges the workers' sparse histograms ([bucket, count] pairs). */
export function mergeHistograms(list) {
  const merged = new Map()
  for (const sparse of list) for (const [b, c] of sparse) merged.set(b, (merged.get(b) ?? 0) + c)
  return [...merged.entries()].sort((a, b) => a[0] - b[0])
}

/** The q-quantile of a merged histogram, in milliseconds (within 1%). */
export function quantileMs(hist, q) {
  let total = 0
  for (const [, c] of hist) total += c
  if (total === 0) return null
  const rank = Math.ceil(q * total)
  let seen = 0
  for (const [b, c] of hist) {
    seen += c
    if (seen >= rank) return bucketValue(b) / 1000
  }
  return null
}

export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = v.length >> 1
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

/** Rounds for display: 3 significant digits, thousands separated. */
export function fmt(value, unit = '') {
  if (value === null || value === undefined) return 'n/a'
  if (typeof value === 'string') return value
  const abs = Math.abs(value)
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3
  return `${value.toLocaleString('en-US', { maximumFractionDigits: digits })}${unit}`
}

export function table(rows, header) {
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)))
  const line = (r) => r.map((cell, i) => String(cell).padEnd(widths[i])).join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

/** The same rows as a Markdown table (`--markdown`), ready for a README. */
export function markdownTable(rows, header) {
  const line = (r) => `| ${r.map((cell) => String(cell).replaceAll('|', '\\|')).join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}
