import SwaggerParser from '@apidevtools/swagger-parser'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { build, get, serve } from '../helper.js'

interface Operation {
  responses?: Record<string, { $ref?: string; content?: Record<string, { schema?: { $ref?: string } }> }>
  security?: Record<string, string[]>[]
  description?: string
  requestBody?: unknown
}
type OpenApi = {
  openapi: string
  info: { title: string; version: string }
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, Record<string, string>> }
}

/** Every [METHOD, path] the app serves, read from Fastify's own route tree. */
function routesOf(app: FastifyInstance): [string, string][] {
  const out: [string, string][] = []
  const stack: string[] = []
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^([│ ]*)[├└]── (.*?)(?: \(([^)]*)\))?$/.exec(line)
    if (match === null) continue
    const depth = (match[1] ?? '').length / 4
    const path = (stack[depth - 1] ?? '') + (match[2] ?? '')
    stack[depth] = path
    stack.length = depth + 1
    for (const method of (match[3] ?? '').split(',').map((m) => m.trim())) {
      if (method !== '') out.push([method, path])
    }
  }
  return out
}

const UNDOCUMENTED = /^\/(docs|sse-client)(\/|\*|$)|^\*$/

async function documentOf(url: string): Promise<OpenApi> {
  const res = await get(url, '/docs/json')
  if (res.status !== 200) throw new Error(`/docs/json answered ${res.status}`)
  return res.body as OpenApi
}

t.test('the OpenAPI document is valid and lists every route', async (t) => {
  const { app, url } = await serve(t)
  const doc = await documentOf(url)
  t.equal(doc.openapi, '3.1.0')
  t.equal(doc.info.title, 'sse-manager')
  // Throws on any structural error or unresolved $ref.
  await t.resolves(SwaggerParser.validate(structuredClone(doc) as never), 'a valid OpenAPI document')

  const served = routesOf(app).filter(
    ([method, path]) => !['HEAD', 'OPTIONS'].includes(method) && !UNDOCUMENTED.test(path),
  )
  t.ok(served.length >= 7, `found the app's routes (${served.length})`)
  for (const [method, path] of served) {
    // OpenAPI writes a path parameter as {name} where the router writes :name.
    const documented = path.replace(/:(\w+)/g, '{$1}')
    t.ok(doc.paths[documented]?.[method.toLowerCase()], `${method} ${path} is documented`)
  }
  const expected = [
    ['get', '/api/sse'],
    ['post', '/api/sse'],
    ['get', '/api/sse/stats'],
    ['post', '/api/sse/disconnect-all'],
    ['post', '/api/sse/batch'],
    ['post', '/api/sse/subscriptions'],
    ['get', '/api/sse/topics/{topic}/presence'],
    ['get', '/health'],
    ['get', '/metrics'],
    ['post', '/api/dev/token'],
  ]
  if (app.hasRoute({ method: 'GET', url: '/ready' })) expected.push(['get', '/ready'])
  for (const [method, path] of expected)
    t.ok(doc.paths[path as string]?.[method as string], `${method} ${path}`)
  t.notOk(
    Object.keys(doc.paths).some((p) => UNDOCUMENTED.test(p)),
    'neither /docs nor the test page is in the document',
  )
})

t.test('every operation documents its answers, errors included', async (t) => {
  const { url } = await serve(t)
  const doc = await documentOf(url)
  t.ok(doc.components.schemas.ErrorResponse, 'the shared ErrorResponse schema is a component')
  t.match(doc.components.securitySchemes.bearerAuth, { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' })
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const name = `${method.toUpperCase()} ${path}`
      const statuses = Object.keys(op.responses ?? {})
      t.ok(
        statuses.some((s) => /^[23]/.test(s)),
        `${name} documents its success (${statuses.join(' ')})`,
      )
      const errorStatuses = statuses.filter((s) => /^[45]/.test(s))
      t.ok(errorStatuses.includes('500'), `${name} documents 500`)
      t.equal(
        op.responses?.['500']?.content?.['application/json']?.schema?.$ref,
        '#/components/schemas/ErrorResponse',
        `${name} 500 is an ErrorResponse`,
      )
      // Errors are ErrorResponse; a readiness probe's 503 may describe itself instead.
      for (const status of errorStatuses) {
        t.ok(op.responses?.[status]?.content?.['application/json']?.schema, `${name} ${status} has a schema`)
      }
    }
  }
  const stream = doc.paths['/api/sse']?.get
  t.ok(stream?.responses?.['200']?.content?.['text/event-stream'], 'the stream is text/event-stream')
  for (const event of ['connected', 'heartbeat', 'disconnected']) {
    t.match(stream?.description, event, `the stream documents event ${event}`)
  }
  for (const status of ['401', '403', '429', '503']) t.ok(stream?.responses?.[status], `stream ${status}`)
  t.ok(doc.paths['/api/sse']?.post?.requestBody, 'publishing documents its body')
  t.ok(doc.paths['/api/dev/token']?.post?.requestBody, 'the dev login documents its body')
  t.same(doc.paths['/api/sse/stats']?.get?.security, [{ bearerAuth: [] }])
  for (const [path, method, status] of [
    ['/api/sse/stats', 'get', '401'],
    ['/api/sse/stats', 'get', '403'],
    ['/api/sse', 'post', '400'],
    ['/api/sse', 'get', '429'],
  ] as const) {
    t.equal(
      doc.paths[path]?.[method]?.responses?.[status]?.content?.['application/json']?.schema?.$ref,
      '#/components/schemas/ErrorResponse',
      `${method.toUpperCase()} ${path} ${status} is an ErrorResponse`,
    )
  }
  t.same(doc.paths['/api/sse/disconnect-all']?.post?.security, [{ bearerAuth: [] }])
})

t.test('the dev login and a metrics token change the document', async (t) => {
  const { url } = await serve(t, { devLogin: false, metricsToken: 'metrics-token-0123456789' })
  const doc = await documentOf(url)
  t.notOk(doc.paths['/api/dev/token'], 'no dev login when it is off')
  t.same(doc.paths['/metrics']?.get?.security, [{ metricsToken: [] }])
  t.ok(doc.paths['/metrics']?.get?.responses?.['401'])
  await t.resolves(SwaggerParser.validate(structuredClone(doc) as never))
})

t.test('/docs serves Swagger UI from this service, nothing from a CDN', async (t) => {
  const app = await build(t)
  const res = await app.inject('/docs')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/html/)
  const assets = [...res.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? '')
  t.ok(assets.length > 0, 'the page loads assets')
  for (const asset of assets) t.notMatch(asset, /^(https?:)?\/\//, `${asset} is local`)
  const yaml = await app.inject('/docs/yaml')
  t.equal(yaml.statusCode, 200)
  t.match(yaml.body, /^openapi: 3\.1\.0/m)
})
