/**
 * sse-manager's ids are `<ms>-<seq>` and strictly increase along a stream. Compared digit by
 * digit, so no id is too long for a number; ids of another shape are only told apart.
 */
const ID = /^(\d+)-(\d+)$/

function compareDigits(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0)
}

/** Whether `id` comes after `last` (always, when there is no `last`). */
export function isAfter(id: string, last: string | undefined): boolean {
  if (last === undefined) return true
  const a = ID.exec(id)
  const b = ID.exec(last)
  if (a === null || b === null) return id !== last
  const ms = compareDigits(a[1] as string, b[1] as string)
  return ms > 0 || (ms === 0 && compareDigits(a[2] as string, b[2] as string) > 0)
}
