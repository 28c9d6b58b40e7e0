// The sse-manager test page: plain browser JavaScript, no build step, no dependencies.
// Paths are relative to the page (/sse-client/), so the page also works behind a proxy that
// mounts the service under a path.

const api = (path) => new URL(`../${path}`, window.location.href)
const $ = (id) => {
  const el = document.getElementById(id)
  if (el === null) throw new Error(`missing #${id}`)
  return el
}

const BUILT_IN = ['connected', 'heartbeat', 'disconnected']
const MAX_LOG = 500
const TOKEN_KEY = 'sse-manager.token'

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  /** @type {EventSource | null} */
  source: null,
  listened: new Set(),
  clientId: null,
}

// --- identity -------------------------------------------------------------------------

/** Reads a JWT's claims for display only: the service is what verifies it. */
function claimsOf(token) {
  try {
    const part = token.split('.')[1] ?? ''
    const binary = atob(
      part
        .replace(/-/g, '+')
        .replace(/_/g, '/')
        .padEnd(Math.ceil(part.length / 4) * 4, '='),
    )
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))))
    return typeof claims === 'object' && claims !== null ? claims : null
  } catch {
    return null
  }
}

function scopesOf(claims) {
  const raw = claims?.scope ?? claims?.scp
  if (typeof raw === 'string') return raw.split(' ').filter(Boolean)
  if (Array.isArray(raw)) return raw.filter((s) => typeof s === 'string')
  return []
}

function renderIdentity() {
  const status = $('auth-status')
  const claims = state.token ? claimsOf(state.token) : null
  const scopes = scopesOf(claims)
  if (state.token && claims && typeof claims.sub === 'string') {
    const expires =
      typeof claims.exp === 'number' ? `, expires ${new Date(claims.exp * 1000).toLocaleTimeString()}` : ''
    status.textContent = `signed in as ${claims.sub}, scopes ${scopes.length ? scopes.join(' ') : '(none)'}${expires}`
    status.dataset.auth = 'signed-in'
  } else {
    status.textContent = state.token ? 'token set (unreadable claims)' : 'anonymous'
    status.dataset.auth = state.token ? 'signed-in' : 'anonymous'
  }
  $('send-panel').hidden = !scopes.includes('sse:publish')
  $('admin-panel').hidden = !scopes.includes('sse:admin')
}

function setToken(token) {
  state.token = token
  if (token) sessionStorage.setItem(TOKEN_KEY, token)
  else sessionStorage.removeItem(TOKEN_KEY)
  $('identity-error').textContent = ''
  renderIdentity()
  if (state.source !== null) {
    closeSource('closed', 'Identity changed: connect again to use it.')
  }
}

async function devSignIn(event) {
  event.preventDefault()
  const scopes = ['dev-scope-publish', 'dev-scope-admin']
    .map($)
    .filter((el) => el.checked)
    .map((el) => el.value)
  const res = await fetch(api('api/dev/token'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      sub: $('dev-name').value.trim(),
      scopes,
      expiresInSeconds: Number($('dev-expires').value),
    }),
  }).catch((err) => ({ ok: false, status: 0, json: async () => ({ message: String(err) }) }))
  const body = await res.json().catch(() => ({}))
  if (!res.ok) {
    $('identity-error').textContent = `Sign-in failed (${res.status}): ${body.message ?? 'no answer'}`
    return
  }
  setToken(body.token)
}

// --- connection -----------------------------------------------------------------------

function setConnState(name, text) {
  const el = $('conn-state')
  el.dataset.state = name
  el.textContent = text
  const live = name === 'open' || name === 'connecting'
  $('connect').disabled = live
  $('disconnect').disabled = !live
}

function listenNames() {
  return $('listen-names')
    .value.split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean)
}

function listen(name) {
  if (state.source === null || state.listened.has(name)) return
  state.listened.add(name)
  state.source.addEventListener(name, onEvent)
}

function parse(data) {
  try {
    return JSON.parse(data)
  } catch {
    return data
  }
}

function onEvent(e) {
  const data = parse(e.data)
  log(e.type, e.lastEventId, data)
  if (e.lastEventId) $('last-event-id').textContent = e.lastEventId
  if (e.type === 'connected') {
    state.clientId = data.clientId
    $('client-id').textContent = data.clientId
    $('conn-reason').textContent = ''
    setConnState('open', data.anonymous ? 'connected (anonymous)' : `connected as ${data.userId}`)
  } else if (e.type === 'disconnected') {
    // Closing here is what stops the browser from reconnecting on its own.
    const reason = data?.reason ?? 'unknown'
    closeSource('closed', `Disconnected by the server: ${data?.message ?? ''} (${reason})`)
  }
}

function connect() {
  if (state.source !== null) return
  const url = api('api/sse')
  if (state.token) url.searchParams.set('token', state.token)
  const source = new EventSource(url)
  state.source = source
  state.listened = new Set()
  $('conn-reason').textContent = ''
  setConnState('connecting', 'connecting...')
  for (const name of [...BUILT_IN, ...listenNames()]) listen(name)
  source.onerror = () => {
    if (state.source !== source) return
    if (source.readyState === EventSource.CLOSED) {
      state.source = null
      setConnState('closed', 'closed')
      explainFailure(url)
    } else {
      setConnState('connecting', 'reconnecting...')
    }
  }
}

