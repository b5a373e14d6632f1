// The dashboard: polls /api/status every second and draws it. Plain JS, no build step.
const $ = (id) => document.getElementById(id);
const fmt = (n) => (n === null || n === undefined ? '-' : Number(n).toLocaleString('en'));
const text = (s) => document.createTextNode(String(s));
const bytes = (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : n >= 1024 ? `${(n / 1024).toFixed(1)} kB` : `${fmt(n)} B`);
// Opened as /?token=… when the tunnel has an httpToken: the page keeps it for its own /api calls.
const token = new URLSearchParams(location.search).get('token');
const auth = token ? { authorization: `Bearer ${token}` } : {};

function row(cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    const td = document.createElement('td');
    td.appendChild(text(c));
    tr.appendChild(td);
  }
  return tr;
}

function chart(el, series) {
  return new uPlot({ width: el.clientWidth || 500, height: 200, series: [{}, ...series], axes: [{}, { size: 70 }] }, [[], ...series.map(() => [])], el);
}

let throughputChart;
let latencyChart;

function draw(data) {
  const s = data.status;
  const problems = data.problems || [];
  $('state').textContent = problems.length === 0 ? 'healthy' : 'problem';
  $('state').className = problems.length === 0 ? 'badge' : 'badge bad';
  $('problems').replaceChildren(...problems.map((p) => { const li = document.createElement('li'); li.appendChild(text(p)); return li; }));
  $('last-update').textContent = new Date().toLocaleTimeString();
  const m = data.membership;
  $('membership').textContent = m ? `consumer ${m.instanceId}: partitions ${Object.entries(m.assigned).map(([topic, ps]) => `${topic}[${ps.join(',')}]`).join(' ') || 'none'}, ${m.rebalances} rebalances, last ${new Date(m.since).toLocaleTimeString()}` : '';
  if (s) {
    $('phase').textContent = s.phase;
    $('captured-total').textContent = fmt(s.counts.captured + s.counts.snapshotRows);
    $('applied-total').textContent = fmt(s.counts.applied);
    $('dead-total').textContent = fmt(s.counts.deadLettered);
    $('lag').textContent = `${fmt(s.counts.inFlight)} / ${fmt(s.lag)}`;
    $('latency').textContent = s.lastApplyLatencyMs === null ? '-' : `${Math.round(s.lastApplyLatencyMs)} ms`;
    $('snapshot').replaceChildren(...s.tables.map((t) => {
      const div = document.createElement('div');
      const total = t.snapshot.rowsTotal ?? 0;
      div.appendChild(text(`${t.table}: ${t.phase === 'streaming' ? 'done' : 'running'}, ${fmt(t.snapshot.rowsDone)} of ${fmt(total)} rows `));
      const bar = document.createElement('progress');
      bar.max = Math.max(1, total);
      bar.value = t.phase === 'streaming' ? bar.max : t.snapshot.rowsDone;
      div.appendChild(bar);
      const inc = t.incrementalSnapshot;
      if (inc) {
        // the latest incremental snapshot (pgtunnel snapshot --table), with its range
        const line = document.createElement('div');
        line.className = 'incremental-snapshot';
        line.appendChild(text(`incremental snapshot ${inc.signalId}${inc.where === null ? '' : ` where ${inc.where}`}: ${inc.state}, ${fmt(inc.rowsDone)} of ${fmt(inc.rowsTotal ?? 0)} rows `));
        const incBar = document.createElement('progress');
        incBar.max = Math.max(1, inc.rowsTotal ?? 0);
        incBar.value = inc.state === 'done' ? incBar.max : inc.rowsDone;
        line.appendChild(incBar);
        div.appendChild(line);
      }
      return div;
    }));
    $('partitions').tBodies[0].replaceChildren(...s.partitions.map((p) => row([p.topic, p.partition, fmt(p.groupOffset), fmt(p.appliedOffset), fmt(p.endOffset), fmt(p.groupLag)])));
    $('checkpoints').tBodies[0].replaceChildren(...s.tables.map((t) => row([t.table, t.phase, `v${t.schemaVersion ?? '-'}${t.registeredVersion === null ? '' : ` (registry v${t.registeredVersion})`}`, t.checkpoint.snapshot ?? '-', fmt(t.changeTableRows), bytes(t.changeTableBytes), t.oldestUnpublishedSeconds === null ? '-' : `${Math.round(t.oldestUnpublishedSeconds)} s`])));
    // logical capture's slots: WAL the source keeps for them is disk it cannot recycle (docs/operations.md)
    // the source's shared slot is one row, with every table it carries
    const bySlot = new Map();
    for (const t of s.tables.filter((t) => t.slot)) bySlot.set(t.slot.name, { ...t, table: bySlot.has(t.slot.name) ? `${bySlot.get(t.slot.name).table}, ${t.table}` : t.table });
    const slots = [...bySlot.values()];
    $('slots-section').hidden = slots.length === 0;
    $('slots').tBodies[0].replaceChildren(...slots.map((t) => row([t.table, t.slot.name, `${t.slot.active ? 'active' : 'inactive'}, ${t.slot.walStatus ?? '-'}`, bytes(t.slot.lagBytes), bytes(t.slot.retainedWalBytes), t.slot.safeWalBytes === null ? 'no limit' : bytes(t.slot.safeWalBytes)])));
    $('dlq-depth').textContent = `(${fmt(s.counts.deadLettered)} in total)`;
  }
  const ms = (v) => (v === null || v === undefined ? '-' : v < 10 ? v.toFixed(2) : fmt(Math.round(v)));
  $('stages').tBodies[0].replaceChildren(...(data.stages || []).map((st) => row([st.stage, fmt(st.count), ms(st.p50), ms(st.p99)])));
  $('dlq').replaceChildren(...data.deadLetters.map((l) => {
    const li = document.createElement('li');
    const cls = document.createElement('span');
    cls.className = 'class';
    cls.appendChild(text(`${l.errorClass}${l.rule ? ` ${l.rule}` : ''}`));
    li.append(cls, text(` key ${l.key ?? '-'} — ${l.message} (${new Date(l.time).toLocaleTimeString()})`));
    return li;
  }));
  const h = data.history;
  const t = h.map((p) => p.t);
  throughputChart ??= chart($('throughput-chart'), [{ label: 'captured/s', stroke: '#8250df' }, { label: 'applied/s', stroke: '#1f6feb' }]);
  latencyChart ??= chart($('latency-chart'), [{ label: 'p50 ms', stroke: '#1a7f37' }, { label: 'p99 ms', stroke: '#bf8700' }]);
  throughputChart.setData([t, h.map((p) => p.captured), h.map((p) => p.applied)]);
  latencyChart.setData([t, h.map((p) => p.p50), h.map((p) => p.p99)]);
}

async function refresh() {
  try {
    const res = await fetch('/api/status', { cache: 'no-store', headers: auth });
    if (res.status === 401) {
      $('state').textContent = 'token required: open this page as /?token=<httpToken>';
      $('state').className = 'badge bad';
      return;
    }
    draw(await res.json());
  } catch (err) {
    $('state').textContent = 'tunnel unreachable';
    $('state').className = 'badge bad';
  }
}

refresh();
setInterval(refresh, 1000);
