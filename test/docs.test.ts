import { readdirSync, readFileSync } from 'node:fs'
import t from 'tap'

// The README and .env.example must name every variable the service reads.
const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8')
const configFiles = readdirSync(new URL('../src/config/', import.meta.url)).map((f) => `src/config/${f}`)
const sources = ['src/config.ts', ...configFiles, 'src/server.ts'].map(read).join('\n')
const variables = [
  ...new Set(
    [...sources.matchAll(/\b(?:env|process\.env)\.([A-Z][A-Z0-9_]+)|\(env, '([A-Z][A-Z0-9_]+)'/g)].map(
      (m) => m[1] ?? m[2],
    ),
  ),
]
  .filter((v): v is string => v !== undefined)
  .sort()

t.test('every variable the service reads is documented', async (t) => {
  t.ok(variables.length > 25, `found ${variables.length} variables`)
  const readme = read('README.md')
  const example = read('.env.example')
  for (const v of variables) {
    t.ok(readme.includes(`\`${v}\``), `README mentions ${v}`)
    t.match(example, new RegExp(`^${v}=`, 'm'), `.env.example sets ${v}`)
  }
})

t.test('every error code is in the README', async (t) => {
  const codes = [...read('src/errors.ts').matchAll(/^ {2}(SSE_ERR_[A-Z_]+):/gm)].map((m) => m[1] as string)
  t.ok(codes.length > 10)
  const readme = read('README.md')
  for (const code of codes) t.ok(readme.includes(`\`${code}\``), `README lists ${code}`)
})
