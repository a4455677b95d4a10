// kausal web UI: search objects, read one object's story as a timeline, switch display
// modes, analyse durations. Plain DOM, no framework; state lives in the URL so that every
// view is a deep link. The trace rows are virtualised: only the rows in view exist.
'use strict';

const $ = (id) => document.getElementById(id);
const VIEWS = ['tracing', 'grouped', 'tree', 'timeline', 'causal'];
const SCOPES = ['full tree', 'ancestors', 'children', 'object'];
const ROW = 28;

const state = { trace: null, rows: [], collapsed: new Set(), selected: null, t0: 0, t1: 1 };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

async function getJSON(url) {
  const r = await fetch(url);
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const msg = body && body.errors && body.errors[0] ? body.errors[0].msg : r.statusText;
    throw new Error(msg);
  }
  return body;
}

// ---- modes: service names are `view` (full tree) or `view [scope]` --------------------
function modeName(view, scope) { return scope === 'full tree' ? view : `${view} [${scope}]`; }
function parseMode(name) {
  const m = /^(\w+)(?: \[(.+)\])?$/.exec(name || '');
  return m ? { view: m[1], scope: m[2] || 'full tree' } : { view: 'tracing', scope: 'full tree' };
}
// Trace ids: ff + 8 mode digits + e1e3e7 + 16 digits. View digit first, scope bits last.
const VIEW_DIGIT = { tree: 0, timeline: 1, tracing: 2, grouped: 3, causal: 4 };
const SCOPE_BITS = { object: 0, ancestors: 1, children: 2, 'full tree': 3 };
function modeOfId(id) {
  const code = parseInt(id.slice(2, 10), 16);
  const view = Object.keys(VIEW_DIGIT).find((v) => VIEW_DIGIT[v] === code >>> 28) || 'tracing';
  const scope = Object.keys(SCOPE_BITS).find((s) => SCOPE_BITS[s] === (code & 3)) || 'full tree';
  return { view, scope };
}
function idWithMode(id, view, scope) {
  const code = ((VIEW_DIGIT[view] << 28) >>> 0) + SCOPE_BITS[scope];
  return 'ff' + code.toString(16).padStart(8, '0') + id.slice(10);
}

// ---- formatting -------------------------------------------------------------------
function fmtTime(us) {
  const d = new Date(us / 1000);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}
