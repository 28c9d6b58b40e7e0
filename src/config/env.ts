import { ConfigError } from '../errors.js'

/** The environment as read: every variable a string or unset. */
export type Env = Record<string, string | undefined>

/** Whether a variable is set to something other than blank. */
export function present(env: Env, name: string): string | undefined {
  const value = env[name]
  return value === undefined || value.trim() === '' ? undefined : value
}

export function int(
  env: Env,
  name: string,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const raw = present(env, name)
  if (raw === undefined) return fallback
  if (!/^\s*\d+\s*$/.test(raw)) throw new ConfigError(name, `expected a whole number, got "${raw}"`)
  const value = Number(raw)
  if (value < min || value > max)
    throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`)
  return value
}

export function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = present(env, name)?.trim().toLowerCase()
  if (raw === undefined) return fallback
  if (['true', '1', 'yes', 'on'].includes(raw)) return true
  if (['false', '0', 'no', 'off'].includes(raw)) return false
  throw new ConfigError(name, `expected true or false, got "${raw}"`)
}

export function list(env: Env, name: string): string[] | undefined {
  const raw = present(env, name)
  if (raw === undefined) return undefined
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
}

/** One value, or any of a comma-separated list (JWT_ISSUER, JWT_AUDIENCE). */
export function oneOrMany(env: Env, name: string): string | readonly string[] | undefined {
  const values = list(env, name)
  if (values === undefined || values.length === 0) return undefined
  return values.length === 1 ? values[0] : Object.freeze(values)
}
