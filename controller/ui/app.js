// fledge dashboard: plain JavaScript, no build step. Reads the public API and its server-sent event
// streams; actions ask for the bearer token when the controller answers 401 (kept in sessionStorage).
// Every value from the API reaches the page through textContent, never as HTML.
(function () {
  'use strict';

  const COLOR = {
    stable: '#1d4ed8', stableSoft: 'rgba(29, 78, 216, 0.14)',
    canary: '#ea580c', canarySoft: 'rgba(234, 88, 12, 0.18)',
    weight: '#7c3aed', threshold: '#b91c1c', muted: '#9ca3af',
  };
  const EVENT_COLOR = {
    rolled_back: '#b91c1c', aborted: '#b91c1c', gate_failing: '#dc2626', promoted: '#15803d',
    advanced: '#15803d', switched: '#15803d', gate_recovered: '#16a34a', paused: '#a16207', resumed: '#a16207',
  };
  const TERMINAL = ['succeeded', 'rolled_back', 'aborted'];
  const DEFAULT_STEPS = [1, 5, 25, 50, 100];
  const TOKEN_KEY = 'fledge.token';

  // ---------- small helpers ----------

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function replace(node, ...children) {
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  }

  const num = (v) => (typeof v === 'number' && isFinite(v) ? v : null);
  const int = (v) => (num(v) === null ? '–' : Math.round(v).toLocaleString('en-US'));

  function pct(v, digits) {
    if (num(v) === null) return '–';
    return (v * 100).toFixed(digits === undefined ? (Math.abs(v) < 0.1 ? 2 : 1) : digits) + '%';
  }

  function ms(v) {
    if (num(v) === null) return '–';
    return v >= 100 ? v.toFixed(0) + ' ms' : v.toFixed(1) + ' ms';
  }

  function plain(v) {
    if (num(v) === null) return '–';
    const a = Math.abs(v);
    if (a >= 1e6 || (a > 0 && a < 1e-3)) return v.toExponential(2);
    return a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toFixed(4);
  }

  // A metric's value in its unit: rates as percentages, latencies in ms, costs as they are.
  function metricValue(metric, v) {
    if (/_ms$/.test(metric)) return ms(v);
    if (/rate$/.test(metric)) return pct(v);
    return plain(v);
  }

  function clock(msSinceEpoch) {
    if (!msSinceEpoch) return '–';
    return new Date(msSinceEpoch).toLocaleTimeString('en-GB', { hour12: false });
  }

  function ago(msSinceEpoch) {
    if (!msSinceEpoch) return 'never';
    const s = Math.max(0, (Date.now() - msSinceEpoch) / 1000);
    return s < 60 ? s.toFixed(1) + ' s ago' : s < 3600 ? Math.round(s / 60) + ' min ago' : Math.round(s / 3600) + ' h ago';
  }

  function phaseBadge(phase, id) {
    return el('span', { class: 'badge', id, dataset: { phase }, text: String(phase || '?').replace(/_/g, ' ') });
  }

  function versionChip(role, version) {
    return el('span', { class: 'chip ' + role, text: role + ' ' + version });
  }

  function stepsOf(spec) {
    return Array.isArray(spec.steps) && spec.steps.length ? spec.steps : DEFAULT_STEPS;
  }

  function stepText(r) {
    const s = r.status;
    if (s.phase === 'manual') return 'manual';
    if (s.step === undefined || s.step === null) return '–';
    if (r.spec.strategy === 'blue_green') return s.step === 0 ? 'preview' : 'bake';
    return (s.step + 1) + ' of ' + stepsOf(r.spec).length;
  }

  function setStream(state, text) {
    const s = document.getElementById('stream-state');
    s.dataset.state = state;
    s.textContent = text;
  }

  // ---------- the API, with the bearer token when it is needed ----------

  const tokenDialog = {
    ask(why) {
      const dialog = document.getElementById('token-dialog');
      const input = document.getElementById('token-input');
      document.getElementById('token-why').textContent = why;
      input.value = '';
      return new Promise((resolve) => {
        const form = document.getElementById('token-form');
        const cancel = document.getElementById('token-cancel');
        const done = (value) => {
          form.removeEventListener('submit', onSubmit);
          cancel.removeEventListener('click', onCancel);
          dialog.removeEventListener('cancel', onCancel);
          if (dialog.open) dialog.close();
          resolve(value);
        };
        const onSubmit = (e) => { e.preventDefault(); done(input.value.trim() || null); };
        const onCancel = (e) => { e.preventDefault(); done(null); };
        form.addEventListener('submit', onSubmit);
        cancel.addEventListener('click', onCancel);
        dialog.addEventListener('cancel', onCancel);
        dialog.showModal();
        input.focus();
      });
    },
  };

  function showForget() {
    document.getElementById('btn-forget-token').hidden = !sessionStorage.getItem(TOKEN_KEY);
  }

  async function api(method, path, body) {
    for (;;) {
      const headers = { accept: 'application/json' };
      if (body !== undefined) headers['content-type'] = 'application/json';
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token) headers.authorization = 'Bearer ' + token;
      const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
      if (resp.status === 401 && method !== 'GET') {
        const given = await tokenDialog.ask(token
          ? 'The controller did not accept that token. Enter its bearer token.'
          : 'This controller needs its bearer token for that.');
        if (given === null) return { status: 401, body: { error: { message: 'cancelled: no token given' } } };
        sessionStorage.setItem(TOKEN_KEY, given);
        showForget();
        continue;
      }
      let json = null;
      try { json = await resp.json(); } catch (_) { /* 204 or not JSON */ }
      return { status: resp.status, body: json };
    }
  }

  // An EventSource that says in the header whether it is live; the browser reconnects by itself.
  function follow(path, handlers) {
    const source = new EventSource(path);
    source.onopen = () => setStream('live', 'live');
    source.onerror = () => setStream('lost', source.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting…');
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => {
        let data;
        try { data = JSON.parse(e.data); } catch (_) { return; }
        fn(data);
      });
    }
    return source;
  }

  // ---------- charts (uPlot) ----------

  // Vertical lines with the event's kind at each event's time.
  function markersPlugin(events) {
    return {
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          const { left, top, width, height } = u.bbox;
          const px = uPlot.pxRatio;
          ctx.save();
          ctx.font = (11 * px) + 'px "DejaVu Sans", sans-serif';
          ctx.lineWidth = 1.5 * px;
          let lastX = -1e9;
          let row = 0;
          for (const e of events()) {
            const x = u.valToPos(e.at_ms / 1000, 'x', true);
            if (!(x >= left && x <= left + width)) continue;
            const color = EVENT_COLOR[e.kind] || COLOR.muted;
            ctx.strokeStyle = color;
            ctx.fillStyle = color;
            ctx.setLineDash([4 * px, 3 * px]);
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
            row = x - lastX < 90 * px ? (row + 1) % 3 : 0;
            lastX = x;
            ctx.fillText(e.kind.replace(/_/g, ' '), x + 3 * px, top + (12 + row * 12) * px);
          }
          ctx.restore();
        }],
      },
    };
  }

  class Chart {
    constructor(container, opts, columns) {
      this.container = container;
      this.opts = opts;
      this.columns = columns;
      this.plot = null;
    }

    width() {
      return Math.max(300, Math.floor(this.container.clientWidth || 600));
    }

    update(data) {
      if (!this.plot) {
        // uPlot needs a time range to lay out its axes: wait for a second point.
        if (data[0].length < 2) return;
        this.plot = new uPlot(Object.assign({ width: this.width() }, this.opts), data, this.container);
      } else {
        this.plot.setData(data);
      }
    }

    resize() {
      if (this.plot) this.plot.setSize({ width: this.width(), height: this.opts.height });
    }
  }

  const timeAxis = { stroke: '#4b5563', grid: { stroke: '#f1f5f9' } };
  // Time from the first point to now (at least 10 s), so the chart reaches the present.
  const timeScale = {
    time: true,
    range: (u, min, max) => {
      const now = Date.now() / 1000;
      const hi = Math.max(max, now);
      return [Math.min(min, hi - 10), hi];
    },
  };
  // Counts and rates from zero.
  const fromZero = { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] };
  function yAxis(label, fmt) {
    const axis = { label, stroke: '#4b5563', grid: { stroke: '#eef2f7' }, size: 64 };
    if (fmt) axis.values = (u, vals) => vals.map(fmt);
    return axis;
  }

  // ---------- the list of rollouts ----------

  function listPage(main) {
    document.title = 'fledge — rollouts';
    const rows = new Map();
    const tbody = el('tbody');
    const empty = el('p', { class: 'muted', id: 'no-rollouts', text: 'No rollouts yet. Create one with PUT /v1/rollouts/{name} or `fledge rollouts apply`.' });
    const table = el('table', { id: 'rollouts' },
      el('thead', {}, el('tr', {},
        el('th', { text: 'Rollout' }), el('th', { text: 'Phase' }), el('th', { text: 'Step' }), el('th', { class: 'num', text: 'Weight' }),
        el('th', { class: 'stable', text: 'Stable: requests · errors · p99 · task success' }),
        el('th', { class: 'canary', text: 'Canary: requests · errors · p99 · task success' }),
        el('th', { text: 'Proxies' }), el('th', { text: 'Why' }))),
      tbody);
    replace(main, el('h1', {}, 'Rollouts'), el('div', { class: 'card' }, table, empty));

    function headline(w) {
      if (!w) return '–';
      return int(w.requests) + ' · ' + pct(w.error_rate) + ' · ' + ms(w.latency_p99_ms) + ' · ' + pct(w.task_success_rate);
    }

    function upsert(r) {
      const c = r.live && r.live.confirmation;
      const win = (r.live && r.live.window) || {};
      const cells = [
        el('td', {}, el('a', { href: '/ui/rollouts/' + encodeURIComponent(r.name), text: r.name })),
        el('td', { class: 'phase' }, phaseBadge(r.status.phase)),
        el('td', { text: stepText(r) }),
        el('td', { class: 'num weight', text: r.status.weight + '%' }),
        el('td', { class: 'stable' }, el('div', { class: 'small', text: r.spec.stable }), headline(win.stable)),
        el('td', { class: 'canary' }, el('div', { class: 'small', text: r.spec.canary }), headline(win.canary)),
        el('td', { class: 'proxies', text: c ? 'confirmed by ' + c.confirmed + '/' + c.proxies + ' proxies' : '–' }),
        el('td', { class: 'small', text: r.status.message || '' }),
      ];
      let tr = rows.get(r.name);
      if (!tr) {
        tr = el('tr', { class: 'clickable', dataset: { rollout: r.name } });
        tr.addEventListener('click', (e) => { if (e.target.tagName !== 'A') location.href = '/ui/rollouts/' + encodeURIComponent(r.name); });
        rows.set(r.name, tr);
        const after = [...rows.keys()].sort().find((n) => n > r.name && rows.get(n).isConnected);
        tbody.insertBefore(tr, after ? rows.get(after) : null);
      }
      replace(tr, cells);
      empty.hidden = rows.size > 0;
    }

    function remove(name) {
      const tr = rows.get(name);
      if (tr) tr.remove();
      rows.delete(name);
      empty.hidden = rows.size > 0;
    }

    follow('/v1/stream', {
      snapshot: (d) => {
        const names = new Set(d.rollouts.map((r) => r.name));
        for (const name of [...rows.keys()]) if (!names.has(name)) remove(name);
        d.rollouts.forEach(upsert);
      },
      rollout: (d) => upsert(d.rollout),
      deleted: (d) => remove(d.name),
    });
  }

  // ---------- one rollout ----------

  function detailPage(main, name) {
    document.title = 'fledge — ' + name;
    replace(document.getElementById('crumb'), '/ ', el('span', { text: name }));
    const state = {
      rollout: null,
      events: [],
      seqs: new Set(),
      gates: [],
      points: [],
      charts: [],
      gateCharts: new Map(),
      shadowFetched: 0,
    };

    // The fixed frame; sections are filled by render().
    const header = el('div');
    const message = el('div', { class: 'message', id: 'message' });
    const actions = el('div', { class: 'actions', id: 'actions' });
    const counts = el('div', { class: 'counts' });
    const windowTable = el('div');
    const verdict = el('div', { id: 'verdict' });
    const weightChart = el('div', { class: 'chart', id: 'chart-weight' });
    const rpsChart = el('div', { class: 'chart', id: 'chart-requests' });
    const gatesBox = el('div', { id: 'gates' });
    const timeline = el('ol', { class: 'timeline', id: 'timeline' });
    const proxies = el('div', { id: 'proxies' });
    const segments = el('div', { id: 'segments' });
    const shadowCard = el('div', { class: 'card', id: 'shadow', hidden: true });
    const banner = el('div', { class: 'banner', id: 'banner', hidden: true });
    replace(main,
      banner, header, message, actions,
      el('div', { class: 'grid' },
        el('div', { class: 'card' }, el('h2', { text: 'Current window' }), counts, windowTable),
        el('div', { class: 'card' }, el('h2', { text: 'Verdict' }), verdict)),
      el('div', { class: 'grid' },
        el('div', { class: 'card' }, el('div', { class: 'chart-title' }, el('h2', { text: 'Canary weight, with events' })), weightChart),
        el('div', { class: 'card' }, el('div', { class: 'chart-title' }, el('h2', { text: 'Requests per second' }), el('span', { class: 'row' }, versionChip('stable', '…'), versionChip('canary', '…'))), rpsChart)),
      el('div', { class: 'card' }, el('h2', { text: 'Gates: canary vs stable over time, with confidence bounds and the evidence against the threshold' }), gatesBox),
      el('div', { class: 'grid' },
        el('div', { class: 'card' }, el('h2', { text: 'Timeline' }), timeline),
        el('div', {}, el('div', { class: 'card' }, el('h2', { text: 'Proxies' }), proxies),
          el('div', { class: 'card' }, el('h2', { text: 'Segments' }), segments))),
      shadowCard);

    const eventsOf = () => state.events;
    const markers = markersPlugin(eventsOf);

    state.charts.push(new Chart(weightChart, {
      height: 200,
      plugins: [markers],
      scales: { x: timeScale, y: { range: [0, 100] } },
      axes: [timeAxis, yAxis('canary %')],
      series: [{}, { label: 'canary weight %', stroke: COLOR.weight, width: 2, fill: 'rgba(124, 58, 237, 0.08)', paths: uPlot.paths.stepped({ align: 1 }) }],
    }));
    const rps = new Chart(rpsChart, {
      height: 200,
      plugins: [markers],
      scales: { x: timeScale, y: fromZero },
      axes: [timeAxis, yAxis('req/s')],
      series: [{}, { label: 'stable', stroke: COLOR.stable, width: 2 }, { label: 'canary', stroke: COLOR.canary, width: 2.5 }],
    });
    state.charts.push(rps);

    function seriesColumns() {
      const xs = [], weight = [], rs = [], rc = [];
      for (const p of state.points) {
        xs.push(p.at_ms / 1000);
        weight.push(p.weight);
        const secs = Math.max(p.span_ms, 1) / 1000;
        rs.push(p.span_ms > 0 ? p.requests.stable / secs : null);
        rc.push(p.span_ms > 0 ? p.requests.canary / secs : null);
      }
      return { xs, weight, rs, rc };
    }

    function gateChart(i) {
      let entry = state.gateCharts.get(i);
      if (entry) return entry;
      const key = state.gates[i];
      const values = el('div', { class: 'chart' });
      const evidence = el('div', { class: 'chart' });
      const text = el('div', { class: 'values' });
      const badge = el('span', { class: 'badge', dataset: { status: 'insufficient_data' }, text: '…' });
      const box = el('div', { class: 'gate', dataset: { metric: key.metric } },
        el('div', { class: 'chart-title' },
          el('h3', {}, key.metric + ' · ' + key.threshold + (key.critical ? ' · critical' : '')), badge),
        text,
        el('div', { class: 'pair' }, values, evidence));
      gatesBox.append(box);
      const unit = (v) => metricValue(key.metric, v);
      entry = {
        box, text, badge,
        values: new Chart(values, {
          height: 190,
          plugins: [markers],
          scales: { x: timeScale },
          axes: [timeAxis, yAxis(key.metric, unit)],
          series: [{},
            { label: 'stable', stroke: COLOR.stable, width: 2, value: (u, v) => unit(v) },
            { label: 'canary', stroke: COLOR.canary, width: 2.5, value: (u, v) => unit(v) },
            { label: 'stable upper bound', stroke: COLOR.stableSoft, width: 1, value: (u, v) => unit(v) },
            { label: 'stable lower bound', stroke: COLOR.stableSoft, width: 1, value: (u, v) => unit(v) },
            { label: 'canary upper bound', stroke: COLOR.canarySoft, width: 1, value: (u, v) => unit(v) },
            { label: 'canary lower bound', stroke: COLOR.canarySoft, width: 1, value: (u, v) => unit(v) }],
          bands: [{ series: [3, 4], fill: COLOR.stableSoft }, { series: [5, 6], fill: COLOR.canarySoft }],
        }),
        evidence: new Chart(evidence, {
          height: 190,
          plugins: [markers],
          scales: { x: timeScale, y: { distr: 3 } },
          axes: [timeAxis, yAxis('evidence (log)', (v) => plain(v))],
          series: [{},
            { label: 'evidence of a regression', stroke: COLOR.canary, width: 2, value: (u, v) => plain(v) },
            { label: 'fails at', stroke: COLOR.threshold, width: 1.5, dash: [6, 4], value: (u, v) => plain(v) }],
        }),
      };
      state.gateCharts.set(i, entry);
      return entry;
    }

    function drawCharts() {
      const { xs, weight, rs, rc } = seriesColumns();
      weightChart.dataset.points = String(xs.length);
      weightChart.dataset.lastWeight = weight.length ? String(weight[weight.length - 1]) : '';
      state.charts[0].update([xs, weight]);
      rps.update([xs, rs, rc]);
      state.gates.forEach((_, i) => {
        const g = gateChart(i);
        const col = (f) => state.points.map((p) => { const v = p.gates[i] && p.gates[i][f]; return num(v); });
        const positive = (f) => col(f).map((v) => (v !== null && v > 0 && v < 1e30 ? v : null));
        g.values.update([xs, col('stable'), col('canary'), col('stable_high'), col('stable_low'), col('canary_high'), col('canary_low')]);
        g.evidence.update([xs, positive('evidence'), positive('threshold')]);
      });
    }

    function addPoint(gates, p) {
      state.gates = gates;
      const last = state.points[state.points.length - 1];
      if (last && p.at_ms <= last.at_ms) return;
      state.points.push(p);
      if (state.points.length > 6000) state.points.shift();
      drawCharts();
    }

    function addEvent(e, fresh) {
      if (!e || state.seqs.has(e.seq)) return;
      state.seqs.add(e.seq);
      state.events.push(e);
      state.events.sort((a, b) => a.seq - b.seq);
      const li = el('li', { dataset: { kind: e.kind, seq: e.seq }, class: fresh ? 'fresh' : undefined },
        el('span', { class: 'muted', text: clock(e.at_ms) }),
        el('span', { class: 'kind', text: e.kind.replace(/_/g, ' ') }),
        el('span', { class: 'num', text: num(e.weight) === null ? '' : e.weight + '%' }),
        el('span', { class: 'small', text: e.message || '' }));
      // Newest first.
      const later = [...timeline.children].find((c) => Number(c.dataset.seq) < e.seq);
      timeline.insertBefore(li, later || null);
      state.charts.forEach((c) => c.plot && c.plot.redraw());
      state.gateCharts.forEach((g) => { g.values.plot && g.values.plot.redraw(); g.evidence.plot && g.evidence.plot.redraw(); });
    }

    function renderHeader(r) {
      const s = r.status;
      const live = r.live || {};
      const weightLine = s.phase === 'manual' ? 'manual weight ' + s.weight + '%'
        : 'step ' + stepText(r) + ' · canary weight ' + s.weight + '%';
      replace(header,
        el('h1', {}, el('span', { text: r.name }), phaseBadge(s.phase, 'phase'), versionChip('stable', r.spec.stable), versionChip('canary', r.spec.canary)),
        el('p', { class: 'summary' },
          el('span', { id: 'weight-line', text: weightLine }), ' · ',
          el('span', { id: 'confirmed', text: live.summary || '' }), ' · hosts ',
          el('code', { text: (r.spec.hosts || []).join(', ') }), ' · generation ' + s.generation));
      message.dataset.phase = s.phase;
      message.dataset.action = (s.last_verdict && s.last_verdict.action) || '';
      message.textContent = s.message || '';
      const legend = rpsChart.parentElement.querySelector('.chart-title .row');
      if (legend) replace(legend, versionChip('stable', r.spec.stable), versionChip('canary', r.spec.canary));
    }

    const actionResult = el('span', { class: 'result', id: 'action-result' });
    const weightInput = el('input', { type: 'number', id: 'weight-input', min: 0, max: 100, step: 0.01, style: 'width: 90px' });
    const buttons = {};
    for (const [action, label, cls] of [['pause', 'Pause'], ['resume', 'Resume'], ['promote', 'Promote'], ['abort', 'Abort', 'danger']]) {
      buttons[action] = el('button', { type: 'button', id: 'btn-' + action, class: cls, text: label, onclick: () => act(action) });
    }
    const setWeight = el('button', { type: 'button', id: 'btn-set-weight', text: 'Set weight', onclick: () => putWeight() });
    const weightBox = el('span', { class: 'row', id: 'set-weight' }, el('label', { for: 'weight-input', text: 'canary %' }), weightInput, setWeight);
    replace(actions, buttons.pause, buttons.resume, buttons.promote, buttons.abort, weightBox, actionResult);

    function result(ok, text) {
      actionResult.dataset.ok = String(ok);
      actionResult.textContent = text;
    }

    async function act(action) {
      if (action === 'abort' && !confirm('Abort ' + name + '? All traffic goes back to stable.')) return;
      result('', action + '…');
      const { status, body } = await api('POST', '/v1/rollouts/' + encodeURIComponent(name) + '/' + action);
      if (status === 200) {
        result(true, action + ': now ' + body.status.phase.replace(/_/g, ' '));
        render(Object.assign({}, state.rollout, { status: body.status }));
      } else {
        result(false, action + ' refused (' + status + '): ' + ((body && body.error && body.error.message) || 'no answer'));
      }
    }

    async function putWeight() {
      const r = state.rollout;
      const w = Number(weightInput.value);
      if (!r || weightInput.value === '' || !(w >= 0 && w <= 100)) { result(false, 'a weight from 0 to 100'); return; }
      const spec = Object.assign({}, r.spec, { weight: w });
      for (const k of Object.keys(spec)) if (spec[k] === null) delete spec[k];
      result('', 'setting ' + w + '%…');
      const { status, body } = await api('PUT', '/v1/rollouts/' + encodeURIComponent(name), spec);
      if (status === 200 || status === 201) result(true, 'weight set to ' + body.status.weight + '%');
      else result(false, 'refused (' + status + '): ' + ((body && body.error && body.error.message) || 'no answer'));
    }

    function renderActions(r) {
      const phase = r.status.phase;
      const ended = TERMINAL.includes(phase);
      buttons.pause.disabled = ended || phase === 'paused' || phase === 'manual';
      buttons.resume.disabled = phase !== 'paused';
      buttons.promote.disabled = ended;
      buttons.abort.disabled = ended;
      weightBox.hidden = phase !== 'manual';
      if (document.activeElement !== weightInput && phase === 'manual') weightInput.value = r.status.weight;
    }

    function renderWindow(r) {
      const w = (r.live && r.live.window) || {};
      const st = w.stable || {}, ca = w.canary || {};
      replace(counts,
        el('div', { class: 'stable' }, el('div', { class: 'label', text: 'stable ' + r.spec.stable + ' requests' }), el('div', { class: 'big', id: 'req-stable', text: int(st.requests || 0) })),
        el('div', { class: 'canary' }, el('div', { class: 'label', text: 'canary ' + r.spec.canary + ' requests' }), el('div', { class: 'big', id: 'req-canary', text: int(ca.requests || 0) })),
        el('div', {}, el('div', { class: 'label muted', text: 'window since' }), el('div', { class: 'big muted', text: clock(w.started_at_ms) })));
      const row = (label, f) => el('tr', {}, el('td', { text: label }), el('td', { class: 'num stable', text: f(st) }), el('td', { class: 'num canary', text: f(ca) }));
      replace(windowTable, el('table', { id: 'window' },
        el('thead', {}, el('tr', {}, el('th', { text: '' }), el('th', { class: 'num stable', text: 'stable ' + r.spec.stable }), el('th', { class: 'num canary', text: 'canary ' + r.spec.canary }))),
        el('tbody', {},
          row('errors', (s) => int(s.errors) + ' (' + pct(s.error_rate) + ')'),
          row('latency p50 / p99', (s) => ms(s.latency_p50_ms) + ' / ' + ms(s.latency_p99_ms)),
          row('task success', (s) => pct(s.task_success_rate)),
          row('cost per task', (s) => plain(s.cost_per_task)),
          row('policy violations', (s) => pct(s.policy_violation_rate)))));
    }

    function renderVerdict(r) {
      const s = r.status;
      const v = s.last_verdict;
      const limit = (r.spec.analysis && r.spec.analysis.failure_limit) || 3;
      const waiting = s.phase === 'manual' ? 'Manual weighting: nothing is judged.'
        : TERMINAL.includes(s.phase) ? 'The rollout has ended.'
        : s.phase === 'paused' ? 'Paused: waiting for resume.'
        : s.message;
      const kids = [el('p', {}, el('strong', { text: 'Waiting for: ' }), el('span', { id: 'waiting', text: waiting || '–' }))];
      if (v) {
        kids.push(el('p', {}, el('strong', { text: 'Last verdict: ' }), el('span', { class: 'badge', id: 'verdict-action', dataset: { status: v.action === 'rollback' ? 'fail' : v.action === 'hold' ? 'insufficient_data' : 'pass' }, text: v.action }), ' ', v.reason === waiting ? '(as above)' : v.reason));
        kids.push(el('p', { class: 'muted small', text: 'consecutive failing judgements: ' + (s.consecutive_failures || 0) + ' of ' + limit + ' (critical gates roll back at once)' }));
        const rows = (v.gates || []).map((g) => {
          const b = g.bounds || {};
          const unit = (x) => metricValue(g.metric, x);
          const bounds = (lo, hi) => (num(lo) === null && num(hi) === null ? '' : ' [' + unit(lo) + ' – ' + unit(hi) + ']');
          return el('tr', { dataset: { metric: g.metric } },
            el('td', {}, el('div', { text: g.metric }), el('div', { class: 'small muted', text: g.threshold + (g.critical ? ' · critical' : '') })),
            el('td', {}, el('span', { class: 'badge', dataset: { status: g.status }, text: g.status.replace(/_/g, ' ') })),
            el('td', { class: 'num stable', text: unit(g.stable) + bounds(b.stable_low, b.stable_high) + ' n=' + int(g.stable_n) }),
            el('td', { class: 'num canary', text: unit(g.canary) + bounds(b.canary_low, b.canary_high) + ' n=' + int(g.canary_n) }),
            el('td', { class: 'num', text: g.evidence ? plain(g.evidence.value) + ' / ' + (g.evidence.threshold >= 1e30 ? '∞' : plain(g.evidence.threshold)) : '–' }),
            el('td', { class: 'small', text: [g.proof ? 'proof ' + plain(g.proof.value) + ' / ' + plain(g.proof.threshold) + ': ' + g.proof.detail : '', g.note].filter(Boolean).join(' — ') }));
        });
        kids.push(el('table', { id: 'verdict-gates' },
          el('thead', {}, el('tr', {}, el('th', { text: 'gate' }), el('th', { text: 'status' }), el('th', { class: 'num stable', text: 'stable [bounds]' }), el('th', { class: 'num canary', text: 'canary [bounds]' }), el('th', { class: 'num', text: 'evidence / fails at' }), el('th', { text: 'proof, note' }))),
          el('tbody', {}, rows)));
      } else if (s.phase !== 'manual') {
        kids.push(el('p', { class: 'muted', text: 'No judgement yet.' }));
      }
      replace(verdict, kids);
      // The gate charts' headings carry the current status and values too.
      (v ? v.gates : []).forEach((g) => {
        const i = state.gates.findIndex((k) => k.metric === g.metric && k.threshold === g.threshold);
        if (i < 0) return;
        const c = gateChart(i);
        c.badge.dataset.status = g.status;
        c.badge.textContent = g.status.replace(/_/g, ' ');
        const unit = (x) => metricValue(g.metric, x);
        replace(c.text,
          el('span', { class: 'stable', style: 'color: ' + COLOR.stable, text: 'stable ' + r.spec.stable + ' ' + unit(g.stable) }), ' vs ',
          el('span', { style: 'color: ' + COLOR.canary, text: 'canary ' + r.spec.canary + ' ' + unit(g.canary) }),
          ' · evidence ' + (g.evidence ? plain(g.evidence.value) + ' (fails at ' + (g.evidence.threshold >= 1e30 ? '∞' : plain(g.evidence.threshold)) + ')' : '–'));
      });
    }

    function renderProxies(r) {
      const c = r.live && r.live.confirmation;
      if (!c || !c.details.length) { replace(proxies, el('p', { class: 'muted', text: 'No proxy has reported recently.' })); return; }
      replace(proxies,
        el('p', { class: 'small', text: 'generation ' + c.generation + ': confirmed by ' + c.confirmed + '/' + c.proxies + ' proxies' }),
        el('table', { id: 'proxy-table' },
          el('thead', {}, el('tr', {}, el('th', { text: 'proxy' }), el('th', { class: 'num', text: 'workers' }), el('th', { class: 'num', text: 'applied generation' }), el('th', { text: 'confirmed' }), el('th', { text: 'last report' }))),
          el('tbody', {}, c.details.map((d) => el('tr', {},
            el('td', {}, el('code', { text: d.proxy })),
            el('td', { class: 'num', text: d.workers }),
            el('td', { class: 'num', text: d.applied_generation === null || d.applied_generation === undefined ? '–' : d.applied_generation }),
            el('td', { text: d.confirmed ? 'yes, ' + clock(d.confirmed_at_ms) : 'not yet' }),
            el('td', { text: ago(d.last_report_ms) }))))));
    }

    function renderSegments(r) {
      const segs = (r.live && r.live.segments) || [];
      const session = r.live && r.live.session;
      if (!segs.length) { replace(segments, el('p', { class: 'muted', text: 'No segments' + (session ? '; session cookie ' + session.cookie : '') + '.' })); return; }
      const specs = r.spec.segments || [];
      replace(segments, el('table', { id: 'segment-table' },
        el('thead', {}, el('tr', {}, el('th', { text: 'segment' }), el('th', { text: 'rule' }), el('th', { text: 'applied' }), el('th', { class: 'num stable', text: 'stable ' + r.spec.stable }), el('th', { class: 'num canary', text: 'canary ' + r.spec.canary }))),
        el('tbody', {}, segs.map((s, i) => {
          const spec = specs[i] || {};
          const rule = spec.version ? 'all to ' + spec.version : spec.weight !== undefined ? spec.weight + '% to canary' : '';
          return el('tr', {},
            el('td', { text: s.name }), el('td', { class: 'small', text: rule }),
            el('td', { text: s.applied ? (s.applied_as && s.applied_as.version ? 'as ' + s.applied_as.version : 'yes') : 'no' }),
            el('td', { class: 'num stable', text: int((s.requests || {})[r.spec.stable] || 0) }),
            el('td', { class: 'num canary', text: int((s.requests || {})[r.spec.canary] || 0) }));
        }))),
        session ? el('p', { class: 'small muted', text: 'session cookie ' + session.cookie }) : null);
    }

    async function renderShadow(r) {
      const sh = r.live && r.live.shadow;
      shadowCard.hidden = !sh;
      if (!sh) return;
      const side = (label, cls, m) => el('td', { class: 'num ' + cls, text: m ? label + ': ' + int(m.requests) + ' · ' + pct(m.error_rate) + ' · ' + ms(m.latency_p99_ms) : '–' });
      const head = [
        el('h2', {}, 'Shadow ', el('span', { class: 'badge', dataset: { status: sh.active ? 'pass' : 'insufficient_data' }, text: sh.active ? 'copying' : 'not copying' })),
        el('p', { class: 'small', text: 'sent ' + int(sh.sent) + ' · answered ' + int(sh.answered) + ' · failed ' + int(sh.failed) + ' · timeouts ' + int(sh.timeouts) + ' · dropped ' + int(sh.dropped) + ' · pairs ' + int(sh.pairs) + ' · mismatch rate ' + pct(sh.mismatch_rate) }),
        el('table', {}, el('tbody', {}, el('tr', {}, el('td', { text: 'on the shadowed requests (requests · errors · p99)' }), side('stable ' + r.spec.stable, 'stable', sh.stable), side('shadow ' + r.spec.canary, 'canary', sh.shadow)))),
      ];
      // The samples change slowly: fetched at most every 5 s.
      if (Date.now() - state.shadowFetched > 5000) {
        state.shadowFetched = Date.now();
        const { status, body } = await api('GET', '/v1/rollouts/' + encodeURIComponent(name) + '/shadow');
        state.shadowSamples = status === 200 ? body.samples || [] : [];
      }
      const samples = (state.shadowSamples || []).slice(-10).reverse();
      replace(shadowCard, head, el('h3', { text: 'Last mismatching pairs' }),
        samples.length ? el('table', {}, el('thead', {}, el('tr', {}, el('th', { text: 'time' }), el('th', { text: 'request' }), el('th', { text: 'differs in' }), el('th', { class: 'stable', text: 'stable' }), el('th', { class: 'canary', text: 'shadow' }))),
          el('tbody', {}, samples.map((s) => el('tr', {},
            el('td', { text: clock(s.at_ms) }), el('td', {}, el('code', { text: s.method + ' ' + s.path })), el('td', { text: (s.mismatch || []).join(', ') }),
            el('td', { class: 'stable' }, (s.stable.status || '–') + ' · ' + ms(s.stable.latency_ms), s.stable.body ? el('pre', { class: 'sample', text: s.stable.body }) : null),
            el('td', { class: 'canary' }, (s.shadow.status || '–') + ' · ' + ms(s.shadow.latency_ms), s.shadow.body ? el('pre', { class: 'sample', text: s.shadow.body }) : null)))))
          : el('p', { class: 'muted small', text: 'none yet' }));
    }

    function render(r) {
      state.rollout = r;
      banner.hidden = true;
      renderHeader(r);
      renderActions(r);
      renderWindow(r);
      renderVerdict(r);
      renderProxies(r);
      renderSegments(r);
      renderShadow(r);
    }

    async function loadHistory() {
      const base = '/v1/rollouts/' + encodeURIComponent(name);
      const [series, events] = await Promise.all([api('GET', base + '/series'), api('GET', base + '/events')]);
      if (series.status === 200) {
        state.gates = series.body.gates;
        const known = state.points;
        state.points = series.body.points.concat(known.filter((p) => !series.body.points.length || p.at_ms > series.body.points[series.body.points.length - 1].at_ms));
        drawCharts();
      }
      if (events.status === 200) events.body.events.forEach((e) => addEvent(e, false));
    }

    follow('/v1/rollouts/' + encodeURIComponent(name) + '/stream', {
      rollout: (d) => {
        if (d.series) addPoint(d.series.gates, d.series.point);
        render(d.rollout);
        if (d.event) addEvent(d.event, true);
        if (d.skipped) loadHistory();
      },
      deleted: () => {
        banner.textContent = 'This rollout was deleted.';
        banner.hidden = false;
      },
    });
    loadHistory().then(() => {
      if (!state.rollout) {
        api('GET', '/v1/rollouts/' + encodeURIComponent(name)).then(({ status, body }) => {
          if (status === 200) render(body);
          else { banner.textContent = 'No rollout named ' + name + '. '; banner.append(el('a', { href: '/ui', text: 'All rollouts' })); banner.hidden = false; }
        });
      }
    });

    let resizing = null;
    window.addEventListener('resize', () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => {
        state.charts.forEach((c) => c.resize());
        state.gateCharts.forEach((g) => { g.values.resize(); g.evidence.resize(); });
      }, 100);
    });
  }

  // ---------- start ----------

  document.getElementById('btn-forget-token').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showForget();
  });
  showForget();
  const main = document.getElementById('main');
  const m = location.pathname.match(/^\/ui\/rollouts\/([^/]+)\/?$/);
  if (m) detailPage(main, decodeURIComponent(m[1]));
  else listPage(main);
})();
