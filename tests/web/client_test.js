// Unit test of web/sessionhost.js against a scripted fake WebSocket: acks by
// ref, resubscribe from the last seq after a drop (1001, 1013), duplicates
// dropped, a gap, a `lagged` or an `unloaded` notice answered by resubscribing
// (at once), queued ops,
// heartbeats on a timer and re-attach after a reconnect, backoff bounds.
// No imports: `run(mod)` gets the client module, so the same file runs in
// Chromium (tests/web/dashboard_test.py loads it as a blob module) and in
// any other JavaScript runtime. Resolves with a list of failures (empty: pass).

export async function run(mod) {
  const { SessionhostClient, SessionhostError, backoffDelay } = mod;
  const failures = [];
  const check = (cond, what) => { if (!cond) failures.push(what); };
  const eq = (a, b, what) => {
    const ja = JSON.stringify(a), jb = JSON.stringify(b);
    if (ja !== jb) failures.push(`${what}: got ${ja}, want ${jb}`);
  };
  const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
  async function until(what, pred, ms = 3000) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (pred()) return true;
      await tick(2);
    }
    failures.push(`timed out: ${what}`);
    return false;
  }

  // -- the fake socket --------------------------------------------------------
  const sockets = [];
  class FakeWS {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close(code = 1000) { this.drop(code); }
    // -- driven by the test --
    open() { this.readyState = 1; this.onopen?.({}); }
    push(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
    drop(code) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code });
    }
    last(op) { return [...this.sent].reverse().find((f) => f.op === op); }
  }
  const latest = () => sockets[sockets.length - 1];
  const make = (extra = {}) => new SessionhostClient({
    url: 'ws://test/v1/ws', WebSocket: FakeWS, requestTimeoutMs: 2000,
    backoff: { initialMs: 1, maxMs: 4 }, ...extra,
  });

  // -- backoff ----------------------------------------------------------------
  {
    const b = { initialMs: 100, maxMs: 1000 };
    eq([0, 1, 2, 3, 4, 10].map((n) => backoffDelay(n, b, () => 1)),
       [100, 200, 400, 800, 1000, 1000], 'backoff doubles up to the cap');
    eq([0, 3, 10].map((n) => backoffDelay(n, b, () => 0)), [50, 400, 500],
       'jitter keeps at least half of the delay');
  }

  // -- token, ack by ref, errors, queued ops --------------------------------
  {
    const c = make({ token: 'a b&c' });
    const ws = latest();
    eq(ws.url, 'ws://test/v1/ws?token=a%20b%26c', 'token in the URL');
    const sent = c.send('s1', { text: 'hi' }); // queued until open
    await tick();
    eq(ws.sent.length, 0, 'nothing sent before open');
    ws.open();
    const f = ws.last('send');
    eq([f?.session, f?.data], ['s1', { text: 'hi' }], 'queued send goes out on open');
    ws.push({ op: 'ack', session: 's1', ref: f.ref, seq: 7 });
    eq(await sent, { seq: 7 }, 'send resolves with the ack seq');
    const bad = c.publish('s1', 'log', 1);
    const pf = ws.last('publish');
    ws.push({ op: 'error', code: 'not_found', message: 'no session s1', ref: pf.ref, session: 's1' });
    const err = await bad.catch((e) => e);
    check(err instanceof SessionhostError && err.code === 'not_found', 'error op rejects with its code');
    const lost = c.send('s1', 'x');
    ws.drop(1006);
    const lerr = await lost.catch((e) => e);
    eq(lerr?.code, 'disconnected', 'an op in flight when the socket drops rejects');
    c.close();
    eq(c.state, 'closed', 'close() ends the client');
  }

  // -- subscribe, duplicates, resume after 1001 and 1013, gap, lagged --------
  {
    const c = make();
    const seen = [];
    let ws = latest();
    ws.open();
    const subscribed = c.subscribe('s', { fromSeq: 0, onEvent: (e) => seen.push(e.seq) });
    let f = ws.last('subscribe');
    eq([f.session, f.from_seq], ['s', 0], 'subscribe from_seq 0');
    ws.push({ op: 'subscribed', session: 's', last_seq: 2, ref: f.ref });
    eq(await subscribed, { session: 's', last_seq: 2 }, 'subscribe resolves');
    for (const seq of [1, 2, 2, 1, 3])
      ws.push({ op: 'event', session: 's', seq, type: 't', data: {}, ts: 1 });
    ws.push({ op: 'event', session: 'other', seq: 4, type: 't', data: {}, ts: 1 });
    eq(seen, [1, 2, 3], 'duplicates dropped, other sessions ignored');
    check(!ws.last('unsubscribe'), 'a duplicate is no gap: no resubscribe');

    for (const code of [1001, 1013]) {
      ws.drop(code);
      await until(`a new socket after ${code}`, () => latest() !== ws);
      ws = latest();
      ws.open();
      f = ws.last('subscribe');
      eq(f?.from_seq, seen[seen.length - 1], `resubscribe from the last seq after ${code}`);
      ws.push({ op: 'subscribed', session: 's', last_seq: 9, ref: f.ref });
      const from = seen[seen.length - 1];
      for (const seq of [from, from + 1, from + 2])
        ws.push({ op: 'event', session: 's', seq, type: 't', data: {}, ts: 1 });
      await tick();
    }
    eq(seen, [1, 2, 3, 4, 5, 6, 7], 'every event once across two reconnects');
    eq(c.reconnects, 2, 'reconnects counted');

    // A gap is never shown: the client resubscribes from its last seq.
    await tick(); // (a browser runs each frame as its own task)
    ws.sent.length = 0;
    ws.push({ op: 'event', session: 's', seq: 9, type: 't', data: {}, ts: 1 });
    eq(seen.length, 7, 'an event after a gap is held back');
    const un = ws.last('unsubscribe');
    check(un?.session === 's', 'a gap unsubscribes');
    ws.push({ op: 'unsubscribed', session: 's', ref: un.ref });
    await until('resubscribe after a gap', () => ws.last('subscribe'));
    f = ws.last('subscribe');
    eq(f?.from_seq, 7, 'resubscribe after a gap from the last seq');
    ws.push({ op: 'subscribed', session: 's', last_seq: 9, ref: f.ref });
    for (const seq of [8, 9])
      ws.push({ op: 'event', session: 's', seq, type: 't', data: {}, ts: 1 });
    eq(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9], 'the gap filled in order');

    // A lagged notice: the same.
    await tick();
    ws.sent.length = 0;
    ws.push({ op: 'lagged', session: 's', last_seq: 9 });
    const un2 = ws.last('unsubscribe');
    ws.push({ op: 'error', code: 'bad_request', message: 'not subscribed', ref: un2?.ref, session: 's' });
    await until('resubscribe after lagged', () => ws.last('subscribe'));
    eq(ws.last('subscribe')?.from_seq, 9, 'resubscribe after lagged from the last seq');

    // An unloaded notice: resubscribed at once from the last seq (which
    // loads the session again), not after a pause.
    ws.push({ op: 'subscribed', session: 's', last_seq: 9, ref: ws.last('subscribe').ref });
    await tick();
    ws.sent.length = 0;
    ws.push({ op: 'unloaded', session: 's', last_seq: 9 });
    const un3 = ws.last('unsubscribe');
    check(un3?.session === 's', 'an unloaded notice resubscribes at once');
    ws.push({ op: 'error', code: 'bad_request', message: 'not subscribed', ref: un3?.ref, session: 's' });
    await until('resubscribe after unloaded', () => ws.last('subscribe'));
    eq(ws.last('subscribe')?.from_seq, 9, 'resubscribe after unloaded from the last seq');

    // Unsubscribed: nothing more is delivered.
    ws.push({ op: 'subscribed', session: 's', last_seq: 9, ref: ws.last('subscribe')?.ref });
    await tick();
    const done = c.unsubscribe('s');
    ws.push({ op: 'unsubscribed', session: 's', ref: ws.last('unsubscribe').ref });
    await done;
    ws.push({ op: 'event', session: 's', seq: 10, type: 't', data: {}, ts: 1 });
    eq(seen.length, 9, 'no events after unsubscribe');
    eq(c.lastSeq('s'), null, 'lastSeq forgotten after unsubscribe');
    c.close();
  }

  // -- the server ends a subscription (e.g. shutting down) -------------------
  {
    const c = make();
    const seen = [], errors = [];
    let ws = latest();
    ws.open();
    const p = c.subscribe('s', { fromSeq: 0, onEvent: (e) => seen.push(e.seq),
                                 onError: (e) => errors.push(e.code) });
    ws.push({ op: 'subscribed', session: 's', last_seq: 1, ref: ws.last('subscribe').ref });
    await p;
    ws.push({ op: 'event', session: 's', seq: 1, type: 't', data: {}, ts: 1 });
    await tick();
    // Ended on a live socket: retried there after a backoff.
    ws.sent.length = 0;
    ws.push({ op: 'error', code: 'internal', message: 'events missing', ref: null, session: 's' });
    eq(errors, ['internal'], 'onError hears a subscription the server ended');
    await until('a resync after the server ended it', () => ws.last('unsubscribe'));
    ws.push({ op: 'error', code: 'bad_request', message: 'not subscribed', ref: ws.last('unsubscribe').ref, session: 's' });
    await until('and a subscribe', () => ws.last('subscribe'));
    eq(ws.last('subscribe').from_seq, 1, 'from the last seq');
    ws.push({ op: 'subscribed', session: 's', last_seq: 1, ref: ws.last('subscribe').ref });
    await tick();
    // Ended just before the socket closes (shutdown): one resubscribe only.
    ws.push({ op: 'error', code: 'unavailable', message: 'host is shutting down', ref: null, session: 's' });
    ws.drop(1001);
    await until('a new socket', () => latest() !== ws);
    ws = latest();
    ws.open();
    ws.push({ op: 'subscribed', session: 's', last_seq: 1, ref: ws.last('subscribe').ref });
    await tick(50); // past the retry's backoff (at most 4 ms here)
    eq(ws.sent.map((f) => f.op), ['subscribe'], 'a reconnect resubscribes once');
    ws.push({ op: 'event', session: 's', seq: 2, type: 't', data: {}, ts: 1 });
    eq(seen, [1, 2], 'and events continue');
    c.close();
  }

  // -- subscribe before the socket opens; refused subscribe -----------------
  {
    const c = make();
    const seen = [];
    const p = c.subscribe('s', { onEvent: (e) => seen.push(e.seq) });
    const ws = latest();
    ws.open();
    const f = ws.last('subscribe');
    check(f && !('from_seq' in f), 'live-only subscribe has no from_seq');
    eq(ws.sent.filter((x) => x.op === 'subscribe').length, 1, 'one subscribe frame');
    ws.push({ op: 'subscribed', session: 's', last_seq: 5, ref: f.ref });
    await p;
    ws.push({ op: 'event', session: 's', seq: 6, type: 't', data: {}, ts: 1 });
    eq(seen, [6], 'live events after last_seq');
    const q = c.subscribe('gone');
    const g = ws.last('subscribe');
    ws.push({ op: 'error', code: 'not_found', message: 'no session gone', ref: g.ref, session: 'gone' });
    eq((await q.catch((e) => e))?.code, 'not_found', 'a refused subscribe rejects');
    eq(c.lastSeq('gone'), null, 'and is forgotten');
    c.close();
  }

  // -- attach, heartbeats on a timer, re-attach after a reconnect ------------
  {
    const c = make();
    let ws = latest();
    ws.open();
    const p = c.attach('s', 'user-1', { heartbeatMs: 5 });
    let a = ws.last('attach');
    eq([a.session, a.peer], ['s', 'user-1'], 'attach frame');
    ws.push({ op: 'ack', session: 's', ref: a.ref, peer: 'user-1', peer_connected: true, reconnects: 0, state: 'ACTIVE' });
    eq((await p).peer_connected, true, 'attach resolves with the ack');
    await until('heartbeats on a timer', () => ws.sent.filter((x) => x.op === 'heartbeat').length >= 2);
    ws.drop(1001);
    await until('a new socket', () => latest() !== ws);
    ws = latest();
    ws.open();
    a = ws.last('attach');
    eq(a?.peer, 'user-1', 're-attach with the same peer after a reconnect');
    ws.push({ op: 'ack', session: 's', ref: a.ref, peer: 'user-1', peer_connected: true, reconnects: 1, state: 'ACTIVE' });
    await until('heartbeats resume', () => ws.sent.some((x) => x.op === 'heartbeat'));
    // Refused on a later reconnect (another peer took over): no more tries.
    const errs = [];
    c.on('error', (e) => errs.push(e.code));
    ws.drop(1001);
    await until('a new socket', () => latest() !== ws);
    ws = latest();
    ws.open();
    a = ws.last('attach');
    ws.push({ op: 'error', code: 'conflict', message: 'another peer', ref: a.ref, session: 's' });
    await tick();
    eq(errs, ['conflict'], 'a refused re-attach is reported');
    const old = ws;
    ws.drop(1001);
    await until('a new socket', () => latest() !== old);
    ws = latest();
    ws.open();
    check(!ws.last('attach'), 'and not tried again');
    await tick(20);
    check(!ws.sent.some((x) => x.op === 'heartbeat'), 'nor heartbeats');
    c.attach('s', 'user-1', { heartbeatMs: 5 });
    a = ws.last('attach');
    ws.push({ op: 'ack', session: 's', ref: a.ref, peer: 'user-1', peer_connected: true, reconnects: 2, state: 'ACTIVE' });
    await tick();
    const d = c.detach('s');
    const df = ws.last('detach');
    ws.push({ op: 'ack', session: 's', ref: df.ref, peer: 'user-1', peer_connected: false, reconnects: 1, state: 'ACTIVE' });
    await d;
    const before = ws.sent.length;
    await tick(30);
    eq(ws.sent.length, before, 'no heartbeats after detach');
    c.close();
  }

  // -- a request nobody answers times out ------------------------------------
  {
    const c = make({ requestTimeoutMs: 20 });
    latest().open();
    eq((await c.heartbeat('s').catch((e) => e))?.code, 'timeout', 'unanswered op times out');
    c.close();
  }
  return failures;
}