function fmtDur(us) {
  if (us < 1000) return `${Math.round(us)}µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(us < 1e4 ? 1 : 0)}ms`;
  const s = us / 1e6;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
function field(fields, key) {
  const f = (fields || []).find((x) => x.key === key);
  return f ? f.value : undefined;
}
// The data source of an activity (a log's fields or an activity span's tags), failures first.
function sourceOf(fields) {
  const code = Number(field(fields, 'http.response.status_code'));
  if (code >= 400 || field(fields, 'k8s.event.type') === 'Warning') return 'error';
  const t = field(fields, 'kausal.span.type');
  return t === 'audit' || t === 'event' || t === 'change' ? t : 'other';
}

// ---- search -----------------------------------------------------------------------
function searchParamsFromForm() {
  const p = new URLSearchParams();
  const set = (k, v) => { if (v) p.set(k, v); };
  set('cluster', $('q-cluster').value);
  set('resource', $('q-resource').value.trim());
  set('namespace', $('q-namespace').value.trim());
  set('name', $('q-name').value.trim());
  const lb = $('q-lookback').value;
  set('lookback', lb);
  if (lb === 'custom') {
    if ($('q-start').value) p.set('start', String(new Date($('q-start').value).getTime() * 1000));
    if ($('q-end').value) p.set('end', String(new Date($('q-end').value).getTime() * 1000));
  }
  set('mode', $('q-view').value);
  return p;
}

function fillForm(p) {
  $('q-cluster').value = p.get('cluster') || '';
  $('q-resource').value = p.get('resource') || '';
  $('q-namespace').value = p.get('namespace') || '';
  $('q-name').value = p.get('name') || '';
  $('q-lookback').value = p.get('lookback') || '1h';
  $('q-view').value = p.get('mode') || 'tracing';
  $('search').classList.toggle('custom-range', $('q-lookback').value === 'custom');
}

async function runSearch(p) {
  const results = $('results');
  results.replaceChildren(el('div', { class: 'count' }, 'Searching…'));
  const tags = {};
  for (const k of ['resource', 'namespace', 'name']) if (p.get(k)) tags[k] = p.get(k);
  const q = new URLSearchParams({ service: p.get('mode') || 'tracing', limit: '50' });
  if (Object.keys(tags).length) q.set('tags', JSON.stringify(tags));
  if (p.get('cluster')) q.set('operation', p.get('cluster'));
  for (const k of ['lookback', 'start', 'end']) if (p.get(k)) q.set(k, p.get(k));
  try {
    const body = await getJSON('/api/traces?' + q);
    const traces = body.data || [];
    results.replaceChildren(el('div', { class: 'count' }, `${traces.length} object${traces.length === 1 ? '' : 's'}`));
    for (const t of traces) results.append(resultCard(t));
    if (traces.length === 1 && !location.pathname.startsWith('/trace/')) openTrace(traces[0].traceID, true);
  } catch (e) {
    results.replaceChildren(el('div', { class: 'count error-box' }, e.message));
  }
}

function resultCard(t) {
  const root = t.spans.find((s) => !s.references.length) || t.spans[0];
  const proc = t.processes[root.processID] || { serviceName: '', tags: [] };
  const cluster = (proc.tags.find((x) => x.key === 'k8s.cluster.name') || {}).value || '';
  const end = Math.max(...t.spans.map((s) => s.startTime + s.duration));
  const objects = new Set(t.spans.map((s) => s.processID + s.operationName)).size;
  return el('div', { class: 'result', 'data-trace': t.traceID, onclick: () => openTrace(t.traceID, true) },
    el('div', { class: 'kind' }, `${proc.serviceName} · ${cluster}`),
    el('div', { class: 'name' }, root.operationName),
    el('div', { class: 'sub' }, `${t.spans.length} spans · ${objects} rows · ${fmtTime(root.startTime)} · ${fmtDur(end - root.startTime)}`));
}

// ---- trace ------------------------------------------------------------------------
async function openTrace(id, push) {
  if (push) history.pushState({}, '', '/trace/' + id + location.search);
  document.querySelectorAll('.result').forEach((r) => r.classList.toggle('active', r.dataset.trace.slice(16) === id.slice(16)));
  $('trace').classList.remove('hidden');
  $('t-title').textContent = 'Loading…';
  try {
    const body = await getJSON('/api/traces/' + id);
    showTrace(body.data[0]);
  } catch (e) {
    $('t-title').textContent = e.message;
    $('rows-inner').replaceChildren();
  }
}

function showTrace(t) {
  state.trace = t;
  state.collapsed.clear();
  const byId = new Map(t.spans.map((s) => [s.spanID, s]));
  const children = new Map();
  const roots = [];
  for (const s of t.spans) {
    const parent = s.references.length ? s.references[0].spanID : null;
    if (parent && byId.has(parent)) {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(s);
    } else roots.push(s);
  }
  const flat = [];
  const walk = (s, depth) => {
    flat.push({ span: s, depth, kids: (children.get(s.spanID) || []).length });
    for (const c of children.get(s.spanID) || []) walk(c, depth + 1);
  };
  roots.forEach((r) => walk(r, 0));
  state.all = flat;
  state.t0 = Math.min(...t.spans.map((s) => s.startTime));
  state.t1 = Math.max(...t.spans.map((s) => s.startTime + Math.max(s.duration, 0)), state.t0 + 1);
  for (const s of t.spans) for (const l of s.logs) state.t1 = Math.max(state.t1, l.timestamp);
  const root = flat[0].span;
  const proc = t.processes[root.processID] || { serviceName: '' };
  const mode = modeOfId(t.traceID);
  $('t-title').textContent = `${proc.serviceName} ${root.operationName}`;
  $('t-meta').replaceChildren(
    `${fmtTime(state.t0)} → ${fmtTime(state.t1)} · ${fmtDur(state.t1 - state.t0)} · ${t.spans.length} spans · `,
    el('span', { class: 'id' }, t.traceID));
  $('views').replaceChildren(...VIEWS.map((v) => modeLink(t.traceID, v, mode.scope, v, v === mode.view)));
  $('scopes').replaceChildren(...SCOPES.map((s) => modeLink(t.traceID, mode.view, s, s, s === mode.scope)));
  const warnings = (t.warnings || []).map((w) => el('div', {}, w));
  $('t-warnings').replaceChildren(...warnings);
  drawAxis();
  relayout();
  const want = new URLSearchParams(location.search).get('span');
  const sel = want && byId.get(want);
  select(sel ? sel.spanID : null, false);
}

function modeLink(id, view, scope, label, on) {
  const target = idWithMode(id, view, scope);
  return el('a', { href: '/trace/' + target, class: on ? 'on' : '', 'data-mode': modeName(view, scope),
    onclick: (e) => { e.preventDefault(); openTrace(target, true); } }, label);
}

function relayout() {
  const rows = [];
  let hideBelow = Infinity;
  for (const r of state.all) {
    if (r.depth > hideBelow) continue;
    hideBelow = state.collapsed.has(r.span.spanID) ? r.depth : Infinity;
    rows.push(r);
  }
  state.rows = rows;
  $('rows-inner').style.height = rows.length * ROW + 'px';
  $('rows-inner').replaceChildren();
  state.rendered = new Map();
  renderRows();
}

function x(us) { return ((us - state.t0) / (state.t1 - state.t0)) * 100; }

function drawAxis() {
  const axis = $('axis');
  axis.replaceChildren();
  for (let i = 0; i <= 4; i++) {
    const us = state.t0 + ((state.t1 - state.t0) * i) / 4;
    const label = i === 0 ? fmtTime(us).slice(11, 19) : '+' + fmtDur(us - state.t0);
    axis.append(el('span', { class: 'tick', style: `left:${Math.min(Math.max(i * 25, 4), 95)}%` }, label));
  }
}

// Only the rows in (and just around) the viewport exist in the DOM.
function renderRows() {
  const box = $('rows');
  const first = Math.max(0, Math.floor(box.scrollTop / ROW) - 10);
  const last = Math.min(state.rows.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW) + 10);
  const keep = new Set();
  for (let i = first; i < last; i++) {
    keep.add(i);
    if (!state.rendered.has(i)) {
      const node = rowNode(state.rows[i], i);
      state.rendered.set(i, node);
      $('rows-inner').append(node);
    }
  }
  for (const [i, node] of state.rendered) if (!keep.has(i)) { node.remove(); state.rendered.delete(i); }
}

