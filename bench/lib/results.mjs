// bench/results.json: every figure of the last run, overwritten each time. Keys are sorted and numbers
// rounded to 6 significant digits, so that two runs differ only where their figures do.
import { writeFileSync } from 'node:fs'

function stable(value) {
  if (typeof value === 'number') return Number.isInteger(value) ? value : Number(value.toPrecision(6))
  if (Array.isArray(value)) return value.map(stable)
  if (value === null || typeof value !== 'object') return value
  const out = {}
  for (const key of Object.keys(value).sort()) if (value[key] !== undefined) out[key] = stable(value[key])
  return out
}

export function writeResults(path, results) {
  writeFileSync(path, `${JSON.stringify(stable(results), null, 2)}\n`)
}
