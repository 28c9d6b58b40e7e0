// The sse-manager test page: plain browser JavaScript modules, no build step, nothing from outside.
// It uses the service's own browser client (sse-manager.js, served next to this file). Paths are
// relative to the page (/sse-client/), so the page also works behind a proxy that mounts the
// service under a path.
import { connect } from './sse-manager.js'

const api = (path) => new URL(`../${path}`, window.location.href)
const $ = (id) => {
  const el = document.getElementById(id)
  if (el === null) throw new Error(`missing #${id}`)
  return el
}

const MAX_LOG = 500
const TOKEN_KEY = 'sse-manager.token'
const DEV_LOGIN_KEY = 'sse-manager.dev-login'

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  /** What the dev login was asked for, so that an expired token can be minted again. */
  devLogin: JSON.parse(sessionStorage.getItem(DEV_LOGIN_KEY) ?? 'null'),
  /** @type {import('./sse-manager.js').SseClient | null} */
  client: null,
  userId: null,
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

function storeToken(token, devLogin) {
  state.token = token
  state.devLogin = devLogin
  if (token) sessionStorage.setItem(TOKEN_KEY, token)
  else sessionStorage.removeItem(TOKEN_KEY)
  if (devLogin) sessionStorage.setItem(DEV_LOGIN_KEY, JSON.stringify(devLogin))
  else sessionStorage.removeItem(DEV_LOGIN_KEY)
  renderIdentity()
}

function setToken(token, devLogin = null) {
  storeToken(token, devLogin)
  $('identity-error').textContent = ''
  if (state.client !== null) closeClient('closed', 'Identity changed: connect again to use it.')
}

async function mintDevToken(login) {
  const res = await fetch(api('api/dev/token'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(login),
  }).catch((err) => ({ ok: false, status: 0, json: async () => ({ message: String(err) }) }))
  const body = await res.json().catch(() => ({}))
  return { ok: res.ok, status: res.status, body }
}

async function devSignIn(event) {
  event.preventDefault()
  const scopes = ['dev-scope-publish', 'dev-scope-admin']
    .map($)
    .filter((el) => el.checked)
    .map((el) => el.value)
  const login = { sub: $('dev-name').value.trim(), scopes, expiresInSeconds: Number($('dev-expires').value) }
  const res = await mintDevToken(login)
  if (!res.ok) {
    $('identity-error').textContent = `Sign-in failed (${res.status}): ${res.body.message ?? 'no answer'}`
    return
  }
  setToken(res.body.token, login)
}

/**
 * What the client calls for a token: at the start, and again when the service says the last one
 * expired. A token from the dev login is minted again then; a pasted one can only be given again
 * (the service then refuses it, and the page says so).
 */
async function currentToken() {
  const exp = claimsOf(state.token ?? '')?.exp
  if (state.devLogin && typeof exp === 'number' && exp * 1000 <= Date.now() + 1000) {
    const res = await mintDevToken(state.devLogin)
    if (!res.ok) throw new Error(`the dev login refused a new token (${res.status})`)
    storeToken(res.body.token, state.devLogin)
  }
  return state.token
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

function topicNames() {
  return $('topic-input')
    .value.split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean)
}

/** Why the stream closed or is coming back, in words. */
function explain(detail) {
  if (detail.reason) return `Disconnected by the server: ${detail.message ?? ''} (${detail.reason})`
  if (detail.status)
    return `The service refused the stream (${detail.status} ${detail.code ?? ''}): ${detail.message ?? ''}`
  if (detail.message) return `The service cannot be reached: ${detail.message}`
  return ''
}

function onStateChange(client, name, detail) {
  if (state.client !== client) return
  if (name === 'open') {
    const user = state.userId ?? claimsOf(state.token ?? '')?.sub
    setConnState('open', user ? `connected as ${user}` : 'connected (anonymous)')
    $('conn-reason').textContent = ''
    if (client.clientId) $('client-id').textContent = client.clientId
    // A tab that joined a shared stream saw no connected event: the client knows the topics.
    if (client.topics.length > 0) renderTopics(client.topics)
  } else if (name === 'connecting') {
    setConnState('connecting', 'reconnecting...')
    $('conn-reason').textContent = explain(detail)
  } else {
    // The client itself decided not to come back (server_disconnect, a refusal it cannot cure).
    closeClient('closed', explain(detail))
  }
}

function renderShare(info) {
  const leader = $('leader')
  if (info === null) {
    $('tab-count').textContent = '-'
    leader.textContent = ''
    leader.dataset.leader = ''
    return
  }
  $('tab-count').textContent = String(info.tabs)
  leader.dataset.leader = String(info.leader)
  leader.dataset.tab = info.tabId
  if (!info.shared) leader.textContent = '(a stream of its own)'
  else if (info.leader) leader.textContent = `(this tab, ${info.tabId}, holds the stream)`
  else if (info.leaderTab) leader.textContent = `(tab ${info.leaderTab} holds it; this is tab ${info.tabId})`
  else leader.textContent = '(choosing the tab that holds it...)'
}

function renderTopics(topics) {
  const shown = Array.isArray(topics)
  $('topics-label').hidden = !shown
  $('topics-value').hidden = !shown
  $('topics').textContent = shown ? topics.join(', ') || '(none)' : '-'
}

function onEvent(event) {
  log(event.name, event.id, event.data)
  const client = state.client
  if (client?.lastEventId) $('last-event-id').textContent = client.lastEventId
  if (event.name === 'connected') {
    state.userId = event.data?.userId ?? null
    $('client-id').textContent = event.data?.clientId ?? '-'
  }
  // The stream's topics, as the service confirms them: at connect, and when they change.
  if (event.name === 'connected' || event.name === 'subscriptions') renderTopics(event.data?.topics)
}

function connectClient() {
  if (state.client !== null) return
  const client = connect({
    url: api('api/sse'),
    token: state.token ? currentToken : undefined,
    topics: topicNames(),
    share: $('share').checked,
    onStateChange: (name, detail) => onStateChange(client, name, detail),
    onShareChange: (info) => {
      if (state.client === client) renderShare(info)
    },
  })
  state.client = client
  state.userId = null
  client.onAny(onEvent)
  $('conn-reason').textContent = ''
  setConnState('connecting', 'connecting...')
  renderShare(client.share)
}

function closeClient(name, reason) {
  const client = state.client
  state.client = null
  client?.close()
  setConnState(name, name === 'closed' ? 'closed' : 'not connected')
  $('conn-reason').textContent = reason
  $('client-id').textContent = '-'
  renderShare(null)
  renderTopics(undefined)
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
  $('connect').addEventListener('click', connectClient)
  $('disconnect').addEventListener('click', () => closeClient('idle', 'Closed by you.'))
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
