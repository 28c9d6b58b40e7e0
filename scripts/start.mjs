// `npm start`: runs the built server, building it first when dist/ is missing or older than src/.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const entry = join(root, 'dist', 'server.js')
// The browser client the service serves at /sse-client/sse-manager.js.
const browserBundle = join(root, 'dist', 'browser', 'sse-manager.js')

function newest(dir, skip) {
  let latest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (path === skip) continue
    latest = Math.max(latest, entry.isDirectory() ? newest(path, skip) : statSync(path).mtimeMs)
  }
  return latest
}

function stale() {
  if (!existsSync(entry) || !existsSync(browserBundle)) return true
  if (!existsSync(join(root, 'src'))) return false
  // The tests rebuild the browser client alone, so each half of dist/ is compared with its own sources.
  const browserSources = join(root, 'src', 'browser')
  const sources = Math.max(
    newest(join(root, 'src'), browserSources),
    statSync(join(root, 'tsconfig.build.json')).mtimeMs,
  )
  if (sources > newest(join(root, 'dist'), join(root, 'dist', 'browser'))) return true
  return existsSync(browserSources) && newest(browserSources) > statSync(browserBundle).mtimeMs
}

if (stale()) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  if (!existsSync(tsc)) {
    process.stderr.write(
      'dist/ is missing or stale and TypeScript is not installed: run `npm install` first\n',
    )
    process.exit(1)
  }
  process.stderr.write('building dist/ ...\n')
  const result = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], {
    stdio: 'inherit',
  })
  if (result.status !== 0) process.exit(result.status ?? 1)
  const browser = spawnSync(process.execPath, [join(root, 'scripts', 'build-browser.mjs')], {
    stdio: 'inherit',
  })
  if (browser.status !== 0) process.exit(browser.status ?? 1)
}

await import(entry)
