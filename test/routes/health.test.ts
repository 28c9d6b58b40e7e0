import t from 'tap'
import { buildApp } from '../../src/app.js'
import { build, expectError, get, memoryLogger, postRaw, serve, testConfig } from '../helper.js'

t.test('GET /health is 200 {"status":"ok"}', async (t) => {
  const { url } = await serve(t)
  const res = await get(url, '/health')
  t.equal(res.status, 200)
  t.same(res.body, { status: 'ok' })
  t.match(res.headers['content-type'], /^application\/json/)

  const app = await build(t)
  const injected = await app.inject('/health')
  t.equal(injected.statusCode, 200)
  t.equal(injected.body, '{"status":"ok"}')
})

t.test('health needs no token even when anonymous streams are off', async (t) => {
  const app = await build(t, { allowAnonymous: false })
  t.equal((await app.inject('/health')).statusCode, 200)
})

t.test('an unknown route is a JSON 404', async (t) => {
  const { url } = await serve(t)
  for (const path of ['/', '/nope', '/api/sse/nope', '/health/x']) {
    expectError(t, await get(url, path), 404, 'SSE_ERR_NOT_FOUND', /not found/)
  }
  expectError(
    t,
    await postRaw(url, '/health', '{}', { 'content-type': 'application/json' }),
    404,
    'SSE_ERR_NOT_FOUND',
    /POST \/health/,
  )
  const app = await build(t)
  for (const method of ['DELETE', 'PUT', 'PATCH'] as const) {
    const res = await app.inject({ method, url: '/api/sse' })
    expectError(
      t,
      { status: res.statusCode, body: res.json(), headers: res.headers },
      404,
      'SSE_ERR_NOT_FOUND',
      new RegExp(method),
    )
  }
})

t.test('a 404 does not echo a token from the query string', async (t) => {
  const { url } = await serve(t)
  const res = await get(url, '/nope?token=secret-token-value&x=1')
  expectError(t, res, 404, 'SSE_ERR_NOT_FOUND')
  t.notMatch(JSON.stringify(res.body), /secret-token-value/)
  t.match((res.body as { message: string }).message, /x=1/)
})

t.test('5xx messages are not leaked to clients, but logged', async (t) => {
  const { logger, lines } = memoryLogger('info')
  const app = await buildApp(testConfig(), { loggerInstance: logger })
  t.teardown(() => app.close())
  app.get('/boom', async () => {
    throw new Error('database password is hunter2')
  })
  app.get('/boom-status', async () => {
    throw Object.assign(new Error('upstream 10.0.0.7 refused'), { statusCode: 502 })
  })
  await app.ready()
  for (const path of ['/boom', '/boom-status']) {
    const res = await app.inject(path)
    t.equal(res.statusCode, 500, `${path}: an unknown failure is a 500, whatever status it carries`)
    expectError(
      t,
      { status: res.statusCode, body: res.json() },
      500,
      'SSE_ERR_INTERNAL',
      /^Internal server error$/,
    )
    t.notMatch(res.body, /hunter2|10\.0\.0\.7/, 'the message is not leaked')
  }
  const logged = lines.join('')
  t.match(logged, /hunter2/, 'the real error is logged for the operator')
  t.match(logged, /"err":\{/, 'logged as { err }')
})

t.test('errors from every layer share one shape', async (t) => {
  // Each route test checks its own errors with expectError; this gathers one of each kind in one place.
  const { url } = await serve(t, { maxPayloadBytes: 64 })
  const cases: [Promise<{ status: number; body: unknown }>, number, string][] = [
    [get(url, '/api/sse/stats'), 401, 'SSE_ERR_TOKEN_REQUIRED'],
    [get(url, '/missing'), 404, 'SSE_ERR_NOT_FOUND'],
    [postRaw(url, '/api/sse', 'x', { 'content-type': 'text/plain' }), 401, 'SSE_ERR_TOKEN_REQUIRED'],
  ]
  for (const [promise, status, code] of cases) expectError(t, await promise, status, code)
})
