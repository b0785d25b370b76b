// The dashboard at GET / (docs/PROTOCOL.md, "Dashboard"): lists sessions over
// REST (refreshed every few seconds), creates and terminates them, and
// watches one session's events live through the JavaScript client, which
// resumes from the last seq after any disconnect. A token given as
// `/?token=…` is kept for this tab (sessionStorage), used as a bearer token
// for REST and as ?token= for the WebSocket, and removed from the address bar.
import { SessionhostClient } from './sessionhost.js';

const REFRESH_MS = 2000;
const HISTORY = 500;   // events shown when a session is opened
const MAX_ROWS = 1000; // events kept on the page

const $ = (sel) => document.querySelector(sel);

const token = (() => {
  const url = new URL(location.href);
  const given = url.searchParams.get('token');
  if (given !== null) {
    sessionStorage.setItem('sessionhost.token', given);
    url.searchParams.delete('token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem('sessionhost.token') ?? '';
})();

const client = new SessionhostClient({ token });
client.on('state', (s) => {
  const b = $('#ws-state');
  b.textContent = s === 'open' ? 'live' : s;
  b.className = `badge ${s}`;
  // A subscription error from before a reconnect is stale now.
  const info = $('#watch-info');
  if (s === 'open' && info.textContent.startsWith('subscription:')) info.textContent = '';
});

function showStatus(text) {
  $('#status').textContent = text;
}

async function api(method, path, body) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const e = json?.error;
    const err = new Error(e ? `${e.code}: ${e.message}` : `HTTP ${res.status}`);
    err.code = e?.code;
    throw err;
  }
  return json;
}

// -- session list -------------------------------------------------------------

const rows = new Map(); // id → <tr>
let watching = null;    // id of the watched session

function cell(tr, i, text, cls) {
  const td = tr.cells[i];
  if (td.textContent !== text) td.textContent = text;
  if (cls !== undefined) td.className = cls;
}

function makeRow(s) {
  const tr = document.createElement('tr');
  tr.dataset.id = s.id;
  for (let i = 0; i < 10; i++) tr.insertCell();
  tr.cells[0].className = 'id';
  tr.cells[0].title = s.id;
  const open = document.createElement('button');
  open.textContent = 'Open';
  open.className = 'open';
  open.addEventListener('click', () => watch(s.id));
  const end = document.createElement('button');
  end.textContent = 'Terminate';
  end.className = 'terminate';
  end.addEventListener('click', () => terminate(s.id));
  tr.cells[9].append(open, ' ', end);
  return tr;
}

function updateRow(tr, s) {
  cell(tr, 0, s.id.slice(0, 8));
  cell(tr, 1, s.type);
  cell(tr, 2, s.role || '');
  cell(tr, 3, s.state, `state-${s.state}`);
  cell(tr, 4, String(s.message_count));
  cell(tr, 5, String(s.last_seq));
  cell(tr, 6, s.peer ? `${s.peer}${s.peer_connected ? '' : ' (gone)'}` : '');
  cell(tr, 7, s.loaded ? 'yes' : 'no');
  cell(tr, 8, s.created_at.replace('T', ' ').slice(5, 19)); // MM-DD hh:mm:ss UTC
  tr.dataset.state = s.state;
  tr.querySelector('button.terminate').disabled =
    s.state === 'TERMINATING' || s.state === 'CLEANED';
  tr.classList.toggle('selected', s.id === watching);
}

let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const state = $('#state-filter').value;
    const page = await api('GET', `/v1/sessions?limit=1000${state ? `&state=${state}` : ''}`);
    const body = $('#sessions tbody');
    const seen = new Set();
    for (const s of page.sessions) {
      seen.add(s.id);
      let tr = rows.get(s.id);
      if (!tr) {
        tr = makeRow(s);
        rows.set(s.id, tr);
      }
      updateRow(tr, s);
      body.append(tr); // keeps the server's order; moving is cheap
    }
    for (const [id, tr] of rows) {
      if (!seen.has(id)) { tr.remove(); rows.delete(id); }
    }
    $('#sessions-empty').hidden = page.sessions.length > 0;
    if ($('#status').dataset.source === 'list') showStatus('');
  } catch (err) {
    showStatus(`listing sessions: ${err.message}`);
    $('#status').dataset.source = 'list';
  } finally {
    refreshing = false;
  }
}

