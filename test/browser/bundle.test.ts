// The browser client as a file: built within its size budget, served to pages, exported with types.
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'
import t from 'tap'
import { request } from 'undici'
import { serve } from '../helper.js'

const root = new URL('../../', import.meta.url)
const run = promisify(execFile)

// The whole build, declarations included, as `npm run build` runs it.
const { stdout } = await run(process.execPath, ['scripts/build-browser.mjs'], { cwd: root })
const bundle = readFileSync(new URL('dist/browser/sse-manager.js', root))

t.test('the build prints the size, which is under 6 KB minified and gzipped', async (t) => {
  const printed = /(\d+) B minified, (\d+) B gzipped \(limit 6144 B\)/.exec(stdout)
  t.ok(printed, `the build says how big the client is: ${stdout.trim()}`)
  t.equal(Number(printed?.[1]), bundle.length, 'the minified size it prints is the file')
  const gzipped = gzipSync(bundle, { level: 9 }).length
  t.equal(Number(printed?.[2]), gzipped, 'the gzipped size it prints is the file')
  t.ok(gzipped < 6 * 1024, `${gzipped} B gzipped`)
})

t.test('one ES module with no dependencies, exporting connect', async (t) => {
  const code = bundle.toString('utf8')
  t.notMatch(code, /\bimport\s*[\s{*"'(]/, 'it imports nothing')
  t.match(code, /export\s*\{[^}]*\bas connect\b[^}]*\}|export\s*\{\s*connect\s*\}/, 'it exports connect')
  t.notMatch(code, /\brequire\(|\bprocess\.|\bBuffer\b/, 'nothing of Node')
  // Loadable as a module (by Node here; the browser tests load it in Chromium and Firefox).
  const mod = (await import(new URL('dist/browser/sse-manager.js', root).href)) as { connect?: unknown }
  t.equal(typeof mod.connect, 'function')
})

t.test('the package exports it as sse-manager/browser, with types', async (t) => {
  const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
    exports: Record<string, { types: string; import: string }>
  }
  const entry = pkg.exports['./browser']
  t.same(entry, { types: './dist/browser/index.d.ts', import: './dist/browser/sse-manager.js' })
  for (const file of [entry?.types, entry?.import])
    t.ok(existsSync(new URL(file ?? '', root)), `${file} is built`)
  const types = readFileSync(new URL(entry?.types ?? '', root), 'utf8')
  t.match(types, /export declare function connect\(options: ConnectOptions\): SseClient/)
  t.match(types, /export type \{[^}]*SseClient[^}]*\} from '\.\/types\.js'/)
})

t.test('the service serves it at /sse-client/sse-manager.js under the page CSP', async (t) => {
  const { url } = await serve(t, { corsOrigins: ['https://app.example.com'] })
  const res = await request(`${url}/sse-client/sse-manager.js`)
  const body = Buffer.from(await res.body.arrayBuffer())
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'text/javascript; charset=utf-8')
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.match(res.headers['content-security-policy'], /script-src 'self'/)
  t.match(res.headers['content-security-policy'], /connect-src 'self'/)
  t.same(body, readFileSync(new URL('dist/browser/sse-manager.js', root)), 'the built file')
  const page = await request(`${url}/sse-client/`)
  await page.body.text()
  t.equal(
    res.headers['content-security-policy'],
    page.headers['content-security-policy'],
    'the same CSP as the page',
  )
  // A module script from another origin is fetched with CORS: allowed origins may import it.
  const cross = await request(`${url}/sse-client/sse-manager.js`, {
    headers: { origin: 'https://app.example.com' },
  })
  await cross.body.text()
  t.equal(cross.headers['access-control-allow-origin'], 'https://app.example.com', 'for allowed origins')
})