function rowNode(r, i) {
  const s = r.span;
  const t = state.trace;
  const proc = t.processes[s.processID] || { serviceName: '' };
  const isActivity = s.tags.some((x) => x.key === 'kausal.span.type') && !s.tags.some((x) => x.key === 'k8s.object.name');
  const cls = ['row', isActivity ? 'act' : 'obj', r.depth === 0 ? 'root' : '', state.selected === s.spanID ? 'sel' : ''].join(' ');
  const twisty = el('span', { class: 'twisty' }, r.kids ? (state.collapsed.has(s.spanID) ? '▸' : '▾') : '');
  if (r.kids) twisty.addEventListener('click', (e) => { e.stopPropagation(); toggle(s.spanID); });
  const warn = s.warnings && s.warnings.length ? el('span', { class: 'warn', title: s.warnings.join('\n') }, '⚠') : null;
  const tree = el('div', { class: 'col-tree', style: `padding-left:${8 + r.depth * 14}px`, title: `${proc.serviceName} ${s.operationName}` },
    twisty, isActivity ? null : el('span', { class: 'svc' }, proc.serviceName.split('.')[0]), el('span', { class: 'op' }, s.operationName), warn);
  const time = el('div', { class: 'col-time' });
  const left = x(s.startTime);
  const bar = el('div', { class: 'bar' + (isActivity ? ' ' + sourceOf(s.tags) : ''), style: `left:${left}%;width:${Math.max(x(s.startTime + s.duration) - left, 0.15)}%`,
    title: `${fmtDur(s.duration)}` });
  time.append(bar);
  for (const l of s.logs) {
    const name = field(l.fields, 'event') || '';
    time.append(el('div', { class: 'mk ' + sourceOf(l.fields), style: `left:${x(l.timestamp)}%`, title: `${fmtTime(l.timestamp).slice(11)} ${name}` }));
  }
  return el('div', { class: cls, style: `top:${i * ROW}px`, 'data-span': s.spanID, 'data-op': s.operationName, onclick: () => select(s.spanID, true) }, tree, time);
}