async function create(ev) {
  ev.preventDefault();
  const type = $('#create-type').value.trim();
  const role = $('#create-role').value.trim();
  try {
    const s = await api('POST', '/v1/sessions', role ? { type, role } : { type });
    $('#create-role').value = '';
    showStatus('');
    await refresh();
    watch(s.id);
  } catch (err) {
    showStatus(`create: ${err.message}`);
  }
}

async function terminate(id) {
  if (!confirm(`Terminate session ${id}?`)) return;
  try {
    await api('DELETE', `/v1/sessions/${encodeURIComponent(id)}?reason=dashboard`);
    showStatus('');
  } catch (err) {
    showStatus(`terminate: ${err.message}`);
  }
  refresh();
}

// -- watched session --------------------------------------------------------

function addEvent(e) {
  const scroller = $('#events-scroll');
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  const body = $('#events tbody');
  const tr = body.insertRow();
  tr.dataset.seq = e.seq;
  tr.dataset.type = e.type;
  tr.insertCell().textContent = e.seq;
  tr.insertCell().textContent = new Date(e.ts / 1000).toISOString().slice(11, 23);
  tr.insertCell().textContent = e.type;
  const data = tr.insertCell();
  data.className = 'data';
  data.textContent = JSON.stringify(e.data);
  while (body.rows.length > MAX_ROWS) body.deleteRow(0);
  if (atBottom) scroller.scrollTop = scroller.scrollHeight; // follow, unless scrolled up
}

async function watch(id) {
  if (watching === id) return;
  const previous = watching;
  watching = id;
  for (const [rid, tr] of rows) tr.classList.toggle('selected', rid === id);
  if (previous) client.unsubscribe(previous).catch(() => {});
  $('#watch-pane').hidden = false;
  $('#watch-id').textContent = id;
  $('#watch-info').textContent = 'subscribing…';
  $('#events tbody').replaceChildren();
  try {
    const s = await api('GET', `/v1/sessions/${encodeURIComponent(id)}`);
    if (watching !== id) return;
    const fromSeq = Math.max(0, s.last_seq - HISTORY);
    const answer = await client.subscribe(id, {
      fromSeq,
      onEvent: (e) => { if (watching === id) addEvent(e); },
      onError: (err) => {
        if (watching === id) $('#watch-info').textContent = `subscription: ${err.message}`;
      },
    });
    if (watching === id)
      $('#watch-info').textContent = fromSeq > 0 ? `(from seq ${fromSeq + 1})` : '';
    return answer;
  } catch (err) {
    if (watching === id) $('#watch-info').textContent = `cannot watch: ${err.message}`;
  }
}

function closeWatch() {
  if (watching) client.unsubscribe(watching).catch(() => {});
  watching = null;
  $('#watch-pane').hidden = true;
  for (const tr of rows.values()) tr.classList.remove('selected');
}

async function send(ev) {
  ev.preventDefault();
  const input = $('#send-text');
  const id = watching;
  if (!id || input.value === '') return;
  try {
    const { seq } = await client.send(id, input.value);
    input.value = '';
    if (watching === id) $('#watch-info').textContent = `sent (seq ${seq})`;
  } catch (err) {
    if (watching === id) $('#watch-info').textContent = `send: ${err.message}`;
  }
}

$('#create-form').addEventListener('submit', create);
$('#send-form').addEventListener('submit', send);
$('#close-watch').addEventListener('click', closeWatch);
$('#state-filter').addEventListener('change', refresh);
refresh();
setInterval(refresh, REFRESH_MS);
