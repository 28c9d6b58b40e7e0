// No Docker engine runs here: this lints the Dockerfile's essentials and runs its health probe.
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import t from 'tap'
import { serve } from './helper.js'

const root = new URL('../', import.meta.url)
const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8')

interface Instruction {
  op: string
  args: string
}

/** Instructions with comments dropped and continuation lines joined. */
function parse(text: string): Instruction[] {
  const out: Instruction[] = []
  let pending = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (pending === '' && (line === '' || line.startsWith('#'))) continue
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `
      continue
    }
    const full = (pending + line).trim()
    pending = ''
    const match = /^(\w+)\s+(.*)$/s.exec(full)
    if (match) out.push({ op: (match[1] ?? '').toUpperCase(), args: match[2] ?? '' })
  }
  return out
}

const all = parse(dockerfile)
const stageStarts = all.flatMap((ins, i) => (ins.op === 'FROM' ? [i] : []))
const final = all.slice(stageStarts[stageStarts.length - 1] ?? 0)
const build = all.slice(stageStarts[0] ?? 0, stageStarts[1] ?? all.length)
const args = (op: string, stage = final) => stage.filter((i) => i.op === op).map((i) => i.args)

t.test('multi-stage: build with dev dependencies, run with production ones', async (t) => {
  t.ok(stageStarts.length >= 2, 'at least two stages')
  t.match(build.find((i) => i.op === 'FROM')?.args, /^node:\$\{NODE_VERSION\}-slim AS build$/)
  t.ok(
    args('RUN', build).some((a) => /\bnpm ci\b/.test(a) && !a.includes('--omit=dev')),
    'the build stage installs dev dependencies',
  )
  t.ok(
    args('RUN', build).some((a) => /\bnpm run build\b/.test(a)),
    'the build stage compiles',
  )
  const runs = args('RUN')
  t.ok(
    runs.some((a) => /\bnpm ci\b.*--omit=dev/.test(a)),
    'the final stage installs with npm ci --omit=dev',
  )
  t.notOk(
    runs.some((a) => /\bnpm (i|install|ci)\b/.test(a) && !a.includes('--omit=dev')),
    'no other install in the final stage',
  )
  t.ok(
    args('COPY').some((a) => /^--from=build \/app\/dist \.\/dist$/.test(a)),
    'dist/ comes from the build stage',
  )
  t.ok(args('COPY').includes('public ./public'), 'the test page is in the image')
  t.notOk(
    args('COPY').some((a) => /^(src|\.)\s/.test(a)),
    'no sources in the final stage',
  )
})

t.test('the base image is a current Node LTS', async (t) => {
  const version = /^ARG NODE_VERSION=(\d+)$/m.exec(dockerfile)?.[1]
  t.ok(version, 'NODE_VERSION is an ARG')
  t.ok(Number(version) >= 20 && Number(version) % 2 === 0, `Node ${version} is an LTS line`)
  for (const from of args('FROM', all)) t.match(from, /^node:\$\{NODE_VERSION\}-slim\b/)
})

t.test('runs as a non-root user in production mode', async (t) => {
  const users = args('USER')
  t.ok(users.length > 0, 'USER is set')
  const user = users[users.length - 1] ?? ''
  t.notMatch(user, /^(root|0)(:|$)/, `USER ${user} is not root`)
  t.ok(
    args('ENV').some((a) => /\bNODE_ENV=production\b/.test(a)),
    'NODE_ENV=production',
  )
  t.same(args('CMD'), ['["node", "dist/server.js"]'], 'runs the built server directly')
})

t.test('signals, port and health', async (t) => {
  t.same(args('STOPSIGNAL'), ['SIGTERM'])
  t.ok(args('EXPOSE').includes('3000'), 'EXPOSE 3000')
  const health = args('HEALTHCHECK')
  t.equal(health.length, 1, 'one HEALTHCHECK')
  t.match(health[0], '/health')
  t.notMatch(health[0], /\b(curl|wget)\b/, 'no curl or wget (not in the slim image)')
})

/** The HEALTHCHECK command as an argv. */
function probe(): string[] {
  const health = args('HEALTHCHECK')[0] ?? ''
  const json = /CMD (\[.*\])$/s.exec(health)?.[1]
  if (json === undefined) throw new Error('HEALTHCHECK is not in exec form')
  return JSON.parse(json) as string[]
}

function run(argv: string[], env: Record<string, string>): Promise<number> {
  const [cmd, ...rest] = argv
  const executable = cmd === 'node' ? process.execPath : (cmd ?? '')
  return new Promise((resolve) => {
    execFile(executable, rest, { env: { ...process.env, ...env }, timeout: 10_000 }, (err) => {
      resolve(err === null ? 0 : typeof err.code === 'number' ? err.code : 1)
    })
  })
}

t.test('the health probe passes against a running service and fails without one', async (t) => {
  const argv = probe()
  t.equal(argv[0], 'node')
  const { url } = await serve(t)
  const port = new URL(url).port
  t.equal(await run(argv, { PORT: port }), 0, 'healthy')
  // A port that is free: nothing answers.
  const free = await new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
  t.equal(await run(argv, { PORT: String(free) }), 1, 'unhealthy')
})

t.test('.dockerignore keeps secrets and local builds out; COPY sources exist', async (t) => {
  const ignore = readFileSync(new URL('.dockerignore', root), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
  for (const entry of ['.env', 'node_modules', 'dist', '.git'])
    t.ok(ignore.includes(entry), `ignores ${entry}`)
  for (const copy of args('COPY', all)) {
    if (copy.startsWith('--from=')) continue
    const sources = copy.split(/\s+/).slice(0, -1)
    for (const source of sources) {
      t.ok(existsSync(new URL(source, root)), `${source} exists`)
      t.notOk(ignore.includes(source), `${source} is not ignored`)
    }
  }
})
