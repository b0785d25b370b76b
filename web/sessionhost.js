// sessionhost.js — the JavaScript client of `sessionhost serve`'s WebSocket
// (docs/PROTOCOL.md, "WebSocket" and "JavaScript client"). A plain ES module
// with no dependencies and no build step: browsers load it as
// `<script type="module">`, and anything else that has a standard `WebSocket`
// (Deno, Node ≥ 22, or one passed as `options.WebSocket`) can use it too.
//
//   import { SessionhostClient } from '/web/sessionhost.js';
//   const client = new SessionhostClient({ token });     // URL: this page's /v1/ws
//   client.on('state', (s) => console.log(s));           // connecting, open, closed
//   const sub = await client.subscribe(id, { fromSeq: 0, onEvent: (e) => show(e) });
//   const { seq } = await client.send(id, { text: 'hi' });   // resolves once durable
//   await client.publish(id, 'log', { line: 'x' });
//   await client.attach(id, 'user-1', { heartbeatMs: 10000 }); // heartbeats on a timer
//   await client.detach(id);
//   await client.unsubscribe(id);
//   client.close();
//
// What it guarantees:
// - Every op carries a `ref`; its promise resolves with the server's answer
//   (`ack`, `subscribed`, `unsubscribed`) or rejects with a SessionhostError
//   whose `code` is the server's (`not_found`, `conflict`, …), `timeout`
//   (no answer within `requestTimeoutMs`), `disconnected` (the socket closed
//   before the answer: a send may or may not have been applied) or `closed`.
// - Ops issued while the socket is down wait for it (within their timeout).
// - When the socket closes for any reason but close() — server restart
//   (1001), too slow a reader (1013), network loss — it reconnects with
//   exponential backoff (`backoff.initialMs` doubling up to `backoff.maxMs`,
//   each delay drawn between half and all of that, so clients of a restarted
//   server do not all come back at once), then resubscribes every
//   subscription with `from_seq` = the last seq it delivered and attaches
//   every attached session again with the same peer (a reconnect).
// - `onEvent` sees each session's events in seq order, each exactly once:
//   anything at or below the last delivered seq is dropped, and a gap (which
//   the server never sends) or a `lagged` notice makes the client
//   resubscribe from the last seq instead of skipping ahead; after an
//   `unloaded` notice it resubscribes from the last seq at once.
// - `token` goes in the URL (`?token=`), since browsers cannot set headers
//   on a WebSocket.

/** The error every rejected promise carries; `code` says why. */
export class SessionhostError extends Error {
  constructor(code, message, frame) {
    super(message || code);
    this.name = 'SessionhostError';
    this.code = code;
    this.frame = frame ?? null; // the server's error op, when there was one
  }
}

