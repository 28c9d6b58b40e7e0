import { toJson } from './sse/frame.js'

/**
 * `JSON.stringify(value)` for a value that `JSON.parse` made (objects, arrays, strings, numbers,
 * booleans, null), without recursion. `JSON.stringify` recurses and throws a RangeError past about
 * 10,000 levels, and a 1 MiB body can nest far deeper than that: such a body is read with a loop
 * instead, to the same text.
 */
export function jsonText(value: unknown): string {
  try {
    return toJson(value)
  } catch (err) {
    if (!(err instanceof RangeError)) throw err
  }
  return jsonTextByLoop(value)
}

/** The same text, always with the loop (exported for its tests). */
export function jsonTextByLoop(value: unknown): string {
  const out: string[] = []
  // Work to do, last first: a value to write, or text to write as it is.
  const work: ({ text: string } | { value: unknown })[] = [{ value }]
  while (work.length > 0) {
    const next = work.pop() as { text: string } | { value: unknown }
    if ('text' in next) {
      out.push(next.text)
      continue
    }
    const v = next.value
    if (v === null || typeof v !== 'object') {
      out.push(toJson(v))
    } else if (Array.isArray(v)) {
      work.push({ text: ']' })
      for (let i = v.length - 1; i >= 0; i--) {
        work.push({ value: v[i] })
        if (i > 0) work.push({ text: ',' })
      }
      out.push('[')
    } else {
      const entries = Object.entries(v)
      work.push({ text: '}' })
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, child] = entries[i] as [string, unknown]
        work.push({ value: child })
        work.push({ text: `${i > 0 ? ',' : ''}${JSON.stringify(key)}:` })
      }
      out.push('{')
    }
  }
  return out.join('')
}
