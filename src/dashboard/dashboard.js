// The dashboard's script: polls /api/dashboard.json every second, turns the counters of two
// snapshots into rates and wait percentiles, and draws tables and uPlot charts of the last minutes
// (kept in this tab since it opened; tidepool keeps no history). Actions are POSTs to /api/* with
// the token in a header. Text from the server goes into the page only as textContent.
/* global document, window, sessionStorage, fetch, performance, uPlot */
(function () {
  const POLL_MS = 1000
  const RATE_WINDOW_MS = 5000
  const KEEP_MS = 5 * 60 * 1000
  const TOKEN_KEY = 'tidepool-http-token'
  const $ = (id) => document.getElementById(id)

  /** Figures the browser test and the measurements read. */
  const probe = { renders: 0, firstRenderMs: null, lastRenderMs: null, maxRenderMs: 0, lastBytes: 0, snapshot: null, errors: 0 }
  window.dashboard = probe

  let token = sessionStorage.getItem(TOKEN_KEY)
  /** Snapshots of the last KEEP_MS, oldest first. */
  const history = []
  /** Chart series, one point per poll. */
  const series = { t: [], tps: [], qps: [], active: [], waiting: [], svUsed: [], svIdle: [], waitAvg: [], waitP99: [] }
  let charts = null
  let timer = null
  let busyAction = null

  const headers = () => (token === null ? {} : { Authorization: `Bearer ${token}` })

  // --- numbers ---------------------------------------------------------------------------------

  const fmtRate = (v) => (v === null ? '–' : v >= 100 ? String(Math.round(v)) : v.toFixed(1))
  const fmtMs = (ms) => (ms === null ? '–' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : ms >= 10 ? `${Math.round(ms)} ms` : `${ms.toFixed(2)} ms`)
  const fmtBound = (b) => (b === null ? '–' : b.zero ? '0 ms' : b.over ? `> ${fmtMs(b.ms)}` : `≤ ${fmtMs(b.ms)}`)

  /** The snapshot RATE_WINDOW_MS ago (or the oldest newer one), to difference against. */
  function baseline(now) {
    for (let i = 0; i < history.length - 1; i++) if (history[i].at_ms >= now.at_ms - RATE_WINDOW_MS) return history[i]
    return history.length > 1 ? history[history.length - 2] : null
  }

  /** Per-pool and total rates between two snapshots; counters of a pool that was dropped and made again start over. */
  function rates(now, before) {
    const dt = before === null ? 0 : (now.at_ms - before.at_ms) / 1000
    const old = new Map()
    if (before !== null) for (const p of before.pools) old.set(`${p.database}\u0000${p.user}`, p)
    const nb = now.wait_buckets_s.length + 1
    const total = { xacts: 0, queries: 0, assignments: 0, waitUs: 0, hist: new Array(nb).fill(0) }
    const perPool = new Map()
    for (const p of now.pools) {
      const key = `${p.database}\u0000${p.user}`
      const o = old.get(key)
      const diff = (k) => (o === undefined || p[k] < o[k] ? null : p[k] - o[k])
      const x = { xacts: diff('xacts'), queries: diff('queries'), assignments: diff('server_assignments'), waitUs: diff('wait_us'), hist: p.wait_hist.map((c, i) => (o === undefined || c < o.wait_hist[i] ? 0 : c - o.wait_hist[i])) }
      if (x.xacts !== null) total.xacts += x.xacts
      if (x.queries !== null) total.queries += x.queries
      if (x.assignments !== null) total.assignments += x.assignments
      if (x.waitUs !== null) total.waitUs += x.waitUs
      for (let i = 0; i < nb; i++) total.hist[i] += x.hist[i]
      perPool.set(key, summarize(x, dt, now.wait_buckets_s))
    }
    return { total: summarize(total, dt, now.wait_buckets_s), perPool }
  }

  function summarize(x, dt, bounds) {
    const ok = dt > 0
    return {
      tps: ok && x.xacts !== null ? x.xacts / dt : null,
      qps: ok && x.queries !== null ? x.queries / dt : null,
      waitAvgMs: ok && x.assignments > 0 && x.waitUs !== null ? x.waitUs / x.assignments / 1000 : ok ? 0 : null,
      waitP99: ok ? percentile(x.hist, x.assignments, bounds, 0.99) : null,
    }
  }

  /**
   * The p-th wait over all server assignments, as the upper bound of its histogram bucket. Only
   * clients that queued are in the histogram; the other assignments waited 0.
   */
  function percentile(hist, assignments, bounds, p) {
    let queued = 0
    for (const c of hist) queued += c
    const n = Math.max(assignments ?? 0, queued)
    if (n === 0) return { ms: 0, over: false, none: true }
    const want = Math.ceil(n * p)
    let seen = n - queued
    if (seen >= want) return { ms: 0, over: false, zero: true }
    for (let i = 0; i < hist.length; i++) {
      seen += hist[i]
      if (seen >= want) return i < bounds.length ? { ms: bounds[i] * 1000, over: false } : { ms: bounds[bounds.length - 1] * 1000, over: true }
    }
    return null
  }

  // --- drawing ---------------------------------------------------------------------------------

  function el(tag, text, cls) {
    const e = document.createElement(tag)
    if (text !== undefined && text !== null) e.textContent = String(text)
    if (cls !== undefined) e.className = cls
    return e
  }

  function badge(text) {
    return el('span', text, `badge ${String(text).replace(/[^a-z]/g, '')}`)
  }

  function setRows(tableId, rows) {
    const body = $(tableId).tBodies[0]
    const frag = document.createDocumentFragment()
    for (const r of rows) frag.appendChild(r)
    body.replaceChildren(frag)
  }

  function cell(tr, value, key, cls) {
    const td = el('td', value, cls)
    if (key !== undefined) td.dataset.k = key
    tr.appendChild(td)
    return td
  }

  function renderPools(s, r) {
    setRows('pools', s.pools.map((p) => {
      const x = r.perPool.get(`${p.database}\u0000${p.user}`)
      const tr = document.createElement('tr')
      tr.dataset.pool = `${p.database}/${p.user}`
      cell(tr, p.database, 'database')
      cell(tr, p.user, 'user', 'left')
      cell(tr, p.pool_mode, 'pool_mode', 'left')
      cell(tr, fmtRate(x.tps), 'tps')
      cell(tr, fmtRate(x.qps), 'qps')
      cell(tr, fmtMs(x.waitAvgMs), 'wait_avg')
      cell(tr, x.waitP99 !== null && x.waitP99.none ? '–' : fmtBound(x.waitP99), 'wait_p99')
      for (const k of ['cl_active', 'cl_waiting', 'sv_active', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login']) cell(tr, p[k], k, p[k] > 0 && k === 'cl_waiting' ? 'bad' : undefined)
      cell(tr, fmtMs(p.maxwait_ms), 'maxwait')
      const st = cell(tr, null, 'state', 'left')
      if (p.paused) st.appendChild(badge('paused'))
      return tr
    }))
  }

  function actionButton(label, action, db, opts = {}) {
    const b = el('button', label, opts.danger ? 'danger' : undefined)
    b.dataset.action = action
    b.dataset.db = db
    b.disabled = !probe.snapshot.actions || busyAction !== null
    if (!probe.snapshot.actions) b.title = 'actions are off: set [tidepool] http_token'
    b.addEventListener('click', () => act(action, db, opts.confirm))
    return b
  }

  function renderDatabases(s) {
    $('actions-note').textContent = s.actions
      ? 'PAUSE waits for running transactions to finish; new ones wait until RESUME. RECONNECT closes servers as they are released. SWITCHOVER asks for confirmation.'
      : 'Actions are off: set [tidepool] http_token to PAUSE, RESUME, RECONNECT or SWITCHOVER from here.'
    setRows('databases', s.databases.map((d) => {
      const tr = document.createElement('tr')
      tr.dataset.db = d.name
      cell(tr, d.name)
      cell(tr, d.hosts)
      const st = cell(tr, null, 'state', 'left')
      st.appendChild(badge(d.paused ? 'paused' : d.disabled ? 'disabled' : 'ok'))
      const acts = cell(tr, null, 'actions', 'left')
      acts.appendChild(d.paused ? actionButton('RESUME', 'resume', d.name) : actionButton('PAUSE', 'pause', d.name))
      acts.appendChild(actionButton('RECONNECT', 'reconnect', d.name))
      if (d.can_switch_over) acts.appendChild(actionButton('SWITCHOVER', 'switchover', d.name, { danger: true, confirm: true }))
      return tr
    }))
  }

  function renderHosts(s) {
    $('hosts-empty').hidden = s.hosts.length > 0
    setRows('hosts', s.hosts.map((h) => {
      const tr = document.createElement('tr')
      tr.dataset.host = `${h.host}:${h.port}`
      cell(tr, h.host, 'host')
      cell(tr, h.port, 'port')
      cell(tr, h.backend, 'backend', 'left')
      cell(tr, null, 'role', 'left').appendChild(badge(h.role))
      cell(tr, null, 'health', 'left').appendChild(badge(h.health))
      cell(tr, h.role_sources_agree, 'role_sources_agree', 'left')
      cell(tr, h.servers, 'servers')
      cell(tr, h.check_ms, 'check_ms')
      cell(tr, h.last_change ?? '', 'last_change', 'left')
      cell(tr, h.banned_until ?? '', 'banned_until', 'left')
      cell(tr, h.last_error ?? '', 'last_error', 'left')
      cell(tr, h.databases, 'databases', 'left')
      cell(tr, h.region ?? '', 'region', 'left')
      return tr
    }))
  }

  function renderSwitchovers(s) {
    $('switchovers-empty').hidden = s.switchovers.length > 0
    const root = $('switchovers')
    const frag = document.createDocumentFragment()
    for (const r of [...s.switchovers].sort((a, b) => b.startedAtMs - a.startedAtMs)) {
      const box = el('div', undefined, 'switchover')
      box.dataset.db = r.database
      const head = el('div')
      head.appendChild(el('b', r.database))
      head.appendChild(document.createTextNode(` ${r.from ?? '?'} → ${r.to ?? '?'} `))
      head.appendChild(badge(r.ok ? 'ok' : 'failed'))
      head.appendChild(el('span', ` ${new Date(r.startedAtMs).toLocaleString()} · ${r.totalMs} ms${r.cancelled > 0 ? ` · ${r.cancelled} cancelled` : ''}`, 'dim'))
      box.appendChild(head)
      const bar = el('div', undefined, 'timeline')
      const total = Math.max(1, r.phases.reduce((n, p) => n + p.ms, 0))
      for (const p of r.phases) {
        const seg = el('div', `${p.name} ${p.ms} ms`, `phase ${p.name}`)
        seg.dataset.phase = p.name
        seg.style.flexGrow = String(Math.max(p.ms, total / 50))
        seg.title = `${p.name}: ${p.ms} ms${p.note === '' ? '' : ` — ${p.note}`}`
        bar.appendChild(seg)
      }
      box.appendChild(bar)
      const notes = r.phases.filter((p) => p.note !== '').map((p) => `${p.name}: ${p.note}`)
      if (r.error !== null) notes.push(`error: ${r.error}`)
      if (notes.length > 0) box.appendChild(el('div', notes.join(' · '), r.error === null ? 'dim' : 'note'))
      frag.appendChild(box)
    }
    root.replaceChildren(frag)
  }

  function setTile(id, text) {
    $(id).textContent = text
  }

  function renderTiles(s, r) {
    let clActive = 0, clWaiting = 0, svUsed = 0, svIdle = 0
    for (const p of s.pools) {
      clActive += p.cl_active
      clWaiting += p.cl_waiting
      svUsed += p.sv_active
      svIdle += p.sv_idle + p.sv_used + p.sv_tested
    }
    const t = r.total
    setTile('t-tps', fmtRate(t.tps))
    setTile('t-qps', fmtRate(t.qps))
    setTile('t-wait-avg', fmtMs(t.waitAvgMs))
    setTile('t-wait-p99', t.waitP99 !== null && t.waitP99.none ? '–' : fmtBound(t.waitP99))
    setTile('t-cl-active', clActive)
    setTile('t-cl-waiting', clWaiting)
    $('t-cl-waiting').className = clWaiting > 0 ? 'value bad' : 'value'
    setTile('t-sv-used', svUsed)
    setTile('t-sv-idle', svIdle)
    setTile('t-clients', `${s.clients} / ${s.max_client_conn}`)
    return { clActive, clWaiting, svUsed, svIdle }
  }

  const CHARTS = [
    { title: 'Transactions and queries per second', unit: '/s', keys: [['tps', 'tps', '#1f77b4'], ['qps', 'queries/s', '#2ca02c']] },
    { title: 'Clients and servers', unit: 'connections', keys: [['active', 'cl_active', '#1f77b4'], ['waiting', 'cl_waiting', '#d62728'], ['svUsed', 'servers in use', '#ff7f0e'], ['svIdle', 'servers idle', '#9467bd']] },
    { title: 'Client wait (ms)', unit: 'ms', keys: [['waitAvg', 'average', '#1f77b4'], ['waitP99', 'p99 (bucket bound)', '#d62728']] },
  ]

  function makeCharts() {
    const root = $('charts')
    return CHARTS.map((c) => {
      const panel = el('div', undefined, 'panel')
      panel.appendChild(el('div', c.title, 'panel-title'))
      root.appendChild(panel)
      const opts = {
        width: Math.max(260, panel.clientWidth - 12),
        height: 180,
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: [{}, { label: c.unit, size: 55 }],
        series: [{}, ...c.keys.map(([, label, stroke]) => ({ label, stroke, width: 1.5 }))],
        legend: { live: false },
      }
      return { c, panel, plot: new uPlot(opts, [[], ...c.keys.map(() => [])], panel) }
    })
  }

  function renderCharts() {
    if (charts === null) charts = makeCharts()
    for (const { c, plot } of charts) plot.setData([series.t, ...c.keys.map(([k]) => series[k])])
  }

  function pushSeries(s, r, k) {
    series.t.push(s.at_ms / 1000)
    series.tps.push(r.total.tps)
    series.qps.push(r.total.qps)
    series.active.push(k.clActive)
    series.waiting.push(k.clWaiting)
    series.svUsed.push(k.svUsed)
    series.svIdle.push(k.svIdle)
    series.waitAvg.push(r.total.waitAvgMs)
    series.waitP99.push(r.total.waitP99 === null || r.total.waitP99.none ? null : r.total.waitP99.ms)
    while (series.t.length > 0 && series.t[0] < (s.at_ms - KEEP_MS) / 1000) for (const a of Object.values(series)) a.shift()
  }

  function render(s) {
    const t0 = performance.now()
    history.push(s)
    while (history.length > 0 && history[0].at_ms < s.at_ms - RATE_WINDOW_MS * 2) history.shift()
    probe.snapshot = s
    const r = rates(s, baseline(s))
    $('version').textContent = `${s.version} · up ${Math.round(Date.now() / 1000 - s.started_s)} s`
    const state = s.state.shutting_down ? 'shutting down' : s.state.suspended ? 'suspended' : s.state.paused ? 'paused' : s.state.ready
    $('state').replaceWith(Object.assign(badge(state), { id: 'state' }))
    const k = renderTiles(s, r)
    renderPools(s, r)
    renderDatabases(s)
    renderHosts(s)
    renderSwitchovers(s)
    pushSeries(s, r, k)
    renderCharts()
    const ms = performance.now() - t0
    probe.renders++
    probe.lastRenderMs = ms
    probe.maxRenderMs = Math.max(probe.maxRenderMs, ms)
    if (probe.firstRenderMs === null) probe.firstRenderMs = performance.now()
  }

  // --- talking to tidepool ----------------------------------------------------------------------

  function status(text, isBad) {
    $('status').textContent = text
    $('status').className = isBad ? 'bad' : 'dim'
  }

  function showLogin(message) {
    stop()
    $('main').hidden = true
    $('login').hidden = false
    $('forget').hidden = true
    $('login-error').textContent = message
    status('token needed', true)
    $('token').focus()
  }

  async function poll() {
    timer = null
    const started = Date.now()
    try {
      const res = await fetch('/api/dashboard.json', { headers: headers(), cache: 'no-store', credentials: 'omit' })
      if (res.status === 401) {
        const had = token !== null
        token = null
        sessionStorage.removeItem(TOKEN_KEY)
        return showLogin(had ? 'That token was refused.' : '')
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`)
      const text = await res.text()
      probe.lastBytes = text.length
      $('login').hidden = true
      $('main').hidden = false
      $('forget').hidden = token === null
      render(JSON.parse(text))
      if (busyAction === null) status(`updated ${new Date().toLocaleTimeString()}`, false)
    } catch (err) {
      probe.errors++
      status(`cannot reach tidepool: ${err.message}`, true)
    }
    timer = setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)))
  }

  function stop() {
    if (timer !== null) clearTimeout(timer)
    timer = null
  }

  async function act(action, db, needsConfirm) {
    if (busyAction !== null) return
    if (needsConfirm && !window.confirm(`SWITCHOVER ${db}: hold new transactions, let running ones finish, promote another host and resume. Go ahead?`)) return
    busyAction = `${action} ${db}`
    status(`${action.toUpperCase()} ${db}…`, false)
    if (probe.snapshot !== null) renderDatabases(probe.snapshot)
    try {
      const res = await fetch(`/api/${action}?db=${encodeURIComponent(db)}`, { method: 'POST', headers: headers(), credentials: 'omit' })
      const body = await res.json().catch(() => ({}))
      if (res.ok) status(`${action.toUpperCase()} ${db}: done`, false)
      else status(`${action.toUpperCase()} ${db}: ${body.error ?? `HTTP ${res.status}`}`, true)
    } catch (err) {
      status(`${action.toUpperCase()} ${db}: ${err.message}`, true)
    } finally {
      busyAction = null
      if (probe.snapshot !== null) renderDatabases(probe.snapshot)
    }
  }

  $('login').addEventListener('submit', (e) => {
    e.preventDefault()
    const v = $('token').value.trim()
    if (v === '') return
    token = v
    sessionStorage.setItem(TOKEN_KEY, v)
    $('token').value = ''
    poll()
  })
  $('forget').addEventListener('click', () => {
    token = null
    sessionStorage.removeItem(TOKEN_KEY)
    showLogin('')
  })
  window.addEventListener('resize', () => {
    if (charts !== null) for (const { plot, panel } of charts) plot.setSize({ width: Math.max(260, panel.clientWidth - 12), height: 180 })
  })
  poll()
})()
