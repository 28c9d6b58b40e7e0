// Builds the browser client: src/browser/ as one minified ES module, dist/browser/sse-manager.js,
// plus its type declarations. Fails over the size budget, so the client cannot grow unnoticed.
//   node scripts/build-browser.mjs            bundle and declarations
//   node scripts/build-browser.mjs --no-types the bundle only (what the tests need)
import { spawnSync } from 'node:child_process'
import { mkdirSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))
const outDir = join(root, 'dist', 'browser')
const BUNDLE = join(outDir, 'sse-manager.js')
/** The budget: under 6 KB minified and gzipped. */
const MAX_GZIPPED_BYTES = 6 * 1024

const result = await build({
  entryPoints: [join(root, 'src', 'browser', 'index.ts')],
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser',
  // Private fields, optional chaining and the like stay as they are: every browser with Web Locks has them.
  target: 'es2022',
  tsconfig: join(root, 'tsconfig.browser.json'),
  legalComments: 'none',
  write: false,
})
const code = result.outputFiles[0]?.contents
if (code === undefined) throw new Error('esbuild wrote nothing')
const gzipped = gzipSync(code, { level: 9 }).length
process.stdout.write(
  `dist/browser/sse-manager.js: ${code.length} B minified, ${gzipped} B gzipped (limit ${MAX_GZIPPED_BYTES} B)\n`,
)
if (gzipped > MAX_GZIPPED_BYTES) {
  process.stderr.write(`the browser client is over its size limit by ${gzipped - MAX_GZIPPED_BYTES} B\n`)
  process.exit(1)
}
mkdirSync(outDir, { recursive: true })
// Written aside then renamed: tests build it in parallel with servers that are reading it.
const temporary = `${BUNDLE}.${process.pid}.tmp`
writeFileSync(temporary, code)
renameSync(temporary, BUNDLE)

if (!process.argv.includes('--no-types')) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const args = ['-p', join(root, 'tsconfig.browser.json'), '--noEmit', 'false', '--emitDeclarationOnly']
  const types = spawnSync(process.execPath, [tsc, ...args], { stdio: 'inherit' })
  if (types.status !== 0) process.exit(types.status ?? 1)
}
