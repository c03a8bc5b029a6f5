// `tidepool bench report`: one self-contained HTML file from results.json. The results are embedded
// whole as JSON (<script id="bench-data">), the tables are rendered here, and the charts are drawn
// in the page by uPlot, whose JS and CSS are read from node_modules and inlined, so the file opens
// anywhere without a network. report-page.js is the page's own script; its look is the dashboard's
// (src/dashboard/look.css), so the two read alike.

import fs from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { CLIENT_HEADER, clientRows, comparisonRows, headlineMetrics } from './tables.ts'
import type { BenchResults } from './results.ts'

const require = createRequire(import.meta.url)

function uplotAssets(): { js: string; css: string } {
  const dir = join(dirname(require.resolve('uplot/package.json')), 'dist')
  return { js: fs.readFileSync(join(dir, 'uPlot.iife.min.js'), 'utf8'), css: fs.readFileSync(join(dir, 'uPlot.min.css'), 'utf8') }
}

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
/** JSON inside <script>: nothing in it may close the element. */
const scriptJson = (v: unknown): string => JSON.stringify(v).replace(/</g, '\\u003c')

function table(header: string[], rows: string[][], cls = ''): string {
  const th = header.map((h) => `<th>${esc(h)}</th>`).join('')
  const tr = rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('\n')
  return `<table class="${cls}"><thead><tr>${th}</tr></thead><tbody>\n${tr}\n</tbody></table>`
}

export function renderHtml(r: BenchResults): string {
  const { js, css } = uplotAssets()
  const page = fs.readFileSync(new URL('./report-page.js', import.meta.url), 'utf8')
  const look = fs.readFileSync(new URL('../dashboard/look.css', import.meta.url), 'utf8')
  const o = r.options
  const span = o.durationS !== null ? `${o.durationS} s` : `${o.iterations} iterations`
  const params = Object.entries(r.workload.params).map(([k, v]) => `${k}=${v}`).join(' ')
  const targets = r.targets.map((t) => `<li><b>${esc(t.name)}</b>: ${esc(t.url)}${t.pooler === null ? '' : ` — ${esc(t.pooler)}`}<br><span class="dim">${esc(t.server)}</span>${t.notes.map((n) => `<br><span class="note">note: ${esc(n)}</span>`).join('')}</li>`).join('\n')
  const comparison = r.targets.length > 1 ? comparisonRows(r) : null
  const better = headlineMetrics(r).map((m) => m.lowerIsBetter)
  const perTarget = r.targets.map((t) => {
    const codes = Object.entries(t.errors)
    return `<div class="target"><h3>${esc(t.name)}</h3>${table(CLIENT_HEADER, clientRows(t), 'num')}${codes.length === 0 ? '' : `<p>errors by SQLSTATE: ${esc(codes.map(([c, n]) => `${c} ${n}`).join(', '))}</p>`}</div>`
  }).join('\n')
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>tidepool bench: ${esc(r.workload.name)} — ${esc(r.targets.map((t) => t.name).join(' vs '))}</title>
<style>${css}</style>
<style>${look}</style>
<style>:root { --columns: ${r.targets.length}; }</style></head>
<body>
<h1>tidepool bench: ${esc(r.workload.name)}</h1>
<div class="dim">${esc(r.createdAt)} · ${o.workers} workers × ${o.connections} connections · ${esc(span)} · seed ${o.seed}${o.prepare ? ' · prepared statements' : ''}${o.thinkTimeMs > 0 ? ` · think time ${o.thinkTimeMs} ms` : ''} · ${esc(params)} · ${r.machine.cpus} CPUs, ${esc(r.machine.platform)}, node ${esc(r.machine.node)}</div>
<ul>${targets}</ul>
${comparison === null ? '' : `<h2>Comparison</h2>${table(comparison.header, comparison.rows)}`}
<h2>Charts</h2>
<div id="charts"></div>
<h2>Client side, per target</h2>
${perTarget}
<p class="dim">The raw series are in results.json and the CSV files next to this report.</p>
<script type="application/json" id="bench-data">${scriptJson(r)}</script>
<script type="application/json" id="bench-better">${scriptJson(better)}</script>
<script>${js}</script>
<script>${page}</script>
</body></html>
`
}

export function writeReport(r: BenchResults, file: string): void {
  fs.writeFileSync(file, renderHtml(r))
}