function toggle(id) {
  if (state.collapsed.has(id)) state.collapsed.delete(id); else state.collapsed.add(id);
  relayout();
}

function select(id, push) {
  state.selected = id;
  document.querySelectorAll('.row').forEach((r) => r.classList.toggle('sel', r.dataset.span === id));
  const span = id && state.trace.spans.find((s) => s.spanID === id);
  if (push) {
    const q = new URLSearchParams(location.search);
    if (id) q.set('span', id); else q.delete('span');
    history.replaceState({}, '', location.pathname + (q.toString() ? '?' + q : ''));
  }
  if (!span) { $('detail').classList.add('hidden'); return; }
  $('detail').classList.remove('hidden');
  $('d-body').replaceChildren(...detail(span));
}

function detail(s) {
  const proc = state.trace.processes[s.processID] || { serviceName: '', tags: [] };
  const out = [el('h2', {}, s.operationName), el('div', { class: 'meta' }, `${proc.serviceName} · ${fmtTime(s.startTime)} · ${fmtDur(s.duration)}`)];
  if (s.warnings && s.warnings.length) out.push(el('div', { class: 'warnings' }, s.warnings.map((w) => el('div', {}, w))));
  if (s.logs.length) {
    out.push(el('h3', {}, `Activities (${s.logs.length})`));
    for (const l of s.logs) out.push(logNode(l));
  }
  out.push(el('h3', {}, 'Tags'));
  const all = [...s.tags, ...proc.tags.filter((p) => !s.tags.some((t) => t.key === p.key))];
  out.push(el('table', { class: 'tags' }, all.map((t) => el('tr', {}, el('td', {}, t.key), el('td', {}, valueNode(t.key, t.value))))));
  return out;
}

function valueNode(key, value) {
  if (key === 'kausal.diff.lines') return diffNode(String(value));
  if (key === 'kausal.snapshot.json') return snapshotNode(String(value));
  return String(value);
}

function logNode(l) {
  const src = sourceOf(l.fields);
  const name = field(l.fields, 'event') || '';
  const diff = field(l.fields, 'kausal.diff.lines');
  const snap = field(l.fields, 'kausal.snapshot.json');
  const rest = l.fields.filter((f) => !['event', 'kausal.diff.lines', 'kausal.snapshot.json'].includes(f.key));
  return el('div', { class: 'log ' + src },
    el('div', { class: 'when' }, fmtTime(l.timestamp)),
    el('div', { class: 'what' }, name),
    diff ? diffNode(String(diff)) : null,
    snap ? snapshotNode(String(snap)) : null,
    el('details', {}, el('summary', {}, `${rest.length} fields`),
      el('table', { class: 'tags' }, rest.map((f) => el('tr', {}, el('td', {}, f.key), el('td', {}, String(f.value)))))));
}

// `path old -> new` per line; values are JSON as the span builder writes them.
function diffNode(text) {
  const box = el('div', { class: 'diff' });
  for (const line of text.split('\n')) {
    if (!line) continue;
    const m = /^(\S+) (.*) -> (.*)$/.exec(line);
    if (m) {
      box.append(el('div', { class: 'diff-line' }, el('span', { class: 'path' }, m[1]),
        el('span', { class: 'old' }, m[2]), el('span', { class: 'arrow' }, '→'), el('span', { class: 'new' }, m[3])));
    } else box.append(el('div', { class: 'diff-line' }, line));
  }
  return box;
}

function snapshotNode(text) {
  let pretty = text;
  try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* shown as is */ }
  return el('details', { open: '' }, el('summary', {}, 'snapshot'), el('pre', { class: 'snapshot' }, pretty));
}

