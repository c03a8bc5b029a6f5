// The report page's script (inlined by report.ts next to uPlot): one row of charts per metric,
// one panel per target, every panel of a row on the same y scale so the targets compare by eye.
/* global document, window, uPlot */
(function () {
  const data = JSON.parse(document.getElementById('bench-data').textContent)
  const lowerIsBetter = JSON.parse(document.getElementById('bench-better').textContent)
  const targets = data.targets
  const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf']
  const CYCLE = '__cycle__'

  const client = (pick) => (t) => ({ x: t.client.t, y: pick(t) })
  const db = (name) => (t) => ({ x: t.db.t, y: t.db.columns[name] })
  const ops = targets[0].ops.map((o) => o.id).filter((id) => id !== CYCLE)

  const charts = [
    { title: 'Operations per second (client)', unit: 'ops/s', series: [
      { label: 'ops/s', get: client((t) => t.client.opsPerS) },
      { label: 'errors/s', get: client((t) => t.client.errorsPerS) },
    ] },
    { title: 'Cycle latency percentiles over time (client)', unit: 'ms', series: ['p50', 'p90', 'p95', 'p99'].map((p) => (
      { label: p, get: client((t) => t.client.latency[CYCLE][p]) })) },
    { title: 'p99 latency per operation (client)', unit: 'ms', series: ops.map((op) => (
      { label: op, get: client((t) => t.client.latency[op].p99) })) },
    { title: 'Database sessions (pg_stat_activity)', unit: 'sessions', series: [
      { label: 'total', get: db('sessions') }, { label: 'active', get: db('sessions_active') },
      { label: 'idle', get: db('sessions_idle') }, { label: 'idle in transaction', get: db('sessions_idle_in_tx') },
    ] },
    { title: 'Database transactions per second (pg_stat_database)', unit: 'xact/s', series: [
      { label: 'commits/s', get: db('commits_per_s') }, { label: 'rollbacks/s', get: db('rollbacks_per_s') },
    ] },
    { title: 'Connections opened per second (pg_stat_database.sessions)', unit: 'conn/s', series: [
      { label: 'connections/s', get: db('connections_per_s') },
    ] },
    { title: 'Database server CPU (all its processes; 100 = one core)', unit: '%', series: [
      { label: 'CPU %', get: db('cpu_pct') },
    ] },
    { title: 'Database server memory (PSS of all its processes)', unit: 'MB', series: [
      { label: 'MB', get: db('mem_mb') },
    ] },
  ]
  if (targets.some((t) => t.db.columns.pool_cl_active !== undefined)) {
    charts.push({ title: 'Pooler (SHOW POOLS)', unit: 'connections', series: [
      { label: 'cl_active', get: db('pool_cl_active') }, { label: 'cl_waiting', get: db('pool_cl_waiting') },
      { label: 'sv_active', get: db('pool_sv_active') }, { label: 'sv_idle', get: db('pool_sv_idle') },
    ] })
  }

  const hasData = (ys) => Array.isArray(ys) && ys.some((v) => v !== null && v !== undefined)
  // One time axis for every panel: from the first database sample (taken while connecting) to the end.
  const xmin = Math.min(0, ...targets.map((t) => (t.db.t.length > 0 ? t.db.t[0] : 0)))
  const xmax = Math.max(...targets.map((t) => Math.max(t.elapsedS, t.client.t.at(-1) ?? 0, t.db.t.at(-1) ?? 0)))
  const root = document.getElementById('charts')
  const plots = []

  for (const chart of charts) {
    const perTarget = targets.map((t) => {
      const cols = chart.series.map((s) => s.get(t))
      const x = cols[0].x
      const shown = chart.series.map((s, i) => ({ label: s.label, color: COLORS[i % COLORS.length], ys: cols[i].y })).filter((s) => hasData(s.ys))
      return { t, x, shown }
    })
    if (perTarget.every((p) => p.shown.length === 0)) continue
    let ymax = 0
    for (const p of perTarget) for (const s of p.shown) for (const v of s.ys) if (v !== null && v > ymax) ymax = v
    const h = document.createElement('h3')
    h.textContent = chart.title
    root.appendChild(h)
    const row = document.createElement('div')
    row.className = 'row'
    root.appendChild(row)
    for (const p of perTarget) {
      const panel = document.createElement('div')
      panel.className = 'panel'
      const title = document.createElement('div')
      title.className = 'panel-title'
      title.textContent = p.t.name
      panel.appendChild(title)
      row.appendChild(panel)
      if (p.shown.length === 0 || p.x.length === 0) {
        const empty = document.createElement('div')
        empty.className = 'empty'
        empty.textContent = 'not sampled for this target'
        panel.appendChild(empty)
        continue
      }
      const opts = {
        width: Math.max(280, panel.clientWidth - 12),
        height: 220,
        scales: { x: { time: false, range: [xmin, xmax] }, y: { range: [0, ymax > 0 ? ymax * 1.05 : 1] } },
        axes: [{ label: 'seconds since start' }, { label: chart.unit, size: 60 }],
        series: [{ label: 's' }, ...p.shown.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, spanGaps: false }))],
        legend: { live: true },
      }
      plots.push({ plot: new uPlot(opts, [p.x, ...p.shown.map((s) => s.ys)], panel), panel })
    }
  }

  // Ratio cells of the comparison table: green where the target is better than the first one.
  const table = document.querySelector('table')
  if (table !== null && targets.length > 1) {
    table.querySelectorAll('tbody tr').forEach((tr, i) => {
      tr.querySelectorAll('td').forEach((td, j) => {
        if (j < 3 || (j - 3) % 2 !== 0) return
        const r = parseFloat(td.textContent)
        if (!Number.isFinite(r) || Math.abs(r - 1) < 0.05) return
        td.className = (r < 1) === lowerIsBetter[i] ? 'good' : 'bad'
      })
    })
  }

  window.addEventListener('resize', () => {
    for (const { plot, panel } of plots) plot.setSize({ width: Math.max(280, panel.clientWidth - 12), height: 220 })
  })
  window.benchCharts = plots.length
})()