/** An EventSource does not show why it failed: ask the same URL once with fetch to read the error. */
async function explainFailure(url) {
  const controller = new AbortController()
  try {
    const res = await fetch(url, { signal: controller.signal, headers: { accept: 'text/event-stream' } })
    if (res.ok) {
      controller.abort()
      $('conn-reason').textContent = 'The stream failed; the service is reachable again.'
      return
    }
    const body = await res.json().catch(() => ({}))
    $('conn-reason').textContent =
      `The service refused the stream (${res.status} ${body.code ?? ''}): ${body.message ?? ''}`
  } catch {
    $('conn-reason').textContent = 'The service cannot be reached.'
  }
}

function closeSource(name, reason) {
  if (state.source !== null) state.source.close()
  state.source = null
  state.clientId = null
  setConnState(name, name === 'closed' ? 'closed' : 'not connected')
  $('conn-reason').textContent = reason
}

// --- log ------------------------------------------------------------------------------

function log(name, id, data) {
  const item = document.createElement('li')
  item.dataset.event = name
  if (id) item.dataset.id = id
  const meta = document.createElement('div')
  meta.className = 'meta'
  const time = document.createElement('time')
  const now = new Date()
  time.dateTime = now.toISOString()
  time.textContent = `${now.toLocaleTimeString()}.${String(now.getMilliseconds()).padStart(3, '0')}`
  const label = document.createElement('span')
  label.className = 'name'
  label.textContent = name
  const idEl = document.createElement('span')
  idEl.className = 'id'
  idEl.textContent = id ? `id ${id}` : ''
  meta.append(time, label, idEl)
  const pre = document.createElement('pre')
  pre.className = 'data'
  pre.textContent = typeof data === 'string' ? data : JSON.stringify(data, null, 2)
  item.append(meta, pre)
  item.hidden = name === 'heartbeat' && $('hide-heartbeats').checked
  const list = $('log')
  list.prepend(item)
  while (list.children.length > MAX_LOG) list.lastElementChild?.remove()
  $('log-count').textContent = String(list.children.length)
}

// --- API calls ------------------------------------------------------------------------

async function callApi(method, path, body) {
  const headers = { accept: 'application/json' }
  if (state.token) headers.authorization = `Bearer ${state.token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  try {
    const res = await fetch(api(path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const json = await res.json().catch(() => ({}))
    return { ok: res.ok, status: res.status, body: json }
  } catch (err) {
    return { ok: false, status: 0, body: { message: String(err) } }
  }
}

function showResult(id, ok, text) {
  const el = $(id)
  el.dataset.ok = String(ok)
  el.textContent = text
}

const failure = (res) => `${res.status} ${res.body.code ?? ''}: ${res.body.message ?? 'failed'}`

async function send(event) {
  event.preventDefault()
  const name = $('send-event').value.trim()
  let data
  try {
    data = JSON.parse($('send-data').value)
  } catch (err) {
    showResult('send-result', false, `Data is not JSON: ${err.message}`)
    return
  }
  const target = $('send-target').value
  const ids = $('send-ids')
    .value.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  const body = { event: name, data }
  if (target === 'broadcast') body.broadcast = true
  else if (target === 'users') body.userIds = ids
  else body.clientIds = ids
  listen(name)
  const res = await callApi('POST', 'api/sse', body)
  if (res.ok)
    showResult('send-result', true, `Sent ${name} (id ${res.body.id}) to ${res.body.delivered} connection(s)`)
  else showResult('send-result', false, failure(res))
}

async function refreshStats() {
  const res = await callApi('GET', 'api/sse/stats')
  if (res.ok) {
    $('stats').textContent = JSON.stringify(res.body, null, 2)
    showResult('admin-result', true, `${res.body.totalConnections} open connection(s)`)
  } else {
    showResult('admin-result', false, failure(res))
  }
}

async function disconnectAll() {
  const res = await callApi('POST', 'api/sse/disconnect-all')
  if (res.ok) showResult('admin-result', true, `Disconnected ${res.body.disconnected} connection(s)`)
  else showResult('admin-result', false, failure(res))
}

// --- wiring ---------------------------------------------------------------------------

async function init() {
  $('dev-login').addEventListener('submit', devSignIn)
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const token = $('token-input').value.trim()
    if (token) setToken(token)
  })
  $('sign-out').addEventListener('click', () => setToken(null))
  $('connect').addEventListener('click', connect)
  $('disconnect').addEventListener('click', () => closeSource('idle', 'Closed by you.'))
  $('listen-names').addEventListener('change', () => {
    for (const name of listenNames()) listen(name)
  })
  $('send-form').addEventListener('submit', send)
  $('send-target').addEventListener('change', () => {
    $('send-ids-label').hidden = $('send-target').value === 'broadcast'
  })
  $('refresh-stats').addEventListener('click', refreshStats)
  $('disconnect-all').addEventListener('click', disconnectAll)
  $('clear-log').addEventListener('click', () => {
    $('log').replaceChildren()
    $('log-count').textContent = '0'
  })
  $('hide-heartbeats').addEventListener('change', () => {
    const hide = $('hide-heartbeats').checked
    for (const item of $('log').querySelectorAll('li[data-event="heartbeat"]')) item.hidden = hide
  })
  renderIdentity()
  const config = await fetch(new URL('config.json', window.location.href))
    .then((r) => r.json())
    .catch(() => ({ devLogin: false }))
  $('dev-login').hidden = !config.devLogin
  $('dev-login-off').hidden = Boolean(config.devLogin)
  document.body.dataset.ready = 'true'
}

init()