/** The WebSocket URL of the server that served `location` (browsers). */
export function defaultUrl(loc = globalThis.location) {
  if (!loc) throw new Error('no location: pass options.url');
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/v1/ws`;
}

/**
 * Delay before reconnect attempt `attempt` (0, 1, …): initialMs · 2^attempt
 * capped at maxMs, then a uniform draw in [half, all] of it (jitter).
 */
export function backoffDelay(attempt, { initialMs = 250, maxMs = 10000 } = {},
                             random = Math.random) {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return cap / 2 + random() * (cap / 2);
}

const OPEN = 1; // WebSocket.OPEN, without needing the global

export class SessionhostClient {
  /**
   * @param {object} [options]
   * @param {string} [options.url]  ws(s)://host/v1/ws; default: the page's server
   * @param {string} [options.token]  bearer token, sent as ?token=
   * @param {number} [options.requestTimeoutMs=10000]  per op
   * @param {{initialMs?: number, maxMs?: number}} [options.backoff]
   * @param {Function} [options.WebSocket]  constructor; default: the global one
   * @param {boolean} [options.autoConnect=true]  connect at once
   */
  constructor(options = {}) {
    this.url = options.url ?? defaultUrl();
    this.token = options.token ?? '';
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10000;
    this.backoff = { initialMs: 250, maxMs: 10000, ...options.backoff };
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    /** 'idle' | 'connecting' | 'open' | 'closed' (after close()) */
    this.state = 'idle';
    /** How many times the socket was opened again after a drop. */
    this.reconnects = 0;
    this._ws = null;
    this._attempt = 0;
    this._everOpen = false;
    this._retryTimer = null;
    this._nextRef = 1;
    this._pending = new Map(); // ref → {resolve, reject, timer, frame, sent}
    this._subs = new Map();    // session → subscription record
    this._peers = new Map();   // session → {peer, heartbeatMs, timer}
    this._listeners = new Map(); // name → Set of functions
    if (options.autoConnect !== false) this.connect();
  }

  // -- connection -----------------------------------------------------------

  /** Opens the socket (again); a no-op while open or connecting. */
  connect() {
    if (this.state === 'closed') throw new SessionhostError('closed', 'client closed');
    if (this._ws) return;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const url = this.token
      ? `${this.url}${this.url.includes('?') ? '&' : '?'}token=${encodeURIComponent(this.token)}`
      : this.url;
    this._setState('connecting');
    let ws;
    try {
      ws = new this.WebSocket(url);
    } catch (err) {
      this._emit('error', err);
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (m) => this._onMessage(ws, m);
    ws.onclose = (e) => this._onClose(ws, e);
    ws.onerror = () => {}; // onclose follows and carries the code
  }

  /** Ends everything: no reconnect; pending ops reject with `closed`. */
  close() {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this._retryTimer);
    for (const p of this._peers.values()) clearInterval(p.timer);
    this._peers.clear();
    for (const sub of this._subs.values())
      this._settleFirst(sub, new SessionhostError('closed', 'client closed'));
    this._subs.clear();
    this._rejectPending(() => true, 'closed', 'client closed');
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      try { ws.close(1000, 'bye'); } catch { /* already closing */ }
    }
    this._emit('state', 'closed');
  }

  /**
   * Listens to 'state' (connecting, open, closed), 'reconnect' ({attempt,
   * delayMs, code}) or 'error' (a SessionhostError no promise was waiting
   * for). Returns a function that stops listening.
   */
  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this._listeners.get(name).delete(fn);
  }

  // -- subscriptions -------------------------------------------------------

  /**
   * Subscribes to a session's events. `fromSeq` (optional): start after that
   * seq (0: from the first event); without it, only events after the
   * session's current last seq. `onEvent(event)` gets {session, seq, type,
   * data, ts} in seq order, each once, across reconnects. `onError(err)`
   * hears a subscription the server ended (it is retried) or could not
   * restore (it is dropped). Resolves with {session, last_seq} once
   * subscribed.
   */
  subscribe(session, { fromSeq, onEvent = () => {}, onError = () => {} } = {}) {
    if (this._subs.has(session))
      return Promise.reject(new SessionhostError('conflict', `already subscribed to ${session}`));
    return new Promise((resolve, reject) => {
      const sub = {
        session, onEvent, onError,
        lastSeq: fromSeq ?? null, // last seq delivered (or started after)
        live: false,      // the server confirmed the current subscribe
        inflight: false,  // a subscribe frame is queued or unanswered
        resyncing: false,
        failures: 0,
        first: { resolve, reject }, // settled by the first answer only
      };
      this._subs.set(session, sub);
      this._subscribeFrame(sub);
    });
  }

  /** Stops a subscription; resolves once the server confirmed it. */
  unsubscribe(session) {
    const sub = this._subs.get(session);
    if (!sub)
      return Promise.reject(new SessionhostError('bad_request', `not subscribed to ${session}`));
    this._subs.delete(session);
    this._settleFirst(sub, new SessionhostError('cancelled', 'unsubscribed before subscribed'));
    return this._request({ op: 'unsubscribe', session }).catch((err) => {
      // Dropped by the connection already: nothing left to stop.
      if (err.code === 'disconnected' || err.code === 'bad_request') return null;
      throw err;
    });
  }

  /** The last seq delivered to `onEvent` for a session (null: none yet). */
  lastSeq(session) {
    return this._subs.get(session)?.lastSeq ?? null;
  }

  // -- commands --------------------------------------------------------------

  /** Sends a message (the session's input); resolves {seq} once durable. */
  send(session, data) {
    return this._request({ op: 'send', session, data }).then((a) => ({ seq: a.seq }));
  }

  /** Publishes one event; resolves {seq} once durable. */
  publish(session, type, data = null) {
    return this._request({ op: 'publish', session, type, data }).then((a) => ({ seq: a.seq }));
  }

  /**
   * Makes this connection the session's peer and sends a heartbeat every
   * `heartbeatMs` (0: none; keep it well below the server's heartbeat
   * timeout, 30 s by default). After a reconnect the client attaches again
   * with the same peer. Resolves with {peer, peer_connected, reconnects, state}.
   */
  attach(session, peer, { heartbeatMs = 10000 } = {}) {
    const old = this._peers.get(session);
    if (old) clearInterval(old.timer);
    const rec = { peer, heartbeatMs, timer: null };
    this._peers.set(session, rec);
    return this._request({ op: 'attach', session, peer }).then((a) => {
      if (this._peers.get(session) === rec) this._startHeartbeat(session, rec);
      return a;
    }, (err) => {
      if (this._peers.get(session) === rec) this._peers.delete(session);
      throw err;
    });
  }

  /** One heartbeat now; resolves {ts}. */
  heartbeat(session) {
    return this._request({ op: 'heartbeat', session }).then((a) => ({ ts: a.ts }));
  }

  /** Ends this connection's peering (session_close reason manual). */
  detach(session) {
    const rec = this._peers.get(session);
    if (rec) clearInterval(rec.timer);
    this._peers.delete(session);
    return this._request({ op: 'detach', session });
  }

  // -- internals -----------------------------------------------------------

  _emit(name, value) {
    for (const fn of this._listeners.get(name) ?? []) {
      try { fn(value); } catch (e) { console.error(e); }
    }
  }

  _setState(s) {
    if (this.state === s || this.state === 'closed') return;
    this.state = s;
    this._emit('state', s);
  }

  /**
   * Sends `frame` with a fresh ref (now, or once the socket is open) and
   * resolves with the answer frame; rejects with a SessionhostError.
   */
  _request(frame) {
    if (this.state === 'closed')
      return Promise.reject(new SessionhostError('closed', 'client closed'));
    const ref = this._nextRef++;
    return new Promise((resolve, reject) => {
      const p = { resolve, reject, frame: { ...frame, ref }, sent: false };
      p.timer = setTimeout(() => {
        this._pending.delete(ref);
        reject(new SessionhostError('timeout', `no answer to ${frame.op} within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this._pending.set(ref, p);
      if (this._ws && this._ws.readyState === OPEN) this._transmit(p);
      else if (!this._ws && !this._retryTimer) this.connect();
    });
  }

  _transmit(p) {
    p.sent = true;
    if (p.frame.op === 'subscribe') {
      // Queued while the socket was down: start after what was delivered since.
      const sub = this._subs.get(p.frame.session);
      if (sub && sub.lastSeq !== null) p.frame.from_seq = sub.lastSeq;
    }
    this._ws.send(JSON.stringify(p.frame));
  }

  _rejectPending(which, code, message) {
    for (const [ref, p] of this._pending) {
      if (!which(p)) continue;
      clearTimeout(p.timer);
      this._pending.delete(ref);
      p.reject(new SessionhostError(code, message));
    }
  }

  /** Sends (or queues) a subscribe from the last delivered seq. */
  _subscribeFrame(sub) {
    sub.live = false;
    sub.inflight = true;
    const frame = { op: 'subscribe', session: sub.session };
    if (sub.lastSeq !== null) frame.from_seq = sub.lastSeq;
    return this._request(frame).then((answer) => {
      sub.inflight = false;
      if (this._subs.get(sub.session) !== sub) return;
      sub.live = true;
      sub.resyncing = false;
      sub.failures = 0;
      if (sub.lastSeq === null) sub.lastSeq = answer.last_seq;
      this._settleFirst(sub, null, { session: sub.session, last_seq: answer.last_seq });
    }, (err) => {
      sub.inflight = false;
      sub.resyncing = false;
      this._subscriptionFailed(sub, err);
    });
  }

  _settleFirst(sub, err, value) {
    const first = sub.first;
    if (!first) return;
    sub.first = null;
    if (err) first.reject(err);
    else first.resolve(value);
  }

  /** Subscribes again from the last delivered seq (after lag or a gap). */
  _resync(sub) {
    if (sub.resyncing || sub.inflight || this._subs.get(sub.session) !== sub) return;
    sub.live = false;
    if (!this._ws || this._ws.readyState !== OPEN) return; // the next socket subscribes
    sub.resyncing = true;
    const again = () => {
      if (this._subs.get(sub.session) === sub && !sub.inflight) this._subscribeFrame(sub);
      else sub.resyncing = false;
    };
    // The unsubscribe may fail (the server already ended it): resubscribe anyway.
    this._request({ op: 'unsubscribe', session: sub.session }).then(again, again);
  }

  /**
   * A (re)subscribe was refused or ended by the server: retry with backoff
   * a few times, then drop the subscription. A lost socket is not a
   * failure: reopening it resubscribes.
   */
  _subscriptionFailed(sub, err) {
    if (this._subs.get(sub.session) !== sub) return;
    sub.live = false;
    if (err.code === 'disconnected' || err.code === 'closed') return;
    sub.failures += 1;
    const permanent = ['not_found', 'bad_request', 'unauthorized', 'forbidden'];
    if (permanent.includes(err.code) || sub.failures > 5) {
      this._subs.delete(sub.session);
      if (sub.first) this._settleFirst(sub, err);
      else sub.onError(err);
      return;
    }
    sub.onError(err);
    // Unless a reconnect resubscribed meanwhile.
    setTimeout(() => { if (!sub.live) this._resync(sub); },
               backoffDelay(sub.failures, this.backoff));
  }

  _onOpen(ws) {
    if (ws !== this._ws) return;
    if (this._everOpen) this.reconnects += 1;
    this._everOpen = true;
    this._attempt = 0;
    this._setState('open');
    // Restore subscriptions (from their last seq) and peers, then anything
    // queued meanwhile. Frames of one socket are handled in order, so the
    // subscribes go first.
    for (const sub of this._subs.values()) {
      // Queued subscribes go below; a resync subscribes once its
      // unsubscribe is answered.
      if (!sub.inflight && !sub.resyncing) this._subscribeFrame(sub);
    }
    for (const [session, rec] of this._peers) {
      this._request({ op: 'attach', session, peer: rec.peer }).then(() => {
        if (this._peers.get(session) === rec) this._startHeartbeat(session, rec);
      }, (err) => {
        // Refused (e.g. another peer holds the session): stop trying; a
        // lost socket is retried by the next reconnect.
        if (err.code !== 'disconnected' && this._peers.get(session) === rec)
          this._peers.delete(session);
        this._emit('error', err);
      });
    }
    for (const p of this._pending.values()) if (!p.sent) this._transmit(p);
  }

  _onMessage(ws, m) {
    if (ws !== this._ws || typeof m.data !== 'string') return;
    let f;
    try { f = JSON.parse(m.data); } catch { return; }
    if (f === null || typeof f !== 'object') return;
    if (f.op === 'event') return this._onEvent(f);
    if (f.op === 'lagged') {
      const sub = this._subs.get(f.session);
      if (sub) this._resync(sub);
      return;
    }
    if (f.op === 'unloaded') {
      // The server ended this subscription (the session was unloaded, or the
      // server is stopping). A page still watching resumes it at once from
      // its last seq, which loads the session again. A stopping server
      // refuses that (retried with backoff) or closes the socket
      // (reconnecting resumes it).
      const sub = this._subs.get(f.session);
      if (sub && this._ws === ws) this._resync(sub);
      return;
    }
    const p = f.ref !== undefined && f.ref !== null ? this._pending.get(f.ref) : undefined;
    if (p) {
      clearTimeout(p.timer);
      this._pending.delete(f.ref);
      if (f.op === 'error') p.reject(new SessionhostError(f.code, f.message, f));
      else p.resolve(f);
      return;
    }
    if (f.op === 'error' && (f.ref === undefined || f.ref === null)) {
      // Not an answer: the server ended a subscription by itself.
      const err = new SessionhostError(f.code, f.message, f);
      const sub = f.session !== undefined ? this._subs.get(f.session) : undefined;
      if (sub && !sub.resyncing) this._subscriptionFailed(sub, err);
      else this._emit('error', err);
    }
  }

  _onEvent(e) {
    const sub = this._subs.get(e.session);
    if (!sub || typeof e.seq !== 'number') return;
    if (sub.lastSeq !== null && e.seq <= sub.lastSeq) return; // seen already
    if (sub.lastSeq !== null && e.seq !== sub.lastSeq + 1) {
      this._resync(sub); // never skip ahead: fetch the missing ones first
      return;
    }
    if (sub.lastSeq === null && !sub.live) return; // before `subscribed`: unknown base
    sub.lastSeq = e.seq;
    const { op, ...event } = e;
    try { sub.onEvent(event); } catch (err) { console.error(err); }
  }

  _onClose(ws, e) {
    if (ws !== this._ws) return;
    this._ws = null;
    for (const sub of this._subs.values()) sub.live = false;
    for (const rec of this._peers.values()) { clearInterval(rec.timer); rec.timer = null; }
    // Answers to what was sent will never come; queued ops wait for the next socket.
    this._rejectPending((p) => p.sent, 'disconnected',
                        `connection closed (${e.code}) before the answer`);
    if (this.state === 'closed') return;
    this._setState('connecting');
    this._scheduleReconnect(e.code);
  }

  _scheduleReconnect(code) {
    const delayMs = backoffDelay(this._attempt, this.backoff);
    this._emit('reconnect', { attempt: this._attempt, delayMs, code });
    this._attempt += 1;
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this.connect();
    }, delayMs);
  }

  _startHeartbeat(session, rec) {
    clearInterval(rec.timer);
    rec.timer = null;
    if (!(rec.heartbeatMs > 0)) return;
    rec.timer = setInterval(() => {
      this.heartbeat(session).catch((err) => {
        if (err.code !== 'disconnected' && err.code !== 'closed') this._emit('error', err);
      });
    }, rec.heartbeatMs);
  }
}
