// Sluice web UI: a single page over the public HTTP API (/api/v1). No framework, no build
// step: plain DOM calls, one live event stream, one view at a time.
'use strict';
(() => {
  // ---------------------------------------------------------------- errors (read by tests)
  const errors = (window.__sluiceErrors = []);
  addEventListener('error', (e) => errors.push('error: ' + (e.message || String(e))));
  addEventListener('unhandledrejection', (e) => errors.push('rejection: ' + ((e.reason && e.reason.message) || String(e.reason))));
  const consoleError = console.error.bind(console);
  console.error = (...a) => { errors.push(a.map(String).join(' ')); consoleError(...a); };

  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const enc = encodeURIComponent;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ---------------------------------------------------------------- theme
  {
    const t = new URLSearchParams(location.search).get('theme');
    if (t === 'dark' || t === 'light') sessionStorage.setItem('sluice.theme', t);
    if (t === 'system') sessionStorage.removeItem('sluice.theme');
  }
  function applyTheme() {
    const t = sessionStorage.getItem('sluice.theme');
    if (t) document.documentElement.dataset.theme = t;
    else delete document.documentElement.dataset.theme;
  }
  function toggleTheme() {
    const dark = document.documentElement.dataset.theme
      ? document.documentElement.dataset.theme === 'dark'
      : matchMedia('(prefers-color-scheme: dark)').matches;
    sessionStorage.setItem('sluice.theme', dark ? 'light' : 'dark');
    applyTheme();
  }

  // ---------------------------------------------------------------- DOM
  function h(tag, attrs, ...kids) {
    const svg = tag.startsWith('svg:');
    const el = svg ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v == null || v === false) continue;
        if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else if (k === 'text') el.textContent = v;
        else if (k === 'value' && !svg) el.value = v;
        else if (k === 'checked' && !svg) el.checked = !!v;
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid == null || kid === false) continue;
      el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
  }
  /** Replaces `el`'s children (arrays flattened, null and false left out). */
  function put(el, ...kids) {
    el.replaceChildren(...kids.flat(Infinity).filter((k) => k != null && k !== false));
  }
  /** Replaces `el`'s children, keeping scroll position and the focused element (by data-key). */
  function swap(el, ...kids) {
    const active = document.activeElement;
    const key = active && el.contains(active) ? active.dataset.key : null;
    const scrolls = $$('[data-scroll]', el).map((s) => [s.dataset.scroll, s.scrollLeft, s.scrollTop]);
    put(el, ...kids.flat(Infinity).filter((k) => k != null && k !== false));
    for (const [name, left, top] of scrolls) {
      const s = $(`[data-scroll="${name}"]`, el);
      if (s) { s.scrollLeft = left; s.scrollTop = top; }
    }
    if (key) { const again = $(`[data-key="${CSS.escape(key)}"]`, el); if (again) again.focus(); }
  }

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }
  async function problemOf(r) {
    let detail = `${r.status} ${r.statusText}`;
    try { const p = await r.json(); if (p && p.detail) detail = p.detail; } catch (_) { /* not JSON */ }
    return new ApiError(r.status, detail);
  }
  async function api(path, opts = {}) {
    for (;;) {
      const headers = Object.assign({}, opts.headers || {});
      const token = sessionStorage.getItem('sluice.token');
      if (token) headers.Authorization = 'Bearer ' + token;
      let body = opts.body;
      if (body !== undefined && typeof body !== 'string') { body = JSON.stringify(body); headers['Content-Type'] = 'application/json'; }
      const r = await fetch(path, { method: opts.method || 'GET', headers, body, signal: opts.signal, cache: 'no-store' });
      if (r.status === 401) { await askToken(token ? 'That token was not accepted (wrong, expired or revoked).' : null); continue; }
      if (!r.ok) throw await problemOf(r);
      return opts.raw ? r : r.json();
    }
  }
  const post = (path, body) => api(path, { method: 'POST', body: body || {} });

  // ---------------------------------------------------------------- token and role
  let tokenAsked = null;
  function askToken(why) {
    if (tokenAsked) return tokenAsked;
    tokenAsked = new Promise((resolve) => {
      const input = h('input', { type: 'password', id: 'token-input', autocomplete: 'off', placeholder: 'slc_…', spellcheck: 'false' });
      const done = () => {
        const v = input.value.trim();
        if (!v) return;
        sessionStorage.setItem('sluice.token', v);
        close();
        tokenAsked = null;
        loadMe().then(resolve, resolve);
      };
      const { close } = modal({
        title: 'An API token is needed',
        closable: false,
        body: [
          h('p', { class: 'muted' }, 'This Sluice API asks for a token. It is kept for this browser tab only (session storage) and sent with each request.'),
          why && h('p', { class: 'problem' }, why),
          h('label', { class: 'field' }, h('span', null, 'Token'), input),
          h('p', { class: 'small faint' }, 'Create one with ', h('code', null, 'dagctl tokens create --name NAME --role viewer'), '.'),
        ],
        buttons: [h('button', { class: 'primary', id: 'token-save', onclick: done }, 'Use token')],
      });
      input.addEventListener('keydown', (e) => { if (e.key === 'Enter') done(); });
      setTimeout(() => input.focus(), 0);
    });
    return tokenAsked;
  }
  const S = { role: 'admin', zones: {} };
  async function loadMe() {
    const me = await api('/api/v1/me');
    S.role = me.role;
    document.body.classList.toggle('viewer', me.role === 'viewer');
  }
  const canAct = () => S.role !== 'viewer';

  // ---------------------------------------------------------------- formatting
  const STATES = ['success', 'failed', 'running', 'queued', 'scheduled', 'up_for_retry', 'upstream_failed', 'skipped', 'removed', 'none'];
  const stateClass = (s) => 's-' + (STATES.includes(s) ? s : 'none');
  const words = (s) => String(s || 'none').replace(/_/g, ' ');
  const badge = (s) => h('span', { class: 'badge ' + stateClass(s), 'data-state': s }, words(s));
  const fmtCache = new Map();
  function zoneFmt(tz) {
    if (!fmtCache.has(tz)) {
      let f;
      try {
        f = new Intl.DateTimeFormat('en-GB', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'short' });
      } catch (_) {
        f = new Intl.DateTimeFormat('en-GB', { timeZone: 'UTC', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'short' });
      }
      fmtCache.set(tz, f);
    }
    return fmtCache.get(tz);
  }
  function inZone(iso, tz, seconds) {
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    const p = {};
    for (const part of zoneFmt(tz || 'UTC').formatToParts(d)) p[part.type] = part.value;
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}${seconds ? ':' + p.second : ''} ${p.timeZoneName || ''}`.trim();
  }
  const localTime = (iso) => { const d = new Date(iso); return isNaN(d) ? '' : d.toLocaleString() + ' (your time)'; };
  /** A time in the DAG's zone, with the viewer's local time on hover. */
  function when(iso, tz, seconds) {
    if (!iso) return h('span', { class: 'faint' }, '—');
    return h('time', { datetime: iso, title: localTime(iso) }, inZone(iso, tz, seconds));
  }
  function dur(ms) {
    if (ms == null) return '—';
    if (ms < 1000) return `${ms} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, '0')}s`;
    const hr = Math.floor(m / 60);
    if (hr < 48) return `${hr}h ${String(m % 60).padStart(2, '0')}m`;
    return `${Math.floor(hr / 24)}d ${hr % 24}h`;
  }
  const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  /** A cron expression in words, for the common shapes; null when it is not one of them. */
  function cronWords(expr) {
    if (!expr) return null;
    const at = { '@hourly': '0 * * * *', '@daily': '0 0 * * *', '@midnight': '0 0 * * *', '@weekly': '0 0 * * 0', '@monthly': '0 0 1 * *', '@yearly': '0 0 1 1 *', '@annually': '0 0 1 1 *' };
    let f = (at[expr.trim()] || expr).trim().split(/\s+/);
    if (f.length === 6) { if (f[0] !== '0') return null; f = f.slice(1); }
    if (f.length !== 5) return null;
    const [mi, ho, dom, mon, dow] = f;
    const num = (s) => /^\d+$/.test(s);
    const hhmm = () => `${ho.padStart(2, '0')}:${mi.padStart(2, '0')}`;
    if (mon !== '*') return null;
    if (/^\*\/\d+$/.test(mi) && ho === '*' && dom === '*' && dow === '*') return `every ${mi.slice(2)} minutes`;
    if (mi === '*' && ho === '*' && dom === '*' && dow === '*') return 'every minute';
    if (num(mi) && ho === '*' && dom === '*' && dow === '*') return `every hour at :${mi.padStart(2, '0')}`;
    if (num(mi) && /^\*\/\d+$/.test(ho) && dom === '*' && dow === '*') return `every ${ho.slice(2)} hours at :${mi.padStart(2, '0')}`;
    if (!num(mi) || !num(ho)) return null;
    if (dom === '*' && dow === '*') return `every day at ${hhmm()}`;
    if (dom === '*' && (dow === '1-5' || dow === 'MON-FRI')) return `weekdays at ${hhmm()}`;
    if (dom === '*' && /^[0-7](,[0-7])*$/.test(dow)) return `every ${dow.split(',').map((d) => DAYS[Number(d) % 7]).join(', ')} at ${hhmm()}`;
    if (num(dom) && dow === '*') return `monthly on day ${dom} at ${hhmm()}`;
    return null;
  }

  // ---------------------------------------------------------------- dialogs and toasts
  function modal({ title, body, buttons, closable = true, onclose }) {
    const prev = document.activeElement;
    const close = () => { back.remove(); document.removeEventListener('keydown', onKey, true); if (onclose) onclose(); if (prev && prev.focus) prev.focus(); };
    const onKey = (e) => { if (e.key === 'Escape' && closable) { e.stopPropagation(); close(); } };
    const dlg = h('div', { class: 'dialog', role: 'dialog', 'aria-modal': 'true', 'aria-label': title },
      h('header', null, h('h2', null, title), closable && h('button', { class: 'icon', 'aria-label': 'Close', onclick: () => close() }, '✕')),
      h('div', { class: 'body' }, body),
      h('footer', null, closable && h('button', { onclick: () => close(), 'data-cancel': '' }, 'Cancel'), buttons || []));
    const back = h('div', { class: 'backdrop' }, dlg);
    back.addEventListener('mousedown', (e) => { if (e.target === back && closable) close(); });
    document.addEventListener('keydown', onKey, true);
    document.body.append(back);
    const first = $('input, select, textarea, button.primary', dlg);
    if (first) setTimeout(() => first.focus(), 0);
    return { close, dlg };
  }
  function toast(text, bad) {
    const t = h('div', { class: 'toast' + (bad ? ' bad' : ''), role: 'status' }, text);
    $('#toasts').append(t);
    setTimeout(() => t.remove(), bad ? 9000 : 5000);
  }
  /**
   * An action with a preview: `fields` are the form, `preview()` asks the API what would
   * happen (a dry run) and returns what to show; `confirm()` does it. Nothing changes before
   * the Confirm button is pressed.
   */
  function actionDialog({ title, fields, preview, confirm, confirmText, danger }) {
    const box = h('div', { class: 'preview', id: 'preview' }, h('span', { class: 'none' }, 'Working out what this will do…'));
    const go = h('button', { class: 'primary' + (danger ? ' danger' : ''), id: 'confirm', disabled: true }, confirmText || 'Confirm');
    let seq = 0;
    const refresh = async () => {
      const mine = ++seq;
      go.disabled = true;
      try {
        const out = await preview();
        if (mine !== seq) return;
        put(box, ...[out].flat(Infinity).filter((k) => k != null && k !== false));
        go.disabled = false;
      } catch (e) {
        if (mine !== seq) return;
        put(box, h('span', { class: 'problem' }, e.message || String(e)));
      }
    };
    const { close, dlg } = modal({ title, body: [fields || [], box], buttons: [go] });
    let timer = null;
    for (const el of $$('input, select, textarea', dlg)) {
      el.addEventListener(el.tagName === 'SELECT' || el.type === 'checkbox' ? 'change' : 'input', () => { clearTimeout(timer); timer = setTimeout(refresh, 250); });
    }
    go.addEventListener('click', async () => {
      go.disabled = true;
      try {
        const msg = await confirm();
        close();
        if (msg) toast(msg);
      } catch (e) {
        put(box, h('span', { class: 'problem' }, e.message || String(e)));
        go.disabled = false;
      }
    });
    refresh();
  }
  const list = (items, empty) => (items.length ? h('ul', null, items.map((i) => h('li', null, i))) : h('div', { class: 'none' }, empty));
  const previewOf = (heading, items, empty) => [h('h4', null, heading), list(items, empty)];

  // ---------------------------------------------------------------- actions
  const runPath = (dag, run) => `/api/v1/dags/${enc(dag)}/runs/${enc(run)}`;
  function clearDialog(dagId, runId, task) {
    const down = h('input', { type: 'checkbox', id: 'opt-downstream', checked: !!task });
    const up = h('input', { type: 'checkbox', id: 'opt-upstream' });
    const failed = h('input', { type: 'checkbox', id: 'opt-failed', checked: !task });
    const body = () => ({ task: task || null, downstream: !!task && down.checked, upstream: !!task && up.checked, failed_only: failed.checked });
    actionDialog({
      title: task ? `Clear ${task}` : `Clear run ${runId}`,
      fields: [
        h('p', { class: 'muted' }, 'Cleared tasks run again; their earlier tries and logs are kept.'),
        h('div', { class: 'row' },
          task && h('label', { class: 'check' }, down, 'Downstream'),
          task && h('label', { class: 'check' }, up, 'Upstream'),
          h('label', { class: 'check' }, failed, 'Failed only')),
      ],
      preview: async () => {
        const r = await post(runPath(dagId, runId) + '/clear', Object.assign(body(), { dry_run: true }));
        return previewOf(`${r.tasks.length} task${r.tasks.length === 1 ? '' : 's'} will be cleared`, r.tasks.map((t) => h('code', null, t)), 'Nothing to clear with these options.');
      },
      confirm: async () => {
        const r = await post(runPath(dagId, runId) + '/clear', body());
        return `Cleared ${r.tasks.length} task${r.tasks.length === 1 ? '' : 's'} of ${runId}`;
      },
      confirmText: 'Clear',
    });
  }
  function markDialog(dagId, runId, task, state) {
    const body = { task: task || null, state };
    actionDialog({
      title: `Mark ${task || 'run ' + runId} ${state}`,
      fields: [h('p', { class: 'muted' }, task ? `Sets ${task} to ${state} by hand.` : `Sets every unfinished task, and the run, to ${state} by hand.`)],
      preview: async () => {
        const r = await post(runPath(dagId, runId) + '/mark', Object.assign({}, body, { dry_run: true }));
        const items = r.tasks.map((t) => h('code', null, t));
        return [previewOf(`${r.tasks.length} task${r.tasks.length === 1 ? '' : 's'} will be marked ${state}`, items, 'No task changes.'),
          r.run_state && h('p', null, 'The run becomes ', badge(r.run_state), '.')];
      },
      confirm: async () => { const r = await post(runPath(dagId, runId) + '/mark', body); return `Marked ${r.tasks.length} task(s) ${state}`; },
      confirmText: `Mark ${state}`,
      danger: state === 'failed',
    });
  }
  function pauseDialog(dag, paused, after) {
    const verb = paused ? 'Unpause' : 'Pause';
    actionDialog({
      title: `${verb} ${dag}`,
      preview: async () => [h('h4', null, 'What happens'), h('p', null, paused
        ? 'The scheduler starts creating runs at the next schedule tick (and catches up if the DAG says catchup).'
        : 'No new runs start; runs in flight finish. Triggers and backfills still create runs, which wait until it is unpaused.')],
      confirm: async () => { await post(`/api/v1/dags/${enc(dag)}/${paused ? 'unpause' : 'pause'}`); if (after) after(); return `${dag} ${paused ? 'unpaused' : 'paused'}`; },
      confirmText: verb,
    });
  }
  function paramInput(key, value) {
    const id = 'param-' + key;
    if (typeof value === 'boolean') return [h('label', { class: 'check' }, h('input', { type: 'checkbox', id, 'data-param': key, 'data-type': 'boolean', checked: value }), key)];
    if (typeof value === 'number') return h('label', { class: 'field' }, h('span', null, key, h('em', null, Number.isInteger(value) ? 'integer' : 'number')), h('input', { type: 'number', step: Number.isInteger(value) ? '1' : 'any', id, 'data-param': key, 'data-type': 'number', value: String(value) }));
    if (typeof value === 'string') return h('label', { class: 'field' }, h('span', null, key, h('em', null, 'string')), h('input', { type: 'text', id, 'data-param': key, 'data-type': 'string', value }));
    return h('label', { class: 'field' }, h('span', null, key, h('em', null, Array.isArray(value) ? 'list (JSON)' : 'JSON')), h('textarea', { id, 'data-param': key, 'data-type': 'json' }, JSON.stringify(value, null, 2)));
  }
  function readParams(root, defaults) {
    const conf = {};
    for (const el of $$('[data-param]', root)) {
      const k = el.dataset.param;
      let v;
      switch (el.dataset.type) {
        case 'boolean': v = el.checked; break;
        case 'number': if (el.value.trim() === '' || isNaN(Number(el.value))) throw new Error(`${k} must be a number`); v = Number(el.value); break;
        case 'string': v = el.value; break;
        default: try { v = JSON.parse(el.value); } catch (e) { throw new Error(`${k} is not valid JSON: ${e.message}`); }
      }
      if (JSON.stringify(v) !== JSON.stringify(defaults[k])) conf[k] = v;
    }
    return conf;
  }
  function triggerDialog(dag) {
    const params = dag.params || {};
    const form = h('div', { class: 'body-form' }, Object.entries(params).map(([k, v]) => paramInput(k, v)));
    const logical = h('input', { type: 'text', id: 'trigger-logical', placeholder: `now (or a date / time in ${dag.timezone})` });
    actionDialog({
      title: `Trigger ${dag.id}`,
      fields: [
        Object.keys(params).length ? h('div', null, h('h4', { class: 'faint small' }, 'PARAMS'), form) : h('p', { class: 'muted' }, 'This DAG has no [params].'),
        h('label', { class: 'field' }, h('span', null, 'Logical date', h('em', null, 'optional')), logical),
      ],
      preview: async () => {
        const conf = readParams(form, params);
        const changed = Object.keys(conf);
        return [h('h4', null, 'A manual run will be created'),
          h('p', null, 'Logical date: ', logical.value.trim() ? h('code', null, logical.value.trim()) : 'now', ` (${dag.timezone})`),
          changed.length ? [h('p', null, 'With conf (params changed from their defaults):'), h('pre', { class: 'mono' }, JSON.stringify(conf, null, 2))]
            : h('p', { class: 'muted' }, 'Every param keeps its default.')];
      },
      confirm: async () => {
        const conf = readParams(form, params);
        const body = { conf: Object.keys(conf).length ? conf : null };
        if (logical.value.trim()) body.logical_date = logical.value.trim();
        const t = await post(`/api/v1/dags/${enc(dag.id)}/runs`, body);
        navigate(`/dags/${enc(dag.id)}/runs/${enc(t.run.run_id)}`);
        return t.created ? `Triggered ${t.run.run_id}` : `Run ${t.run.run_id} already existed`;
      },
      confirmText: 'Trigger',
    });
  }
  function backfillDialog(dag) {
    const today = new Date().toISOString().slice(0, 10);
    const from = h('input', { type: 'date', id: 'backfill-from', value: today });
    const to = h('input', { type: 'date', id: 'backfill-to', value: today });
    const rerun = h('select', { id: 'backfill-rerun' }, h('option', { value: 'none' }, 'Leave existing runs alone'), h('option', { value: 'failed' }, 'Clear failed tasks of failed runs'), h('option', { value: 'all' }, 'Clear every task of existing runs'));
    const body = () => ({ from: from.value, to: to.value, rerun: rerun.value });
    const label = { create: 'create', leave_alone: 'leave alone', clear: 'clear' };
    actionDialog({
      title: `Backfill ${dag.id}`,
      fields: [
        h('p', { class: 'muted' }, `One run per schedule tick whose logical date is in the range, in the DAG's zone (${dag.timezone}).`),
        h('div', { class: 'row' }, h('label', { class: 'field' }, h('span', null, 'From'), from), h('label', { class: 'field' }, h('span', null, 'To (inclusive)'), to)),
        h('label', { class: 'field' }, h('span', null, 'Runs already there'), rerun),
      ],
      preview: async () => {
        if (!from.value || !to.value) throw new Error('Give both dates.');
        const r = await post(`/api/v1/dags/${enc(dag.id)}/backfill`, Object.assign(body(), { dry_run: true }));
        const creates = r.runs.filter((x) => x.action === 'create').length;
        return previewOf(`${r.runs.length} logical date${r.runs.length === 1 ? '' : 's'}: ${creates} new run${creates === 1 ? '' : 's'}`,
          r.runs.map((x) => h('span', { 'data-backfill': x.action }, h('code', null, x.ds), ' — ', label[x.action] || x.action, x.tasks ? ` (${x.tasks.join(', ')})` : '')),
          'No schedule tick falls in this range.');
      },
      confirm: async () => { const r = await post(`/api/v1/dags/${enc(dag.id)}/backfill`, body()); return `Backfill: ${r.runs.filter((x) => x.action !== 'leave_alone').length} run(s) created or cleared`; },
      confirmText: 'Backfill',
    });
  }
  function bulkDialog(dagId, runIds, what) {
    const label = what === 'clear' ? 'Clear' : `Mark ${what}`;
    const send = (dry) => Promise.all(runIds.map((id) => post(runPath(dagId, id) + (what === 'clear' ? '/clear' : '/mark'),
      what === 'clear' ? { failed_only: failedOnly.checked, dry_run: dry } : { state: what, dry_run: dry }).then((r) => [id, r])));
    const failedOnly = h('input', { type: 'checkbox', id: 'bulk-failed', checked: true });
    actionDialog({
      title: `${label}: ${runIds.length} run${runIds.length === 1 ? '' : 's'}`,
      fields: what === 'clear' ? [h('label', { class: 'check' }, failedOnly, 'Failed tasks only')] : [],
      preview: async () => {
        const out = await send(true);
        return previewOf('Per run', out.map(([id, r]) => [h('code', null, id), ': ', r.tasks.length ? r.tasks.join(', ') : h('span', { class: 'muted' }, 'nothing')]), 'Nothing selected.');
      },
      confirm: async () => { const out = await send(false); return `${label}: ${out.reduce((n, [, r]) => n + r.tasks.length, 0)} task(s) in ${out.length} run(s)`; },
      confirmText: label,
      danger: what === 'failed',
    });
  }

  // ---------------------------------------------------------------- live events
  const live = { listeners: new Set(), last: null };
  function setLive(on) {
    const el = $('#live');
    el.classList.toggle('on', on);
    el.classList.toggle('off', !on);
    $('#live-text').textContent = on ? 'live' : 'reconnecting';
  }
  function handleSse(block) {
    let data = '';
    let id = null;
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('data:')) data += line.slice(5).replace(/^ /, '') + '\n';
      else if (line.startsWith('id:')) id = line.slice(3).trim();
    }
    if (id && /^\d+$/.test(id)) live.last = Number(id);
    if (!data) return;
    let ev;
    try { ev = JSON.parse(data); } catch (_) { return; }
    for (const f of live.listeners) { try { f(ev); } catch (e) { console.error(e); } }
  }
  /** The event stream, read with fetch (so the token goes in a header), resumed after a drop. */
  let streamCtrl = null;
  async function streamEvents() {
    let delay = 500;
    for (;;) {
      const ctrl = new AbortController();
      streamCtrl = ctrl;
      try {
        const r = await api('/api/v1/events/stream' + (live.last != null ? '?after=' + live.last : ''), { raw: true, signal: ctrl.signal });
        setLive(true);
        delay = 500;
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i).replace(/^\r?\n\r?\n/, '');
            handleSse(block);
          }
        }
      } catch (_) { /* dropped: reconnect below */ }
      setLive(false);
      if (ctrl.signal.aborted) return;
      await sleep(delay);
      if (ctrl.signal.aborted) return;
      delay = Math.min(delay * 2, 8000);
    }
  }
  // A page put away (another page opened in the tab, or kept in the back-forward cache) lets
  // its stream go, so it holds none of the browser's few connections to the host; a page
  // shown again from that cache resumes it from the last event.
  addEventListener('pagehide', () => { if (streamCtrl) streamCtrl.abort(); });
  addEventListener('pageshow', (e) => { if (e.persisted) streamEvents(); });
  /** Calls `fn` at most every `ms` while events keep coming. */
  function throttle(fn, ms = 200) {
    let timer = null;
    return () => { if (!timer) timer = setTimeout(() => { timer = null; fn(); }, ms); };
  }

  // ---------------------------------------------------------------- router
  let view = { done: [] };
  function endView() {
    for (const f of view.done) { try { f(); } catch (_) { /* ignore */ } }
    view = { done: [] };
  }
  function onEvents(fn) { live.listeners.add(fn); view.done.push(() => live.listeners.delete(fn)); }
  function navigate(url, replace) {
    if (replace) history.replaceState(null, '', url);
    else history.pushState(null, '', url);
    render();
  }
  /** Changes the query string (a filter) without a new history entry; `null` removes a key. */
  function setQuery(changes, rerender = true) {
    const q = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(changes)) { if (v == null || v === '') q.delete(k); else q.set(k, v); }
    const s = q.toString();
    history.replaceState(null, '', location.pathname + (s ? '?' + s : ''));
    if (rerender) render();
  }
  function crumbs(items) {
    const nav = $('#crumbs');
    const out = [];
    items.forEach(([text, href], i) => {
      if (i) out.push(h('span', { class: 'sep' }, '/'));
      out.push(i === items.length - 1 ? h('span', { class: 'here' }, text) : h('a', { href, 'data-nav': '' }, text));
    });
    put(nav, ...out);
    document.title = items.length ? `${items[items.length - 1][0]} · Sluice` : 'Sluice';
  }
  const routes = [
    [/^\/$/, viewDags],
    [/^\/dags\/([^/]+)\/?$/, viewDag],
    [/^\/dags\/([^/]+)\/runs\/([^/]+)\/?$/, viewRun],
    [/^\/dags\/([^/]+)\/runs\/([^/]+)\/tasks\/([^/]+)\/?$/, viewTask],
  ];
  /** Draws the view the URL names; `body[data-ready]` says when it is drawn (tests wait for it). */
  async function render() {
    document.body.dataset.ready = '0';
    try { await draw(); } finally { document.body.dataset.ready = '1'; }
  }
  async function draw() {
    endView();
    const main = $('#main');
    const q = new URLSearchParams(location.search);
    for (const [re, fn] of routes) {
      const m = location.pathname.match(re);
      if (!m) continue;
      let args;
      try { args = m.slice(1).map(decodeURIComponent); } catch (_) { break; }
      try {
        await fn(main, q, ...args);
      } catch (e) {
        put(main, h('div', { class: 'panel' }, h('div', { class: 'empty-state' }, h('h2', null, e.status === 404 ? 'Not found' : 'Something went wrong'), h('p', null, e.message || String(e)), h('a', { href: '/', 'data-nav': '' }, 'Back to the DAGs'))));
      }
      return;
    }
    crumbs([['Not found', '']]);
    put(main, h('div', { class: 'panel' }, h('div', { class: 'empty-state' }, h('h2', null, 'No such page'), h('a', { href: '/', 'data-nav': '' }, 'Back to the DAGs'))));
  }

  // ---------------------------------------------------------------- view: DAG list
  async function viewDags(main, q) {
    crumbs([['DAGs', '/']]);
    const search = h('input', { type: 'search', id: 'search', 'data-search': '', placeholder: 'Search DAGs  ( / )', value: q.get('q') || '', 'aria-label': 'Search DAGs' });
    const status = h('select', { id: 'status', 'aria-label': 'Paused or active' }, h('option', { value: '' }, 'All DAGs'), h('option', { value: 'active' }, 'Active'), h('option', { value: 'paused' }, 'Paused'), h('option', { value: 'failing' }, 'Last run failed'));
    status.value = q.get('status') || '';
    const tagsBox = h('span', { class: 'tags' });
    const broken = h('div');
    const body = h('tbody');
    const count = h('span', { class: 'muted' });
    put(main, 
      broken,
      h('div', { class: 'page-head' }, h('div', { class: 'title' }, h('h1', null, 'DAGs', ' ', count))),
      h('div', { class: 'toolbar' }, search, status, tagsBox),
      h('div', { class: 'panel' }, h('table', { class: 'list', id: 'dag-list' },
        h('thead', null, h('tr', null, h('th', { class: 'act' }, ''), h('th', null, 'DAG'), h('th', null, 'Last 14 runs'), h('th', null, 'Schedule'), h('th', null, 'Next run'), h('th', null, 'Deadline'), h('th', null, 'Tasks'))),
        body)));
    let data = null;
    const draw = () => {
      const text = search.value.trim().toLowerCase();
      const tag = new URLSearchParams(location.search).get('tag');
      const st = status.value;
      const allTags = [...new Set(data.dags.flatMap((d) => d.tags))].sort();
      swap(tagsBox, allTags.map((t) => h('button', { class: 'tag' + (t === tag ? ' on' : ''), 'data-tag': t, 'aria-pressed': String(t === tag), onclick: () => setQuery({ tag: t === tag ? null : t }, false) || draw() }, t)));
      const rows = data.dags.filter((d) => (!text || d.id.toLowerCase().includes(text) || (d.description || '').toLowerCase().includes(text) || d.tags.some((t) => t.toLowerCase().includes(text)))
        && (!tag || d.tags.includes(tag))
        && (!st || (st === 'paused' ? d.paused : st === 'active' ? !d.paused : d.last_runs[0] && d.last_runs[0].state === 'failed')));
      count.textContent = `${rows.length}${rows.length !== data.dags.length ? ' of ' + data.dags.length : ''}`;
      swap(body, rows.length ? rows.map(dagRow) : h('tr', null, h('td', { colspan: '7' }, h('div', { class: 'empty-state' }, data.dags.length ? 'No DAG matches.' : 'No DAGs loaded: put DAG files in the DAG folder.'))));
      swap(broken, data.failed_files.length ? h('div', { class: 'notice bad', id: 'broken-files' },
        h('h3', null, `${data.failed_files.length} DAG file${data.failed_files.length === 1 ? '' : 's'} did not load`),
        h('ul', null, data.failed_files.flatMap((f) => f.errors.map((e) => h('li', { 'data-file': f.file },
          h('span', { class: 'file mono' }, f.file), e.line ? [' ', h('span', { class: 'loc mono' }, `line ${e.line}${e.column ? ':' + e.column : ''}`)] : '',
          e.task ? h('span', { class: 'muted' }, ` [tasks.${e.task}]`) : '', ': ', e.message))))) : null);
    };
    const dagRow = (d) => {
      const tz = d.timezone;
      const words = cronWords(d.schedule);
      const runs = d.last_runs.slice(0, 14).reverse();
      const dots = runs.map((r) => h('a', { class: stateClass(r.state), href: `/dags/${enc(d.id)}/runs/${enc(r.run_id)}`, 'data-nav': '', title: `${words2(r.state)} · ${inZone(r.logical_date, tz)}${r.deadline_missed ? ' · deadline missed' : ''}`, 'aria-label': `${r.state} run ${r.run_id}` }));
      while (dots.length < 14) dots.unshift(h('span', { class: 'empty' }));
      return h('tr', { class: d.paused ? 'paused-row' : '', 'data-dag': d.id, 'data-row-link': `/dags/${enc(d.id)}` },
        h('td', { class: 'act' }, h('button', { class: 'switch' + (d.paused ? ' paused' : ''), 'data-key': 'pause-' + d.id, 'aria-label': d.paused ? `Unpause ${d.id}` : `Pause ${d.id}`, 'aria-pressed': String(!d.paused), title: d.paused ? 'Paused: click to unpause' : 'Active: click to pause', onclick: () => pauseDialog(d.id, d.paused, reload) })),
        h('td', null, h('div', { class: 'dag-id' }, h('a', { href: `/dags/${enc(d.id)}`, 'data-nav': '', 'data-key': 'dag-' + d.id }, d.id),
          d.parse_error ? h('span', { class: 'warn-icon', title: `The file does not load now: ${d.parse_error}` }, '⚠') : null,
          d.schedule_error ? h('span', { class: 'warn-icon', title: d.schedule_error }, '⚠') : null),
          d.description ? h('div', { class: 'desc' }, d.description) : null,
          d.tags.length ? h('div', null, d.tags.map((t) => h('span', { class: 'tag small' }, t))) : null),
        h('td', null, h('div', { class: 'dots' }, dots)),
        h('td', { class: 'sched' }, d.schedule ? [h('div', null, words || 'cron'), h('code', null, d.schedule)] : h('span', { class: 'muted' }, 'manual only')),
        h('td', { class: 'nowrap' }, d.paused ? h('span', { class: 'muted' }, 'paused') : d.next_fire_time ? when(d.next_fire_time, tz) : h('span', { class: 'faint' }, '—')),
        h('td', null, d.deadline ? h('code', null, d.deadline) : h('span', { class: 'faint' }, '—')),
        h('td', { class: 'muted' }, String(d.tasks)));
    };
    const words2 = words;
    const reload = async () => { data = await api('/api/v1/dags?last=14'); draw(); };
    await reload();
    search.addEventListener('input', () => { setQuery({ q: search.value.trim() || null }, false); draw(); });
    status.addEventListener('change', () => { setQuery({ status: status.value || null }, false); draw(); });
    const again = throttle(() => reload().catch(() => {}), 300);
    onEvents((ev) => { if (/^(run_|dag_)/.test(ev.kind.type)) again(); });
  }

  // ---------------------------------------------------------------- view: a DAG
  const TABS = [['grid', 'Grid'], ['graph', 'Graph'], ['calendar', 'Calendar'], ['durations', 'Durations'], ['runs', 'Runs'], ['source', 'Source']];
  async function viewDag(main, q, dagId) {
    const dag = await api(`/api/v1/dags/${enc(dagId)}`);
    const tz = dag.timezone;
    S.zones[dag.id] = tz;
    crumbs([['DAGs', '/'], [dag.id, '']]);
    const tab = TABS.some(([t]) => t === q.get('tab')) ? q.get('tab') : 'grid';
    const words = cronWords(dag.schedule);
    const head = h('div', { class: 'page-head' },
      h('div', { class: 'title' },
        h('h1', null, dag.id),
        dag.description ? h('p', null, dag.description) : null,
        h('div', { class: 'facts' },
          h('div', null, h('span', { class: 'k' }, 'Schedule'), dag.schedule ? h('span', null, words || 'cron', ' ', h('code', { class: 'faint' }, dag.schedule)) : 'manual only'),
          h('div', null, h('span', { class: 'k' }, 'Time zone'), tz),
          h('div', null, h('span', { class: 'k' }, 'Next run'), dag.paused ? h('span', { class: 'muted' }, 'paused') : when(dag.next_fire_time, tz)),
          h('div', null, h('span', { class: 'k' }, 'Deadline'), dag.deadline || '—'),
          h('div', null, h('span', { class: 'k' }, 'Tasks'), String(dag.tasks.length)),
          h('div', null, h('span', { class: 'k' }, 'Max active runs'), String(dag.max_active_runs)),
          dag.tags.length ? h('div', null, h('span', { class: 'k' }, 'Tags'), h('span', null, dag.tags.map((t) => h('span', { class: 'tag' }, t)))) : null)),
      h('div', { class: 'actions act' },
        h('button', { class: 'switch' + (dag.paused ? ' paused' : ''), id: 'pause', 'aria-label': dag.paused ? 'Unpause' : 'Pause', title: dag.paused ? 'Paused: click to unpause' : 'Active: click to pause', onclick: () => pauseDialog(dag.id, dag.paused, render) }),
        h('span', { class: 'muted small' }, dag.paused ? 'Paused' : 'Active'),
        h('button', { id: 'trigger', onclick: () => triggerDialog(dag) }, '▶ Trigger'),
        dag.schedule ? h('button', { id: 'backfill', onclick: () => backfillDialog(dag) }, '⟲ Backfill') : null));
    const tabs = h('nav', { class: 'tabs', role: 'tablist' }, TABS.map(([t, label], i) => h('a', { href: `/dags/${enc(dag.id)}?tab=${t}`, 'data-nav': '', class: t === tab ? 'on' : '', role: 'tab', 'aria-selected': String(t === tab), id: 'tab-' + t, title: `${label} (${i + 1})` }, label)));
    const content = h('div', { id: 'tab-content' });
    put(main, 
      dag.parse_error ? h('div', { class: 'notice warn' }, h('h3', null, 'The DAG file does not load now'), h('div', { class: 'mono small' }, dag.parse_error), h('div', { class: 'small muted' }, 'The last good version is shown and keeps running.')) : null,
      head, h('div', { class: 'panel' }, tabs, content));
    view.tabKeys = TABS.map(([t]) => `/dags/${enc(dag.id)}?tab=${t}`);
    await ({ grid: tabGrid, graph: tabGraph, calendar: tabCalendar, durations: tabDurations, runs: tabRuns, source: tabSource })[tab](content, dag, q);
  }

  function runSizeSelect(q) {
    const n = q.get('runs') || '25';
    const sel = h('select', { id: 'grid-runs', 'aria-label': 'Runs shown' }, ['25', '50', '100', '200', '365'].map((v) => h('option', { value: v }, `${v} runs`)));
    sel.value = ['25', '50', '100', '200', '365'].includes(n) ? n : '25';
    sel.addEventListener('change', () => setQuery({ runs: sel.value === '25' ? null : sel.value }));
    return sel;
  }
  const LEGEND = ['success', 'failed', 'running', 'queued', 'up_for_retry', 'upstream_failed', 'skipped', 'scheduled', 'none'];
  const legend = () => h('div', { class: 'legend' }, LEGEND.map((s) => h('span', null, h('i', { class: stateClass(s) }), s === 'none' ? 'no status' : words(s))));

  async function tabGrid(content, dag, q) {
    const tz = dag.timezone;
    const n = Number(q.get('runs')) || 25;
    const box = h('div', { class: 'grid-wrap', 'data-scroll': 'grid' });
    const toolbar = h('div', { class: 'log-bar' }, runSizeSelect(q), h('span', { class: 'muted small' }, 'Runs left to right, oldest to newest; a cell opens the task. Arrow keys move between cells.'));
    put(content, toolbar, box, legend());
    const draw = async () => {
      const g = await api(`/api/v1/dags/${enc(dag.id)}/grid?runs=${Math.min(Math.max(n, 1), 365)}`);
      const runs = g.runs.map((r, i) => [r, i]).reverse();
      if (!runs.length) { swap(box, h('div', { class: 'empty-state', id: 'grid' }, 'No runs yet.', canAct() ? ' Trigger one above.' : '')); return; }
      const grid = h('div', { class: 'grid', id: 'grid', role: 'grid' });
      grid.style.gridTemplateColumns = `minmax(120px, max-content) repeat(${runs.length}, 16px)`;
      const maxMs = Math.max(1, ...runs.map(([r]) => (r.started_at && r.ended_at ? Date.parse(r.ended_at) - Date.parse(r.started_at) : 0)));
      grid.append(h('div', { class: 'task head' }, 'Runs'));
      runs.forEach(([r], c) => {
        const ms = r.started_at ? (r.ended_at ? Date.parse(r.ended_at) : Date.now()) - Date.parse(r.started_at) : 0;
        const bar = h('a', { class: 'runbar ' + stateClass(r.state), href: `/dags/${enc(dag.id)}/runs/${enc(r.run_id)}`, 'data-nav': '', 'data-run': r.run_id, 'data-r': '-1', 'data-c': String(c), 'data-key': `run-${r.run_id}`, title: `${r.run_id}\n${words(r.state)} · ${inZone(r.logical_date, tz)}${r.started_at && r.ended_at ? ' · ' + dur(ms) : ''}${r.deadline_missed ? '\ndeadline missed' : ''}`, 'aria-label': `run ${r.run_id}: ${r.state}` });
        bar.style.height = `${Math.round(8 + 40 * Math.min(1, ms / maxMs))}px`;
        grid.append(bar);
      });
      g.tasks.forEach((task, t) => {
        grid.append(h('div', { class: 'task mono', title: task }, task));
        runs.forEach(([r, i], c) => {
          const s = g.states[i][t];
          if (s == null) { grid.append(h('span', { class: 'cell s-none' })); return; }
          grid.append(h('a', {
            class: 'cell ' + stateClass(s), href: `/dags/${enc(dag.id)}/runs/${enc(r.run_id)}/tasks/${enc(task)}`, 'data-nav': '',
            'data-task': task, 'data-run': r.run_id, 'data-state': s, 'data-r': String(t), 'data-c': String(c), 'data-key': `cell-${t}-${r.run_id}`, role: 'gridcell',
            title: `${task}\n${words(s)} · try ${g.tries[i][t] || 0} · ${dur(g.durations_ms[i][t])}\n${inZone(r.logical_date, tz)}`,
          }));
        });
      });
      grid.addEventListener('keydown', (e) => {
        const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
        const m = moves[e.key];
        const at = e.target.dataset;
        if (!m || at.r == null) return;
        const next = $(`[data-r="${Number(at.r) + m[0]}"][data-c="${Number(at.c) + m[1]}"]`, grid);
        if (next) { e.preventDefault(); next.focus(); }
      });
      swap(box, grid);
      if (!view.scrolled) { box.scrollLeft = box.scrollWidth; view.scrolled = true; }
      // Once a page load, for the `ui` benchmark: the cells laid out (a forced layout), then
      // drawn (two animation frames later, once painted).
      if (!performance.getEntriesByName('sluice:grid-laid-out').length && grid.offsetHeight >= 0) {
        performance.mark('sluice:grid-laid-out');
        requestAnimationFrame(() => requestAnimationFrame(() => performance.mark('sluice:grid-drawn')));
      }
    };
    await draw();
    const again = throttle(() => draw().catch(() => {}), 250);
    onEvents((ev) => { if (ev.dag_id === dag.id) again(); });
  }

  async function tabGraph(content, dag) {
    const [g, grid] = await Promise.all([api(`/api/v1/dags/${enc(dag.id)}/graph`), api(`/api/v1/dags/${enc(dag.id)}/grid?runs=1`)]);
    const last = grid.runs[0];
    const stateOf = {};
    if (last) grid.tasks.forEach((t, i) => { stateOf[t] = grid.states[0][i]; });
    const pad = 20;
    const W = g.node_width;
    const H = g.node_height;
    const svg = h('svg:svg', { width: g.width + 2 * pad, height: g.height + 2 * pad, viewBox: `0 0 ${g.width + 2 * pad} ${g.height + 2 * pad}`, id: 'graph', role: 'img', 'aria-label': `Graph of ${dag.id}` },
      h('svg:defs', null, h('svg:marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '9', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' }, h('svg:path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }))));
    g.edges.forEach(([a, b], k) => {
      const p = g.nodes[a];
      const c = g.nodes[b];
      // Through the gaps of the columns an edge skips (the server's bends), so it never runs
      // under a box: curves between columns, straight across them.
      const pts = [[p.x + W, p.y + H / 2], ...((g.bends && g.bends[k]) || []), [c.x - 2, c.y + H / 2]].map(([x, y]) => [x + pad, y + pad]);
      let d = `M${pts[0][0]},${pts[0][1]}`;
      for (let i = 1; i < pts.length; i++) {
        const [x1, y1] = pts[i - 1];
        const [x2, y2] = pts[i];
        const mx = (x1 + x2) / 2;
        d += y1 === y2 ? ` L${x2},${y2}` : ` C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
      }
      svg.append(h('svg:path', { class: 'edge', d, 'marker-end': 'url(#arrow)' }));
    });
    g.nodes.forEach((n, i) => {
      const s = stateOf[n.task];
      const label = n.task.length > 24 ? n.task.slice(0, 23) + '…' : n.task;
      const node = h('svg:g', { class: 'node ' + stateClass(s || 'none'), transform: `translate(${n.x + pad},${n.y + pad})`, 'data-task': n.task },
        h('svg:title', null, `${n.task} (${g.operators[i]})${s ? ' · ' + words(s) : ''}`),
        h('svg:rect', { class: 'box', width: W, height: H, rx: '6' }),
        h('svg:rect', { class: 'bar', width: '5', height: H, rx: '2' }),
        h('svg:text', { x: '14', y: '15' }, label),
        h('svg:text', { x: '14', y: '28', class: 'op' }, g.operators[i] + (s ? ' · ' + words(s) : '')));
      svg.append(last ? h('svg:a', { href: `/dags/${enc(dag.id)}/runs/${enc(last.run_id)}/tasks/${enc(n.task)}`, 'data-nav': '' }, node) : node);
    });
    put(content, h('div', { class: 'log-bar' }, h('span', { class: 'muted small' }, last ? ['Colours: the latest run, ', h('code', null, last.run_id)] : 'No runs yet.', ` · ${g.nodes.length} tasks, ${g.edges.length} edges, laid out on the server`)),
      h('div', { class: 'svg-wrap', 'data-scroll': 'graph' }, svg), legend());
  }

  async function tabCalendar(content, dag, q) {
    const tz = dag.timezone;
    const thisYear = Number(inZone(new Date().toISOString(), tz).slice(0, 4));
    const year = Number(q.get('year')) || thisYear;
    const cal = await api(`/api/v1/dags/${enc(dag.id)}/calendar?year=${year}`);
    const byDate = new Map(cal.days.map((d) => [d.date, d]));
    const cell = 13;
    const gap = 3;
    const left = 34;
    const top = 22;
    const jan1 = new Date(Date.UTC(year, 0, 1));
    const offset = (jan1.getUTCDay() + 6) % 7;
    const days = (Date.UTC(year + 1, 0, 1) - jan1.getTime()) / 86400000;
    const svg = h('svg:svg', { width: left + 54 * (cell + gap), height: top + 7 * (cell + gap) + 4, id: 'calendar', role: 'img', 'aria-label': `Runs of ${year}` });
    ['Mon', '', 'Wed', '', 'Fri', '', ''].forEach((d, i) => d && svg.append(h('svg:text', { x: '0', y: top + i * (cell + gap) + 10, class: 'axis-label' }, d)));
    for (let i = 0; i < days; i++) {
      const d = new Date(jan1.getTime() + i * 86400000);
      const iso = d.toISOString().slice(0, 10);
      const col = Math.floor((i + offset) / 7);
      const row = (i + offset) % 7;
      if (d.getUTCDate() === 1) svg.append(h('svg:text', { x: left + col * (cell + gap), y: '12', class: 'axis-label' }, MONTHS[d.getUTCMonth()]));
      const day = byDate.get(iso);
      const rect = h('svg:rect', { x: left + col * (cell + gap), y: top + row * (cell + gap), width: cell, height: cell, rx: '2', class: day ? 'cal ' + stateClass(day.state) : 'cal-empty', 'data-date': iso, 'data-state': day ? day.state : '' },
        h('svg:title', null, day ? `${iso}: ${day.runs} run${day.runs === 1 ? '' : 's'}${day.failed ? `, ${day.failed} failed` : ''}${day.active ? `, ${day.active} unfinished` : ''}` : `${iso}: no run`));
      svg.append(day ? h('svg:a', { href: `/dags/${enc(dag.id)}?tab=runs&from=${iso}&to=${iso}`, 'data-nav': '' }, rect) : rect);
    }
    const total = cal.days.reduce((n, d) => n + d.runs, 0);
    const failed = cal.days.reduce((n, d) => n + d.failed, 0);
    put(content, 
      h('div', { class: 'log-bar' },
        h('button', { id: 'year-prev', onclick: () => setQuery({ year: String(year - 1) }) }, '‹'),
        h('strong', null, String(year)),
        h('button', { id: 'year-next', onclick: () => setQuery({ year: String(year + 1) }) }, '›'),
        h('span', { class: 'muted small' }, `${total} runs on ${cal.days.length} days, ${failed} failed · logical dates in ${tz}`)),
      h('div', { class: 'svg-wrap', 'data-scroll': 'cal' }, svg), legend());
  }

  async function tabDurations(content, dag, q) {
    const n = Number(q.get('runs')) || 25;
    const g = await api(`/api/v1/dags/${enc(dag.id)}/grid?runs=${Math.min(Math.max(n, 1), 365)}`);
    const runs = g.runs.map((r, i) => i).reverse();
    const bw = Math.max(3, Math.min(12, Math.floor(560 / Math.max(1, runs.length))));
    const rows = g.tasks.map((task, t) => {
      const vals = runs.map((i) => [g.durations_ms[i][t], g.states[i][t], g.runs[i]]);
      const known = vals.map((v) => v[0]).filter((v) => v != null).sort((a, b) => a - b);
      const max = known.length ? known[known.length - 1] : 0;
      const median = known.length ? known[Math.floor(known.length / 2)] : null;
      const height = 28;
      const svg = h('svg:svg', { width: runs.length * bw, height, class: 'spark' });
      vals.forEach(([ms, s, r], x) => {
        if (ms == null) return;
        const bh = Math.max(1, Math.round((height - 2) * (max ? ms / max : 0)));
        svg.append(h('svg:rect', { x: x * bw, y: height - bh, width: bw - 1, height: bh, class: 'durbar ' + stateClass(s) }, h('svg:title', null, `${r.run_id}: ${dur(ms)} (${words(s)})`)));
      });
      return h('tr', null, h('td', { class: 'mono' }, task), h('td', { class: 'nowrap' }, dur(median)), h('td', { class: 'nowrap' }, dur(known.length ? max : null)), h('td', null, svg));
    });
    put(content, h('div', { class: 'log-bar' }, runSizeSelect(q), h('span', { class: 'muted small' }, 'Each task\'s duration in the last runs, oldest to newest; bar colour is the task\'s state.')),
      h('div', { class: 'grid-wrap' }, h('table', { class: 'tbl', id: 'durations' }, h('thead', null, h('tr', null, h('th', null, 'Task'), h('th', null, 'Median'), h('th', null, 'Max'), h('th', null, 'Last runs'))), h('tbody', null, rows))));
  }

  async function tabRuns(content, dag, q) {
    const tz = dag.timezone;
    const state = h('select', { id: 'runs-state', 'aria-label': 'Run state' }, h('option', { value: '' }, 'Any state'), ['failed', 'running', 'queued', 'success'].map((s) => h('option', { value: s }, s)));
    state.value = q.get('state') || '';
    state.addEventListener('change', () => setQuery({ state: state.value || null, cursor: null }));
    const params = new URLSearchParams({ limit: '50', count: 'true' });
    for (const k of ['state', 'from', 'to', 'cursor', 'kind']) if (q.get(k)) params.set(k, q.get(k));
    const page = await api(`/api/v1/dags/${enc(dag.id)}/runs?${params}`);
    const selected = new Set();
    const bulk = h('span', { class: 'actions act' });
    const drawBulk = () => {
      const ids = [...selected];
      swap(bulk, h('span', { class: 'muted small' }, `${ids.length} selected`),
        h('button', { id: 'bulk-clear', disabled: !ids.length, onclick: () => bulkDialog(dag.id, ids, 'clear') }, 'Clear'),
        h('button', { id: 'bulk-success', disabled: !ids.length, onclick: () => bulkDialog(dag.id, ids, 'success') }, 'Mark success'),
        h('button', { id: 'bulk-failed', class: 'danger', disabled: !ids.length, onclick: () => bulkDialog(dag.id, ids, 'failed') }, 'Mark failed'));
    };
    const all = h('input', { type: 'checkbox', id: 'select-all', 'aria-label': 'Select every run of the page', class: 'act' });
    const boxes = [];
    all.addEventListener('change', () => { for (const b of boxes) { b.checked = all.checked; b.dispatchEvent(new Event('change')); } });
    const rows = page.runs.map((r) => {
      const box = h('input', { type: 'checkbox', class: 'act', 'data-run': r.run_id, 'aria-label': `Select ${r.run_id}` });
      box.addEventListener('change', () => { if (box.checked) selected.add(r.run_id); else selected.delete(r.run_id); drawBulk(); });
      boxes.push(box);
      return h('tr', { 'data-run': r.run_id }, h('td', { class: 'act' }, box),
        h('td', null, h('a', { href: `/dags/${enc(dag.id)}/runs/${enc(r.run_id)}`, 'data-nav': '', class: 'mono' }, r.run_id)),
        h('td', null, badge(r.state)), h('td', null, r.kind), h('td', { class: 'nowrap' }, when(r.logical_date, tz)),
        h('td', { class: 'nowrap' }, when(r.started_at, tz)), h('td', null, dur(r.duration_ms)),
        h('td', null, r.deadline ? (r.deadline_missed ? h('span', { class: 'badge s-failed' }, 'missed') : h('span', { class: 'badge s-success' }, 'met')) : h('span', { class: 'faint' }, '—')));
    });
    drawBulk();
    const filters = [q.get('from') && `from ${q.get('from')}`, q.get('to') && `to ${q.get('to')}`].filter(Boolean);
    put(content, 
      h('div', { class: 'log-bar' }, state, filters.length ? h('span', { class: 'tag on', onclick: () => setQuery({ from: null, to: null }) }, filters.join(' '), ' ✕') : null,
        h('span', { class: 'muted small' }, page.count != null ? `${page.count}${page.count_capped ? '+' : ''} runs` : ''), h('span', { class: 'spacer' }), bulk),
      h('div', { class: 'grid-wrap' }, page.runs.length ? h('table', { class: 'tbl', id: 'runs' },
        h('thead', null, h('tr', null, h('th', { class: 'act' }, all), h('th', null, 'Run'), h('th', null, 'State'), h('th', null, 'Kind'), h('th', null, 'Logical date'), h('th', null, 'Started'), h('th', null, 'Duration'), h('th', null, 'Deadline'))),
        h('tbody', null, rows)) : h('div', { class: 'empty-state' }, 'No runs match.')),
      page.next_cursor ? h('div', { class: 'log-bar' }, h('button', { onclick: () => setQuery({ cursor: page.next_cursor }) }, 'Older runs →')) : null);
    const again = throttle(() => { if (!selected.size) render(); }, 1000);
    onEvents((ev) => { if (ev.dag_id === dag.id && /^run_/.test(ev.kind.type)) again(); });
  }

  async function tabSource(content, dag) {
    const lines = (dag.source || '').split('\n');
    if (lines.length && lines[lines.length - 1] === '') lines.pop();
    const state = dag.parse_error
      ? h('div', { class: 'notice bad', id: 'validation' }, h('h3', null, 'Invalid: the file on disk does not load'), h('div', { class: 'mono small' }, dag.parse_error), h('div', { class: 'small muted' }, 'Below is the last version that loaded, which the scheduler still runs.'))
      : h('div', { class: 'notice ok', id: 'validation' }, h('h3', null, 'Valid'), h('div', { class: 'small' }, `Loaded from `, h('code', null, dag.file), ` · ${dag.tasks.length} tasks`));
    put(content, h('div', { class: 'panel-body' }, state), h('pre', { class: 'code', id: 'source' }, lines.map((l) => h('span', { class: 'ln' }, l || ' '))));
  }

  // ---------------------------------------------------------------- view: a run
  const CONSOLE_PATHS = {
    cluster_id: (id, r) => `/emr/home${r}#/clusterDetails/${enc(id)}`,
    crawler: (id, r) => `/glue/home${r}#/v2/data-catalog/crawlers/view/${enc(id)}`,
    query_execution_id: (id, r) => `/athena/home${r}#/query-editor/history/${enc(id)}`,
  };
  /** External ids as text, with links to the AWS console where there is a page for one. */
  function externalIds(ids, fallbackRegion) {
    const entries = Object.entries(ids || {}).filter(([k]) => !['client_token', 'query_token', 'previous_crawl_start'].includes(k));
    if (!entries.length) return h('span', { class: 'faint' }, '—');
    const region = (typeof ids.region === 'string' && /^[a-z0-9-]+$/.test(ids.region)) ? ids.region : fallbackRegion;
    const host = `https://${region ? region + '.' : ''}console.aws.amazon.com`;
    const r = region ? `?region=${region}` : '';
    const link = (text, path) => h('a', { href: host + path, target: '_blank', rel: 'noopener noreferrer', class: 'mono' }, text);
    return h('div', { class: 'ext' }, entries.map(([k, v]) => {
      let shown;
      if (CONSOLE_PATHS[k] && typeof v === 'string') shown = link(v, CONSOLE_PATHS[k](v, r));
      else if (k === 'step_ids' && Array.isArray(v) && typeof ids.cluster_id === 'string') shown = v.map((s, i) => [i ? ', ' : '', link(String(s), `/emr/home${r}#/clusterDetails/${enc(ids.cluster_id)}/steps`)]);
      else if (k === 'job_run_id' && typeof v === 'string' && typeof ids.application_id === 'string') shown = link(v, `/emr/home${r}#/serverless/applications/${enc(ids.application_id)}/job-runs/${enc(v)}`);
      else if (k === 'job_run_id' && typeof v === 'string' && typeof ids.job_name === 'string' && !('application_id' in ids)) shown = link(v, `/gluestudio/home${r}#/job/${enc(ids.job_name)}/run/${enc(v)}`);
      else shown = h('span', { class: 'mono' }, typeof v === 'string' ? v : JSON.stringify(v));
      return h('span', null, h('span', { class: 'k' }, k, ': '), shown);
    }));
  }

  function gantt(tasks, run, tz) {
    const tries = tasks.flatMap((t) => t.tries.map((x) => [t, x]));
    if (!tries.length) return h('div', { class: 'empty-state' }, 'No try has started yet.');
    const now = Date.now();
    const t0 = Math.min(...tries.map(([, x]) => Date.parse(x.started_at)), run.started_at ? Date.parse(run.started_at) : Infinity);
    const t1 = Math.max(...tries.map(([, x]) => (x.ended_at ? Date.parse(x.ended_at) : now)), t0 + 1000);
    const labelW = 180;
    const width = 900;
    const rowH = 24;
    const span = t1 - t0;
    const x = (t) => labelW + ((t - t0) / span) * (width - labelW - 10);
    const rows = tasks.filter((t) => t.tries.length);
    const svg = h('svg:svg', { width, height: rows.length * rowH + 30, id: 'gantt', role: 'img', 'aria-label': 'Gantt chart of the tries' });
    for (let i = 0; i <= 4; i++) {
      const t = t0 + (span * i) / 4;
      svg.append(h('svg:line', { x1: x(t), x2: x(t), y1: '0', y2: rows.length * rowH + 6, class: 'axis' }));
      // The start time sits under the task names, ending where the chart starts, clear of the next tick's label.
      svg.append(h('svg:text', { x: i === 0 ? x(t) - 6 : x(t), y: rows.length * rowH + 22, class: 'axis-label', 'text-anchor': i === 0 ? 'end' : i === 4 ? 'end' : 'middle' }, i === 0 ? inZone(new Date(t).toISOString(), tz, true) : '+' + dur(t - t0)));
    }
    rows.forEach((t, i) => {
      const y = i * rowH + 4;
      svg.append(h('svg:text', { x: '0', y: y + 14, class: 'row-label' }, t.task_id.length > 24 ? t.task_id.slice(0, 23) + '…' : t.task_id));
      let prevEnd = null;
      for (const tr of t.tries) {
        const s = Date.parse(tr.started_at);
        const e = tr.ended_at ? Date.parse(tr.ended_at) : now;
        if (prevEnd != null && s > prevEnd) svg.append(h('svg:rect', { x: x(prevEnd), y: y + 6, width: Math.max(1, x(s) - x(prevEnd)), height: 6, class: 'waiting s-up_for_retry' }, h('svg:title', null, `waiting for retry: ${dur(s - prevEnd)}`)));
        const bar = h('svg:rect', { x: x(s), y, width: Math.max(2, x(e) - x(s)), height: 18, rx: '3', class: 'try ' + stateClass(tr.state), 'data-task': t.task_id, 'data-try': String(tr.try_number) },
          h('svg:title', null, `${t.task_id} try ${tr.try_number}: ${words(tr.state)} · ${dur(tr.duration_ms != null ? tr.duration_ms : e - s)}\n${inZone(tr.started_at, tz, true)}`));
        svg.append(h('svg:a', { href: `${location.pathname}/tasks/${enc(t.task_id)}?try=${tr.try_number}`, 'data-nav': '' }, bar));
        prevEnd = e;
      }
    });
    return svg;
  }

  async function viewRun(main, q, dagId, runId) {
    const load = () => Promise.all([api(runPath(dagId, runId)), api(runPath(dagId, runId) + '/tasks'), S.zones[dagId] ? null : api(`/api/v1/dags/${enc(dagId)}`)]);
    let [run, tasks, dag] = await load();
    if (dag) S.zones[dagId] = dag.timezone;
    const tz = S.zones[dagId] || 'UTC';
    crumbs([['DAGs', '/'], [dagId, `/dags/${enc(dagId)}`], [runId, '']]);
    const head = h('div');
    const chart = h('div', { class: 'svg-wrap', 'data-scroll': 'gantt' });
    const table = h('div', { class: 'grid-wrap' });
    put(main, head, h('div', { class: 'panel' }, h('div', { class: 'panel-body' }, h('h2', null, 'Tries')), chart), h('div', { class: 'panel' }, h('div', { class: 'panel-body' }, h('h2', null, 'Tasks')), table));
    const draw = () => {
      const deadline = run.deadline ? [when(run.deadline, tz), ' ', run.deadline_missed ? h('span', { class: 'badge s-failed' }, 'missed') : run.ended_at ? h('span', { class: 'badge s-success' }, 'met') : h('span', { class: 'badge s-queued' }, 'pending')] : '—';
      swap(head, h('div', { class: 'page-head' },
        h('div', { class: 'title' }, h('h1', { class: 'mono' }, run.run_id, ' ', badge(run.state)),
          h('div', { class: 'facts' },
            h('div', null, h('span', { class: 'k' }, 'Logical date'), when(run.logical_date, tz)),
            h('div', null, h('span', { class: 'k' }, 'Kind'), run.kind),
            h('div', null, h('span', { class: 'k' }, 'Data interval'), h('span', null, when(run.data_interval_start, tz), ' → ', when(run.data_interval_end, tz))),
            h('div', null, h('span', { class: 'k' }, 'Started'), when(run.started_at, tz, true)),
            h('div', null, h('span', { class: 'k' }, 'Ended'), when(run.ended_at, tz, true)),
            h('div', null, h('span', { class: 'k' }, 'Duration'), dur(run.duration_ms)),
            h('div', { id: 'deadline' }, h('span', { class: 'k' }, 'Deadline'), h('span', null, deadline)))),
        h('div', { class: 'actions act' },
          h('button', { id: 'run-clear', onclick: () => clearDialog(dagId, runId, null) }, '⟲ Clear'),
          h('button', { id: 'run-success', onclick: () => markDialog(dagId, runId, null, 'success') }, 'Mark success'),
          h('button', { id: 'run-failed', class: 'danger', onclick: () => markDialog(dagId, runId, null, 'failed') }, 'Mark failed'))),
      run.conf && Object.keys(run.conf).length ? h('div', { class: 'panel' }, h('div', { class: 'panel-body' }, h('h2', null, 'Conf'), h('pre', { class: 'mono', id: 'conf' }, JSON.stringify(run.conf, null, 2)))) : null);
      swap(chart, gantt(tasks, run, tz));
      swap(table, h('table', { class: 'tbl', id: 'tasks' },
        h('thead', null, h('tr', null, h('th', null, 'Task'), h('th', null, 'State'), h('th', null, 'Tries'), h('th', null, 'Started'), h('th', null, 'Duration'), h('th', null, 'External ids'), h('th', { class: 'act' }, ''))),
        h('tbody', null, tasks.map((t) => {
          const lastTry = t.tries.length ? t.tries[t.tries.length - 1] : null;
          return h('tr', { 'data-task': t.task_id, 'data-row-link': `${location.pathname}/tasks/${enc(t.task_id)}` },
            h('td', null, h('a', { href: `${location.pathname}/tasks/${enc(t.task_id)}`, 'data-nav': '', class: 'mono', 'data-key': 'task-' + t.task_id }, t.task_id)),
            h('td', null, badge(t.state), t.next_try_at ? h('div', { class: 'small muted' }, 'next try ', when(t.next_try_at, tz)) : null),
            h('td', null, `${t.try_number} / ${t.max_tries}`),
            h('td', { class: 'nowrap' }, when(t.started_at, tz, true)),
            h('td', null, dur(t.duration_ms)),
            h('td', null, externalIds(lastTry && lastTry.external_ids)),
            h('td', { class: 'act nowrap' }, h('button', { class: 'small', 'data-key': 'clear-' + t.task_id, onclick: () => clearDialog(dagId, runId, t.task_id) }, 'Clear'), ' ',
              h('button', { class: 'small', onclick: () => markDialog(dagId, runId, t.task_id, 'success') }, '✓'), ' ',
              h('button', { class: 'small danger', onclick: () => markDialog(dagId, runId, t.task_id, 'failed') }, '✕')));
        }))));
    };
    draw();
    const again = throttle(async () => { try { [run, tasks] = await load(); draw(); } catch (_) { /* next event retries */ } }, 250);
    onEvents((ev) => { if (ev.dag_id === dagId && ev.run_id === runId) again(); });
    const tick = setInterval(() => { if (run.state === 'running') swap(chart, gantt(tasks, run, tz)); }, 2000);
    view.done.push(() => clearInterval(tick));
  }

  // ---------------------------------------------------------------- view: a task's tries and log
  async function viewTask(main, q, dagId, runId, taskId) {
    const base = runPath(dagId, runId);
    const load = () => Promise.all([api(`${base}/tasks`), S.zones[dagId] ? null : api(`/api/v1/dags/${enc(dagId)}`)]);
    let [tasks, dag] = await load();
    if (dag) S.zones[dagId] = dag.timezone;
    const tz = S.zones[dagId] || 'UTC';
    let ti = tasks.find((t) => t.task_id === taskId);
    if (!ti) throw new ApiError(404, `run ${runId} has no task ${taskId}`);
    const pinned = q.get('try') ? Number(q.get('try')) : null;
    let tryNo = pinned || (ti.tries.length ? ti.tries[ti.tries.length - 1].try_number : null);
    crumbs([['DAGs', '/'], [dagId, `/dags/${enc(dagId)}`], [runId, `/dags/${enc(dagId)}/runs/${enc(runId)}`], [taskId, '']]);
    const head = h('div');
    const logBox = h('pre', { class: 'log', id: 'log', 'data-scroll': 'log', tabindex: '0', 'aria-label': 'Log' });
    const search = h('input', { type: 'search', id: 'log-search', 'data-search': '', placeholder: 'Search the log  ( / )', value: q.get('q') || '', 'aria-label': 'Search the log' });
    const only = h('input', { type: 'checkbox', id: 'log-only', checked: q.get('only') === '1' });
    const status = h('span', { id: 'log-status' });
    const hits = h('span', { class: 'muted small', id: 'log-hits' });
    const download = h('button', { id: 'log-download' }, '↓ Download');
    const renderedBox = h('div', { class: 'panel', id: 'rendered-panel' });
    put(main, head, h('div', { class: 'panel' },
      h('div', { class: 'log-bar' }, h('strong', null, 'Log'), status, h('span', { class: 'spacer' }), search, h('label', { class: 'check small' }, only, 'Matching lines only'), hits, download),
      logBox), renderedBox);
    // The task's keys as its templates render for this run (what `dagctl render` shows).
    const drawRendered = async () => {
      let body;
      try {
        const r = await api(`${base}/tasks/${enc(taskId)}/rendered`);
        body = [h('div', { class: 'small muted' }, `The ${r.operator} task's keys as the templates produce them for this run (with the DAG as loaded now).`),
          r.error ? h('div', { class: 'error-box', id: 'rendered-error' }, r.error) : h('pre', { class: 'mono', id: 'rendered' }, JSON.stringify(r.keys, null, 2))];
      } catch (e) { body = h('span', { class: 'problem' }, e.message || String(e)); }
      swap(renderedBox, h('div', { class: 'panel-body' }, h('h2', null, 'Rendered keys'), body));
    };
    drawRendered();
    let text = '';
    const drawLog = () => {
      const needle = search.value;
      const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 30;
      if (!needle) { logBox.textContent = text; hits.textContent = ''; }
      else {
        const lower = needle.toLowerCase();
        let lines = text.split('\n');
        if (only.checked) lines = lines.filter((l) => l.toLowerCase().includes(lower));
        const out = [];
        let n = 0;
        for (const line of lines) {
          let i = 0;
          const ll = line.toLowerCase();
          for (;;) {
            const j = ll.indexOf(lower, i);
            if (j < 0) { out.push(line.slice(i)); break; }
            out.push(line.slice(i, j), h('mark', null, line.slice(j, j + needle.length)));
            n++;
            i = j + needle.length;
          }
          out.push('\n');
        }
        put(logBox, ...out);
        hits.textContent = `${n} match${n === 1 ? '' : 'es'}`;
      }
      if (atBottom) logBox.scrollTop = logBox.scrollHeight;
    };
    const redraw = throttle(drawLog, 150);
    search.addEventListener('input', () => { setQuery({ q: search.value || null }, false); drawLog(); });
    only.addEventListener('change', () => { setQuery({ only: only.checked ? '1' : null }, false); drawLog(); });
    download.addEventListener('click', async () => {
      if (!tryNo) return;
      const r = await api(`${base}/tasks/${enc(taskId)}/tries/${tryNo}/log`, { raw: true });
      const url = URL.createObjectURL(await r.blob());
      const a = h('a', { href: url, download: `${dagId}__${runId}__${taskId}__${tryNo}.log`.replace(/[^\w.+-]+/g, '_') });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 5000);
    });
    let following = null;
    const follow = async (n, running) => {
      if (following) following.abort();
      const ctrl = new AbortController();
      following = ctrl;
      text = '';
      drawLog();
      if (!n) { put(status, h('span', { class: 'muted small' }, 'No try has started yet.')); return; }
      put(status, running ? h('span', { class: 'following', id: 'following' }, 'following live') : h('span', { class: 'muted small' }, `try ${n}`));
      try {
        const r = await api(`${base}/tasks/${enc(taskId)}/tries/${n}/log${running ? '?follow=true' : ''}`, { raw: true, signal: ctrl.signal });
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          text += dec.decode(value, { stream: true });
          redraw();
        }
        text += dec.decode();
        drawLog();
      } catch (e) {
        if (ctrl.signal.aborted) return;
        put(status, h('span', { class: 'problem' }, e.message || String(e)));
        return;
      }
      if (following === ctrl) { put(status, h('span', { class: 'muted small' }, `try ${n} · ended`)); if (running) again(); }
    };
    view.done.push(() => { if (following) following.abort(); });
    const draw = () => {
      const tr = ti.tries.find((x) => x.try_number === tryNo);
      swap(head, h('div', { class: 'page-head' },
        h('div', { class: 'title' }, h('h1', { class: 'mono' }, taskId, ' ', h('span', { id: 'task-state' }, badge(ti.state))),
          h('div', { class: 'facts' },
            h('div', null, h('span', { class: 'k' }, 'Run'), h('a', { href: `/dags/${enc(dagId)}/runs/${enc(runId)}`, 'data-nav': '', class: 'mono' }, runId)),
            h('div', null, h('span', { class: 'k' }, 'Tries'), `${ti.try_number} of ${ti.max_tries}`),
            tr ? [h('div', null, h('span', { class: 'k' }, 'Started'), when(tr.started_at, tz, true)),
              h('div', null, h('span', { class: 'k' }, 'Ended'), when(tr.ended_at, tz, true)),
              h('div', null, h('span', { class: 'k' }, 'Duration'), dur(tr.duration_ms))] : null,
            ti.next_try_at ? h('div', null, h('span', { class: 'k' }, 'Next try'), when(ti.next_try_at, tz, true)) : null),
          ti.tries.length > 1 ? h('div', { class: 'tries', id: 'tries' }, ti.tries.map((x) => h('a', { href: `${location.pathname}?try=${x.try_number}`, 'data-nav': '', class: (x.try_number === tryNo ? 'on ' : '') + stateClass(x.state), 'data-try': String(x.try_number) }, h('i'), `Try ${x.try_number}`))) : null),
        h('div', { class: 'actions act' },
          h('button', { id: 'task-clear', onclick: () => clearDialog(dagId, runId, taskId) }, '⟲ Clear'),
          h('button', { id: 'task-success', onclick: () => markDialog(dagId, runId, taskId, 'success') }, 'Mark success'),
          h('button', { id: 'task-failed', class: 'danger', onclick: () => markDialog(dagId, runId, taskId, 'failed') }, 'Mark failed'))),
      tr && tr.error ? h('div', { class: 'panel' }, h('div', { class: 'panel-body' }, h('h2', null, 'Error'), h('div', { class: 'error-box', id: 'try-error' }, tr.error))) : null,
      tr && Object.keys(tr.external_ids || {}).length ? h('div', { class: 'panel' }, h('div', { class: 'panel-body' }, h('h2', null, 'External ids'), externalIds(tr.external_ids))) : null);
    };
    draw();
    const current = () => ti.tries.find((x) => x.try_number === tryNo);
    follow(tryNo, current() && current().state === 'running');
    const again = throttle(async () => {
      try {
        [tasks] = await load();
        const next = tasks.find((t) => t.task_id === taskId);
        if (!next) return;
        const before = current();
        ti = next;
        const newest = ti.tries.length ? ti.tries[ti.tries.length - 1].try_number : null;
        if (!pinned && newest !== tryNo) { tryNo = newest; draw(); follow(tryNo, current() && current().state === 'running'); return; }
        const now = current();
        draw();
        if (before && now && before.state !== now.state) drawRendered();
        if (before && now && before.state !== 'running' && now.state === 'running') follow(tryNo, true);
      } catch (_) { /* the next event retries */ }
    }, 200);
    onEvents((ev) => { if (ev.dag_id === dagId && ev.run_id === runId) again(); });
    drawLog();
  }

  // ---------------------------------------------------------------- global keys and links
  document.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = e.target.closest('a');
    if (!a || a.target || a.hasAttribute('download')) return;
    const href = a.getAttribute('href');
    if (!href || !href.startsWith('/') || href.startsWith('//') || href.startsWith('/api/')) return;
    e.preventDefault();
    navigate(href);
  });
  addEventListener('popstate', render);
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || $('.backdrop')) return;
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName);
    if (typing) { if (e.key === 'Escape') e.target.blur(); return; }
    if (e.key === '/') { const s = $('[data-search]'); if (s) { e.preventDefault(); s.focus(); s.select(); } return; }
    if (e.key === 't') { toggleTheme(); return; }
    if (e.key === 'Backspace' || (e.key === 'u')) { const links = $$('#crumbs a'); if (links.length) { e.preventDefault(); navigate(links[links.length - 1].getAttribute('href')); } return; }
    if (/^[1-6]$/.test(e.key) && view.tabKeys) { navigate(view.tabKeys[Number(e.key) - 1], true); return; }
    if (e.key === 'j' || e.key === 'k') {
      const rows = $$('[data-row-link]');
      if (!rows.length) return;
      let i = rows.findIndex((r) => r.classList.contains('sel'));
      rows.forEach((r) => r.classList.remove('sel'));
      i = e.key === 'j' ? Math.min(rows.length - 1, i + 1) : Math.max(0, i - 1);
      rows[i].classList.add('sel');
      rows[i].scrollIntoView({ block: 'nearest' });
      return;
    }
    if (e.key === 'Enter') { const sel = $('[data-row-link].sel'); if (sel) navigate(sel.dataset.rowLink); }
  });

  // ---------------------------------------------------------------- start
  async function boot() {
    applyTheme();
    $('#theme').addEventListener('click', toggleTheme);
    try { await loadMe(); } catch (e) { toast(e.message || String(e), true); }
    streamEvents();
    await render();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