// ---- analysis ---------------------------------------------------------------------
async function runDurations(from, to, lookback) {
  const out = $('a-out');
  out.replaceChildren('Measuring…');
  const q = new URLSearchParams({ from, to, lookback });
  try {
    const d = await getJSON('/api/v1/durations?' + q);
    const stat = (l, v) => el('div', { class: 'stat' }, el('div', { class: 'v' }, v), el('div', { class: 'l' }, l));
    const ms = (v) => (v === null || v === undefined ? '–' : fmtDur(v * 1000));
    out.replaceChildren(el('div', { class: 'stats' }, stat('pairs', d.count), stat('p50', ms(d.p50_ms)), stat('p90', ms(d.p90_ms)),
      stat('p99', ms(d.p99_ms)), stat('max', ms(d.max_ms)), stat('unmatched', d.unmatched)));
    const max = Math.max(1, ...d.histogram.map((b) => b.count));
    out.append(el('div', { class: 'hist', id: 'hist' }, d.histogram.map((b) =>
      el('div', { class: 'b', style: `height:${(b.count / max) * 100}%`, title: `${ms(b.from_ms)} – ${ms(b.to_ms)}: ${b.count}` }))));
    if (d.histogram.length) {
      out.append(el('div', { class: 'hist-axis' }, el('span', {}, ms(d.histogram[0].from_ms)), el('span', {}, ms(d.histogram[d.histogram.length - 1].to_ms))));
    }
  } catch (e) {
    out.replaceChildren(el('div', { class: 'error-box' }, e.message));
  }
}

// ---- routing ----------------------------------------------------------------------
function route() {
  const p = new URLSearchParams(location.search);
  const analysis = p.get('tab') === 'analysis';
  $('page-traces').classList.toggle('hidden', analysis);
  $('page-analysis').classList.toggle('hidden', !analysis);
  $('tab-traces').classList.toggle('active', !analysis);
  $('tab-analysis').classList.toggle('active', analysis);
  if (analysis) {
    if (p.get('from')) $('a-from').value = p.get('from');
    if (p.get('to')) $('a-to').value = p.get('to');
    if (p.get('lookback')) $('a-lookback').value = p.get('lookback');
    if (p.get('from') && p.get('to')) runDurations(p.get('from'), p.get('to'), $('a-lookback').value);
    return;
  }
  fillForm(p);
  const m = /^\/trace\/([0-9a-fA-F]{32})$/.exec(location.pathname);
  if (p.get('name') || p.get('resource') || p.get('namespace')) runSearch(p);
  if (m) openTrace(m[1], false);
}

async function init() {
  const view = $('q-view');
  for (const v of VIEWS) for (const s of SCOPES) view.append(el('option', { value: modeName(v, s) }, modeName(v, s)));
  try {
    const ops = await getJSON('/api/services/tracing/operations');
    for (const c of ops.data || []) $('q-cluster').append(el('option', { value: c }, c));
  } catch (_) { /* clusters are optional */ }
  $('search').addEventListener('submit', (e) => {
    e.preventDefault();
    history.pushState({}, '', '/search?' + searchParamsFromForm());
    $('trace').classList.add('hidden');
    $('detail').classList.add('hidden');
    route();
  });
  $('q-lookback').addEventListener('change', () => $('search').classList.toggle('custom-range', $('q-lookback').value === 'custom'));
  $('durations').addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ tab: 'analysis', from: $('a-from').value, to: $('a-to').value, lookback: $('a-lookback').value });
    history.pushState({}, '', '/search?' + q);
    route();
  });
  $('tab-analysis').addEventListener('click', (e) => { e.preventDefault(); history.pushState({}, '', '/search?tab=analysis'); route(); });
  $('tab-traces').addEventListener('click', (e) => { e.preventDefault(); history.pushState({}, '', '/'); route(); });
  $('rows').addEventListener('scroll', () => requestAnimationFrame(renderRows));
  window.addEventListener('resize', () => requestAnimationFrame(renderRows));
  $('d-close').addEventListener('click', () => select(null, true));
  window.addEventListener('popstate', route);
  if ($('q-cluster').value === '' && $('q-cluster').options.length === 2) $('q-cluster').value = '';
  route();
}

init();
