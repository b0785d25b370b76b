#include "actors/session_actor.hpp"

#include <algorithm>
#include <iterator>
#include <functional>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/event_bus.hpp"
#include "actors/idempotency_window.hpp"
#include "host/error.hpp"
#include "host/json_check.hpp"
#include "host/session_type.hpp"

namespace sessionhost {

namespace {

using json = nlohmann::json;

constexpr size_t max_type_length = 64;

// A lifecycle event's data: its metadata as one JSON object.
std::string lifecycle_payload(const metadata_map& md) {
  json payload = json::object();
  for (auto& [k, v] : md)
    payload[k] = v;
  return payload.dump();
}

// What a snapshot holds beyond what the store rebuilds from the events after
// it (last_seq, updated_at, and the liveness-only last_heartbeat): when this
// changes, the next batch writes the session row.
uint64_t info_fingerprint(const session_info& i) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t x) { h = (h ^ x) * 1099511628211ull; };
  std::hash<std::string> str;
  mix(str(i.type));
  mix(str(i.role));
  for (auto& [k, v] : i.metadata) {
    mix(str(k));
    mix(str(v));
  }
  mix(static_cast<uint64_t>(i.state));
  mix(static_cast<uint64_t>(i.created_at));
  mix(i.message_count);
  mix(i.reconnects);
  mix(str(i.peer));
  mix(i.peer_connected ? 1 : 2);
  return h | 1; // never 0: that means "no snapshot written yet"
}

// Session code talks to its actor through the typed base: everything but the
// state, which it is.
using actor_pointer = session_actor::base*;

// The acks that the continuations run by one on_durable owe connections:
// one message per connection (set while they run; one actor at a time runs
// on a thread, and on_durable does not nest).
struct conn_acks {
  std::vector<std::pair<caf::actor, std::vector<uint64_t>>> by_conn;

  void add(const caf::actor& conn, uint64_t ask, uint64_t seq) {
    auto i = by_conn.rbegin(); // a session has one peer: mostly the last
    while (i != by_conn.rend() && i->first != conn)
      ++i;
    auto& out = i != by_conn.rend() ? i->second
                                    : by_conn.emplace_back(conn, std::vector<uint64_t>{}).second;
    out.push_back(ask);
    out.push_back(seq);
  }

  void send_all() {
    for (auto& [conn, acks] : by_conn)
      caf::anon_send(conn, publish_acks_atom::value, std::move(acks));
    by_conn.clear();
  }
};
thread_local conn_acks* acks_in_progress = nullptr;

// Sets acks_in_progress for a scope, then sends what it gathered.
struct gather_acks {
  conn_acks acks;
  gather_acks() { acks_in_progress = &acks; }
  ~gather_acks() {
    acks_in_progress = nullptr;
    acks.send_all();
  }
};

// Everything one session owns. Methods run inside the actor only.
struct session_data : session_control, session_context {
  static inline const char* name = "sessionhost.session";

  actor_pointer self = nullptr;
  session_info rec;
  services_ptr svc;
  session_host_actor host;
  caf::actor peer_conn; // monitored; its death is connection_lost

  // -- event bus and output gate --------------------------------------------
  uint64_t next_seq = 1;
  // Vectors, not deques: an idle session must stay small, and libstdc++'s
  // deque allocates over 500 bytes before it holds anything.
  std::vector<event> pending; // emitted, not yet durable (seq order)
  std::vector<event> unsent;  // emitted, not yet handed to the listener
  // Continuations waiting for a seq to be durable (seq order); called with an
  // error when it never will be (fenced).
  std::vector<std::pair<uint64_t, std::function<void(const caf::error&)>>> waiting;
  event_bus bus;

  // -- the durable view (output gate for reads) ---------------------------------
  // What info/sync/replies show: the session as of its last durable seq,
  // never a change a crash could roll back. Null while nothing is in
  // flight: then `rec` is durable itself, and an idle session pays 8 bytes.
  struct durable_views {
    session_info durable; // as of durable.last_seq
    // Per batch handed to the listener, in order: `rec` as the batch left,
    // keyed by the seq it covers (its last event's).
    std::vector<std::pair<uint64_t, session_info>> in_flight;
    // Run once every batch sent so far is durable (an unload waiting for a
    // snapshot-only batch).
    std::vector<std::function<void(const caf::error&)>> when_settled;
  };
  std::unique_ptr<durable_views> views;

  // The stored snapshot: batches carry one only when the session's info
  // changed beyond last_seq/updated_at, every `snapshot_every` events, and
  // at unload; loading replays the events after it (host/store/catch_up.hpp).
  uint64_t snapshot_fp = 0;    // info_fingerprint of it; 0: none yet
  uint32_t since_snapshot = 0; // events flushed since the last snapshot

  // -- hooks, timers, unloading -----------------------------------------------
  uint64_t hb_gen = 0;
  uint64_t grace_gen = 0;
  micros last_activity = 0;

  // -- flags, side by side: padding after each would cost an idle session
  // 32 bytes ------------------------------------------------------------------
  bool flush_scheduled = false;
  bool store_failing = false;
  bool emitting = false;
  bool idle_reported = false; // the host has this session's idle time
  bool unloading = false;
  bool type_cleaned = false;
  bool grace_active = false;
  // A change with no event of its own (the peer forgotten after its grace)
  // sets it: the next flush carries a snapshot, even alone.
  bool snapshot_due = false;

  std::unique_ptr<session_type> type; // may be null: a passive session
  std::unique_ptr<idempotency_window> idem; // created by the first keyed publish
  // A type that holds resources cleans up itself: what waits for CLEANED.
  // Called with an error when the session is fenced before that.
  std::vector<std::function<void(const caf::error&)>> on_cleaned;

  bool holds_resources() const { return type && type->holds_resources(); }
  const host_config& cfg() const { return svc->config; }

  // -- emission ---------------------------------------------------------------

  // Appends an event to the stream; it reaches subscribers once durable.
  uint64_t emit(const std::string& type, std::string data,
              std::string idempotency_key = {}) {
    before_change();
    event e;
    e.idempotency_key = std::move(idempotency_key);
    e.session_id = rec.id;
    e.seq = next_seq++;
    e.type = type;
    e.data = std::move(data);
    e.ts = now();
    e.epoch = rec.epoch;
    rec.updated_at = e.ts;
    pending.push_back(e);
    unsent.push_back(std::move(e));
    svc->obs->counters.events_published++;
    schedule_flush();
    return next_seq - 1;
  }

  void schedule_flush() {
    if (!flush_scheduled) {
      flush_scheduled = true;
      // Goes behind whatever is queued already: one batch per burst.
      self->send(self, flush_atom::value);
    }
  }

  // Emits a lifecycle event: recorded in the observability hub too.
  uint64_t emit_lifecycle(const std::string& name, const metadata_map& md) {
    svc->obs->record(lifecycle_record{now(), rec.id, name, md});
    return emit(name, lifecycle_payload(md));
  }

  // Called before `rec` changes: keeps the durable view it is leaving (once:
  // later changes of the same burst go out with it). Every change that calls
  // this must emit an event or set `snapshot_due`, so it reaches a batch.
  void before_change() {
    if (!views) {
      views = std::make_unique<durable_views>();
      views->durable = rec;
    }
  }

  /// The session as of its last durable seq: what anyone outside sees.
  const session_info& durable_view() const {
    return views ? views->durable : rec;
  }

  uint64_t durable_seq() const { return durable_view().last_seq; }

  // Promotes the view of the batch that `seq` reports durable. The listener
  // reports each batch once, in order: a snapshot-only batch has the seq of
  // the batch before it, hence one entry per report at an equal seq.
  void promote(uint64_t seq) {
    if (!views)
      return;
    auto& q = views->in_flight;
    size_t n = 0;
    while (n < q.size() && q[n].first < seq)
      ++n;
    if (n < q.size() && q[n].first == seq)
      ++n;
    if (n == 0)
      return;
    views->durable = std::move(q[n - 1].second);
    q.erase(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(n));
  }

  void run_when_settled() {
    if (!views || !views->in_flight.empty() || views->when_settled.empty())
      return;
    auto run = std::move(views->when_settled);
    views->when_settled.clear();
    for (auto& fn : run)
      fn(caf::none);
  }

  // Runs `fn` once every batch sent so far is durable (at once if it is).
  void after_batches(std::function<void(const caf::error&)> fn) {
    if (views && !views->in_flight.empty())
      views->when_settled.push_back(std::move(fn));
    else
      fn(caf::none);
  }

  // Nothing left in flight: `rec` is what is durable.
  void drop_views_if_settled() {
    if (views && views->in_flight.empty() && views->when_settled.empty()
        && unsent.empty() && pending.empty() && !snapshot_due
        && !flush_scheduled)
      views.reset();
  }

  void fire(hook_kind kind, const metadata_map& md) {
    // The emission guard: a hook's own emissions do not re-enter hooks.
    if (emitting)
      return;
    emitting = true;
    hook_event ev{rec.id, kind, md, this};
    for (auto& fn : svc->hooks->collect(kind, rec.id))
      call_hook(*fn, ev);
    emitting = false;
  }

  void call_hook(const hook_fn& fn, const hook_event& ev) {
    try {
      fn(ev);
    } catch (const std::exception& e) {
      svc->obs->counters.hook_failures++;
      spdlog::warn("session {}: {} hook threw: {}", rec.id, to_string(ev.kind),
                   e.what());
    } catch (...) {
      svc->obs->counters.hook_failures++;
      spdlog::warn("session {}: {} hook threw", rec.id, to_string(ev.kind));
    }
  }

  // Runs `fn` once `seq` is durable (at once if it is already).
  void after_durable(uint64_t seq, std::function<void(const caf::error&)> fn) {
    if (seq <= durable_seq())
      fn(caf::none);
    else
      waiting.emplace_back(seq, std::move(fn));
  }

  // The seq the next reply has to wait for: the last one emitted.
  uint64_t last_emitted() const { return next_seq - 1; }

  template <class T>
  void reply_when_durable(caf::typed_response_promise<T> rp,
                          std::function<T()> value) {
    after_durable(last_emitted(), [rp, value](const caf::error& err) mutable {
      if (err)
        rp.deliver(err);
      else
        rp.deliver(value());
    });
  }

  void touch() {
    last_activity = now();
    arm_idle_timer();
  }

  // -- lifecycle --------------------------------------------------------------

  caf::error change_state(lifecycle_event ev, const std::string& reason) {
    auto t = next_state(rec.state, ev);
    if (!t.ok())
      return make_error(errc::invalid_transition, t.error().message());
    auto previous = rec.state;
    if (*t.to == previous)
      return caf::none; // TERMINATING + TERMINATE: idempotent, nothing new
    before_change();
    rec.state = *t.to;
    metadata_map md{{"state", to_string(rec.state)},
                    {"previous", to_string(previous)}};
    if (!reason.empty())
      md.emplace("reason", reason);
    emit_lifecycle(event_type::status_changed, md);
    if (host)
      self->send(host, state_changed_atom::value, rec.id, rec.state);
    return caf::none;
  }

  // mark_terminating: session:end first, so listeners can persist or clean
  // up, then the state change.
  caf::error terminate(const std::string& reason) {
    auto t = next_state(rec.state, lifecycle_event::terminate);
    if (!t.ok())
      return make_error(errc::invalid_transition, t.error().message());
    if (rec.state == session_state::terminating)
      return caf::none;
    if (peer_connected())
      close_peer("terminated");
    emit_lifecycle(event_type::session_end, {{"reason", reason}});
    auto err = change_state(lifecycle_event::terminate, reason);
    with_type("on_stop", [&](session_type& t) { t.on_stop(*this, reason); });
    return err;
  }

  // Built-in types own no process: cleanup completes at once. A type that
  // holds resources moves to CLEANED itself once they are released.
  void terminate_and_clean(const std::string& reason) {
    if (auto err = terminate(reason)) {
      spdlog::warn("session {}: {}", rec.id, message_of(err));
      return;
    }
    if (!holds_resources())
      change_state(lifecycle_event::clean, reason);
  }

  bool closed() const {
    return rec.state == session_state::terminating
           || rec.state == session_state::cleaned;
  }

  // -- peer -------------------------------------------------------------------

  bool peer_connected() const { return rec.peer_connected; }

  caf::error attach(const std::string& identity, caf::actor conn) {
    if (identity.empty())
      return make_error(errc::bad_request, "peer identity must not be empty");
    if (closed())
      return make_error(errc::conflict, "session " + rec.id + " is "
                                          + to_string(rec.state));
    bool same = identity == rec.peer;
    if (!same && (rec.peer_connected || grace_active))
      return make_error(errc::conflict, "session " + rec.id
                                          + " already has peer " + rec.peer);
    before_change(); // session_open below
    if (peer_conn && peer_conn != conn)
      self->demonitor(peer_conn.address());
    peer_conn = std::move(conn);
    if (peer_conn)
      self->monitor(peer_conn);
    metadata_map md{{"peer", identity}};
    if (same) {
      ++rec.reconnects;
      md.emplace("reconnects", std::to_string(rec.reconnects));
    }
    rec.peer = identity;
    rec.peer_connected = true;
    rec.last_heartbeat = now();
    grace_active = false;
    ++grace_gen; // a pending grace timer no longer applies
    emit_lifecycle(event_type::session_open, md);
    fire(hook_kind::session_open, md);
    arm_heartbeat_timer(cfg().heartbeat_timeout);
    if (host)
      self->send(host, peer_changed_atom::value, rec.id, rec.peer, true);
    return caf::none;
  }

  // Ends the peer's connection with `reason`; keeps its identity so the same
  // peer attaching again counts as a reconnect.
  void close_peer(const std::string& reason) {
    before_change(); // session_close below
    rec.peer_connected = false;
    ++hb_gen; // the heartbeat timer no longer applies
    if (peer_conn) {
      self->demonitor(peer_conn.address());
      peer_conn = nullptr;
    }
    metadata_map md{{"reason", reason}, {"peer", rec.peer}};
    emit_lifecycle(event_type::session_close, md);
    fire(hook_kind::session_close, md);
    if (host)
      self->send(host, peer_changed_atom::value, rec.id, rec.peer, false);
    touch();
  }

  caf::error detach(const std::string& reason) {
    if (reason != "manual" && reason != "connection_lost")
      return make_error(errc::bad_request,
                        "detach reason must be manual or connection_lost");
    if (!rec.peer_connected)
      return make_error(errc::conflict, "session " + rec.id
                                          + " has no connected peer");
    close_peer(reason);
    if (reason == "connection_lost")
      start_grace();
    return caf::none;
  }

  void start_grace() {
    grace_active = true;
    auto gen = ++grace_gen;
    self->delayed_send(self, cfg().reconnect_grace, grace_check_atom::value,
                       gen);
  }

  void on_grace_check(uint64_t gen) {
    if (unloading || gen != grace_gen || !grace_active || rec.peer_connected)
      return;
    grace_active = false;
    if (cfg().on_grace_expired == grace_policy::terminate) {
      terminate_and_clean("reconnect_grace_expired");
    } else {
      before_change(); // no event: a snapshot-only batch writes it
      rec.peer.clear(); // kept without a peer
      snapshot_due = true;
      schedule_flush();
      if (host)
        self->send(host, peer_changed_atom::value, rec.id, std::string{},
                   false);
    }
  }

  void arm_heartbeat_timer(std::chrono::milliseconds after) {
    auto gen = ++hb_gen;
    self->delayed_send(self, after, hb_check_atom::value, gen);
  }

  void on_heartbeat_check(uint64_t gen) {
    if (unloading || gen != hb_gen || !rec.peer_connected)
      return;
    auto timeout_us = std::chrono::duration_cast<std::chrono::microseconds>(
                        cfg().heartbeat_timeout)
                        .count();
    auto deadline = rec.last_heartbeat + timeout_us;
    auto t = now();
    if (t < deadline) {
      // A heartbeat came in since: one timer per session, re-armed lazily.
      arm_heartbeat_timer(std::chrono::milliseconds((deadline - t + 999) / 1000));
      return;
    }
    // Always this order: heartbeat_timeout, then session_close.
    metadata_map md{{"peer", rec.peer}};
    emit_lifecycle(event_type::heartbeat_timeout, md);
    fire(hook_kind::heartbeat_timeout, md);
    close_peer("heartbeat_timeout");
    if (cfg().on_heartbeat_timeout == heartbeat_policy::terminate)
      terminate_and_clean("heartbeat_timeout");
    else
      start_grace();
  }

  // -- idle passivation -------------------------------------------------------

  bool idle_now() const {
    return bus.empty() && !rec.peer_connected && pending.empty()
           && !grace_active && !unloading && !holds_resources();
  }

  // Idle passivation without a timer per session: an idle session tells the
  // host when it may be idle for long enough, once; the host keeps one timer
  // for all of them and asks back (idle_check) at that time.
  void arm_idle_timer() { arm_idle_timer(last_activity); }

  // Reports `from` + idle_timeout as the time to check again.
  void arm_idle_timer(micros from) {
    if (idle_reported || cfg().idle_timeout.count() <= 0 || unloading || !host)
      return;
    idle_reported = true;
    self->send(host, idle_soon_atom::value, from + idle_timeout_us());
  }

  micros idle_timeout_us() const {
    return std::chrono::duration_cast<std::chrono::microseconds>(
             cfg().idle_timeout)
      .count();
  }

  void on_idle_check() {
    idle_reported = false;
    if (unloading)
      return;
    if (!idle_now())
      arm_idle_timer(now()); // busy (a subscriber, a peer): look again later
    else if (now() - last_activity >= idle_timeout_us())
      self->send(host, idle_atom::value, rec.id, uint64_t{0});
    else
      arm_idle_timer(); // active since it reported
  }

  // -- persistence ------------------------------------------------------------

  session_info snapshot() const {
    auto snap = rec;
    snap.last_seq = last_emitted();
    snap.loaded = false;
    return snap;
  }

  // Whether the stored snapshot lags behind more than the event tail the
  // store replays on load (last_seq, updated_at).
  bool snapshot_stale() const {
    return snapshot_due || since_snapshot > 0
           || info_fingerprint(rec) != snapshot_fp;
  }

  void flush() {
    flush_scheduled = false;
    if (unsent.empty() && !snapshot_due) {
      drop_views_if_settled();
      return;
    }
    bool forced = snapshot_due;
    snapshot_due = false;
    if (views) { // `rec` as this batch leaves: the durable view once it is
      views->in_flight.emplace_back(last_emitted(), rec);
      views->in_flight.back().second.last_seq = last_emitted();
    }
    append_batch batch;
    batch.session_id = rec.id;
    batch.epoch = rec.epoch;
    since_snapshot += static_cast<uint32_t>(unsent.size());
    batch.events = std::move(unsent);
    unsent.clear();
    // Rewriting the session row costs more than the events of a small batch
    // (it touches every index of the sessions table): only when needed.
    auto fp = info_fingerprint(rec);
    if (forced || fp != snapshot_fp
        || since_snapshot >= std::max<size_t>(cfg().snapshot_every, 1)) {
      batch.snapshot = snapshot();
      snapshot_fp = fp;
      since_snapshot = 0;
    }
    self->send(svc->persistence, persist_atom::value, session_actor{self},
               std::move(batch));
  }

  void on_durable(uint64_t seq) {
    promote(seq);
    if (seq <= rec.last_seq) { // a snapshot-only batch
      run_when_settled();
      drop_views_if_settled();
      return;
    }
    rec.last_seq = seq;
    store_failing = false;
    std::vector<event> released;
    auto upto = std::find_if(pending.begin(), pending.end(),
                             [seq](const event& e) { return e.seq > seq; });
    released.assign(std::make_move_iterator(pending.begin()),
                    std::make_move_iterator(upto));
    pending.erase(pending.begin(), upto);
    if (pending.empty())
      pending.shrink_to_fit();
    if (!released.empty() && !bus.empty()) {
      auto last = released.back().seq;
      auto n = static_cast<uint64_t>(released.size());
      // One message shared by every subscriber: no copy per subscriber.
      auto msg = caf::make_message(events_atom::value, rec.id,
                                   std::move(released));
      auto dropped = bus.deliver(self, msg, n, last, cfg().subscriber_window,
                                 [this](const caf::actor_addr& a,
                                        uint64_t k) { bus.credit(a, k); });
      for (auto& [sub, upto] : dropped) {
        svc->obs->counters.subscribers_dropped++;
        self->demonitor(sub.address());
        caf::anon_send(sub, lagged_atom::value, rec.id, upto);
      }
    }
    // Replies show the durable view, so they wait until it covers them.
    auto ready = std::find_if(waiting.begin(), waiting.end(),
                              [upto = durable_seq()](const auto& w) {
                                return w.first > upto;
                              });
    std::vector<std::function<void(const caf::error&)>> run;
    for (auto i = waiting.begin(); i != ready; ++i)
      run.push_back(std::move(i->second));
    waiting.erase(waiting.begin(), ready);
    if (waiting.empty())
      waiting.shrink_to_fit();
    {
      gather_acks acks; // this commit's acks: one message per connection
      for (auto& fn : run) // may emit and append to `waiting`
        fn(caf::none);
    }
    run_when_settled();
    drop_views_if_settled();
    if (pending.empty())
      arm_idle_timer();
  }

  void on_store_failed(const std::string& what) {
    if (store_failing)
      return;
    store_failing = true;
    emit(event_type::error,
         json{{"message", "store write failed: " + what}, {"code", "store"}}
           .dump());
  }

  // Another activation owns the session now: never write again.
  void on_fenced(const std::string& what) {
    spdlog::warn("session {} fenced: {}", rec.id, what);
    auto err = make_error(errc::stale_epoch, what);
    for (auto& w : waiting)
      w.second(err);
    waiting.clear();
    if (views) {
      for (auto& fn : views->when_settled)
        fn(err);
      views->when_settled.clear();
    }
    auto cleaned = std::move(on_cleaned);
    on_cleaned.clear();
    for (auto& fn : cleaned)
      fn(err);
    self->quit();
  }

  // -- session_control (hooks) ------------------------------------------------

  // Type code and hooks: data that is not JSON is published as a JSON
  // string of that text (checked here, once: frames trust what a session
  // emits).
  uint64_t publish(const std::string& type, const std::string& data) override {
    if (json_valid(data))
      return emit(type, data);
    return emit(type, json(data).dump(-1, ' ', false,
                                      json::error_handler_t::replace));
  }

  // -- session_context (type code) --------------------------------------------

  const session_info& info() const override { return rec; }

  micros now() const override { return svc->clock->now(); }

  caf::error transition(lifecycle_event ev, const std::string& reason) override {
    if (ev == lifecycle_event::terminate)
      return terminate(reason);
    auto err = change_state(ev, reason);
    if (!err && rec.state == session_state::cleaned) {
      type_cleaned = true;
      auto run = std::move(on_cleaned);
      on_cleaned.clear();
      for (auto& fn : run)
        fn(caf::none);
    }
    return err;
  }

  void set_timer(std::chrono::milliseconds delay, uint64_t timer_id) override {
    self->delayed_send(self, delay, type_timer_atom::value, timer_id);
  }

  session_poster poster() override {
    // A weak address: a poster never keeps its session alive.
    return session_poster{[addr = self->address()](uint64_t tag,
                                                   std::string data) {
      auto target = caf::actor_cast<caf::actor>(addr);
      if (!target)
        return false;
      caf::anon_send(target, external_atom::value, tag, std::move(data));
      return true;
    }};
  }

  // Runs type code; a type that throws is reported, never fatal.
  template <class F>
  void with_type(const char* what, F f) {
    if (!type)
      return;
    try {
      f(*type);
    } catch (const std::exception& e) {
      spdlog::warn("session {}: type {} failed in {}: {}", rec.id, rec.type,
                   what, e.what());
      emit(event_type::error,
           json{{"message", std::string{what} + " failed: " + e.what()},
                {"code", "session_type"}}
             .dump());
    }
  }

  void detach_peer(const std::string& reason) override {
    if (rec.peer_connected)
      close_peer(reason);
  }
};

// One class for every session actor. All of them share one behavior: its
// handlers capture nothing and find their actor through `running`, set for
// the duration of each resume. A behavior built per actor would cost about
// 40 bytes per handler per session (CAF 0.17 allocates a match case and a
// dispatch entry for each), the largest part of an idle session.
class session_actor_impl final : public session_actor::base {
public:
  // The state is set up here, on the spawning thread; what has to run as
  // the actor (on_start, first steps, the idle report) waits for the first
  // resume, which for a lazily started session is its first message.
  session_actor_impl(caf::actor_config& cfg, session_start&& start)
    : session_actor::base(cfg), is_new_(start.is_new) {
    new (&state) session_data();
    init(start);
  }

  // The state went in on_exit (CAF calls it once, at the end or on destroy).
  ~session_actor_impl() override {
    // nop
  }

  // Destroys the state as soon as the actor ends, as CAF's stateful_actor
  // does: a session killed mid-unload still holds callbacks with response
  // promises that point back at itself, and the services with the
  // persistence listener's handle; kept until the last reference went,
  // they kept each other, and the detached listener, alive forever.
  void on_exit() override {
    state.~session_data();
  }

  const char* name() const override { return session_data::name; }

  resume_result resume(caf::execution_unit* eu, size_t max) override;

  behavior_type make_behavior() override;

  union {
    session_data state;
  };

private:
  void init(session_start& start); // moves from `start`
  void first_resume();
  bool is_new_;
};

using self_pointer = session_actor_impl*;

thread_local session_actor_impl* running = nullptr;

// The actor whose message is being handled on this thread.
session_actor_impl* current() {
  return running;
}

session_actor_impl::resume_result
session_actor_impl::resume(caf::execution_unit* eu, size_t max) {
  auto previous = running;
  running = this;
  auto result = session_actor::base::resume(eu, max);
  running = previous;
  return result;
}

caf::error check_open(const session_data& st) {
  if (st.unloading)
    return make_error(errc::unavailable, "session " + st.rec.id
                                           + " is unloading");
  return caf::none;
}

bool valid_utf8(const std::string& s) {
  try {
    json(s).dump(); // throws on invalid UTF-8
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

// `checked`: the data came as json_text, checked where it entered.
caf::error check_publish(const session_data& st, const std::string& type,
                         const std::string& data, bool checked) {
  if (auto err = check_open(st))
    return err;
  if (type.empty() || type.size() > max_type_length)
    return make_error(errc::bad_request, "event type must have 1 to 64 characters");
  if (!checked && !json_valid(data))
    return make_error(errc::bad_request, "event data must be JSON");
  if (st.closed())
    return make_error(errc::conflict, "session " + st.rec.id + " is "
                                        + to_string(st.rec.state));
  if (st.pending.size() >= st.cfg().max_backlog) {
    st.svc->obs->counters.publishes_refused++;
    return make_error(errc::overloaded,
                      "session " + st.rec.id
                        + " has too many events waiting to be durable");
  }
  return caf::none;
}

// Peer operations from a connection (WebSocket): only the connection the
// peer attached on may act as the peer. Another one (say, the old socket of
// a peer that reconnected elsewhere) is refused and changes nothing.
caf::error check_peer_conn(const session_data& st, const caf::actor& conn,
                           bool publishing) {
  if (!st.rec.peer_connected && !publishing)
    return make_error(errc::conflict, "session " + st.rec.id
                                        + " has no connected peer");
  if (!st.rec.peer_connected || !conn || st.peer_conn != conn)
    return make_error(errc::forbidden,
                      "this connection is not the peer connection of session "
                        + st.rec.id + " (attach first; a peer that attached "
                                      "again elsewhere acts from there)");
  return caf::none;
}

caf::result<micros> heartbeat(self_pointer self) {
  auto& st = self->state;
  if (!st.rec.peer_connected)
    return make_error(errc::conflict, "session " + st.rec.id
                                        + " has no connected peer");
  // Liveness only: no event, not written on its own (session_info.hpp).
  st.rec.last_heartbeat = st.now();
  st.touch();
  return st.rec.last_heartbeat;
}

// Adds a subscriber to the bus; its last durable seq is where it starts.
// One that `credits` gets plain messages and confirms them with credit_atom.
caf::result<uint64_t> subscribe(self_pointer self, caf::actor sub,
                                bool credits) {
  auto& st = self->state;
  if (auto err = check_open(st))
    return err;
  if (!sub)
    return make_error(errc::bad_request, "invalid subscriber");
  if (st.bus.add(sub, st.rec.last_seq, credits))
    self->monitor(sub);
  st.touch();
  return st.rec.last_seq;
}

// A publish: the seq it answers with once that seq is durable (for a key
// seen within the window, the first publish's: nothing is appended). `key`
// null: none. `checked`: data came as json_text.
caf::expected<uint64_t> publish_seq(session_data& st, const std::string& type,
                                    const std::string& data,
                                    const std::string* key, bool checked) {
  int64_t window = 0;
  if (key) {
    if (key->empty() || key->size() > 256 || !valid_utf8(*key))
      return make_error(errc::bad_request,
                        "idempotency key must be 1 to 256 bytes of UTF-8");
    window = std::chrono::duration_cast<std::chrono::microseconds>(
               st.cfg().idempotency_window)
               .count();
  }
  if (window > 0) {
    if (!st.idem)
      st.idem = std::make_unique<idempotency_window>(window);
    try {
      if (!st.idem->recovered() && st.svc->store)
        st.idem->recover(*st.svc->store, st.rec.id, st.rec.last_seq,
                         st.now());
    } catch (const store_error& e) {
      st.idem.reset(); // try again with the next keyed publish
      return make_error(errc::unavailable,
                        std::string{"cannot read idempotency keys: "}
                          + e.what());
    }
    if (auto first = st.idem->find(*key, st.now())) {
      st.touch(); // a retry: the first publish's seq, once that is durable
      return *first;
    }
  }
  if (auto err = check_publish(st, type, data, checked))
    return err;
  auto seq = st.emit(type, data, window > 0 ? *key : std::string{});
  if (window > 0 && st.idem)
    st.idem->remember(*key, seq, st.now());
  st.touch();
  return seq;
}

// A publish asked as a request: answered once its seq is durable.
caf::result<uint64_t> publish(self_pointer self, const std::string& type,
                              const std::string& data, const std::string* key,
                              bool checked) {
  auto& st = self->state;
  auto seq = publish_seq(st, type, data, key, checked);
  if (!seq)
    return std::move(seq.error());
  auto rp = self->make_response_promise<uint64_t>();
  st.after_durable(*seq, [rp, seq = *seq](const caf::error& err) mutable {
    if (err)
      rp.deliver(err);
    else
      rp.deliver(seq);
  });
  return rp;
}

// A publish from a peer connection, answered by message (actors.hpp);
// `key` empty: none.
void publish_by_message(self_pointer self, const std::string& type,
                        const std::string& data, const std::string& key,
                        const caf::actor& conn, uint64_t ask, bool checked) {
  auto& st = self->state;
  auto refuse = [&](caf::error err) {
    caf::anon_send(conn, publish_refused_atom::value, ask, std::move(err));
  };
  if (!conn)
    return;
  if (auto err = check_peer_conn(st, conn, true))
    return refuse(std::move(err));
  auto seq = publish_seq(st, type, data, key.empty() ? nullptr : &key, checked);
  if (!seq)
    return refuse(std::move(seq.error()));
  st.after_durable(*seq, [conn, ask, seq = *seq](const caf::error& err) {
    if (err)
      caf::anon_send(conn, publish_refused_atom::value, ask, err);
    else if (acks_in_progress)
      acks_in_progress->add(conn, ask, seq);
    else
      caf::anon_send(conn, publish_acks_atom::value,
                     std::vector<uint64_t>{ask, seq});
  });
}

// Input for the session (message_atom): session:start first if it is the
// first message, then the message event, then the type's on_message.
caf::result<uint64_t> message(self_pointer self, const std::string& data,
                              bool checked) {
  auto& st = self->state;
  if (auto err = check_publish(st, event_type::message, data, checked))
    return err;
  st.before_change(); // the message event below
  ++st.rec.message_count;
  uint64_t first = 0;
  if (st.rec.message_count == 1)
    first = st.emit_lifecycle(event_type::session_start, {});
  auto seq = st.emit(event_type::message, data);
  if (first == 0)
    first = seq;
  st.with_type("on_message", [&](session_type& t) { t.on_message(st, data); });
  st.touch();
  auto rp = self->make_response_promise<uint64_t>();
  st.reply_when_durable<uint64_t>(rp, [first] { return first; });
  return rp;
}

// A publish from a peer connection as a request; `key` empty: none.
caf::result<uint64_t> publish_from(self_pointer self, const std::string& type,
                                   const std::string& data,
                                   const std::string& key,
                                   const caf::actor& conn, bool checked) {
  if (auto err = check_peer_conn(self->state, conn, true))
    return err;
  return publish(self, type, data, key.empty() ? nullptr : &key, checked);
}

// The shape of every state-changing request: refuse while unloading, apply
// `change` (which may emit), and answer with the info once what it emitted
// is durable.
template <class Change>
caf::result<session_info> change_then_reply(self_pointer self, Change change) {
  auto& st = self->state;
  if (auto err = check_open(st))
    return err;
  if (auto err = change(st))
    return err;
  st.touch();
  auto rp = self->make_response_promise<session_info>();
  st.reply_when_durable<session_info>(
    rp, [self] { return self->state.durable_view(); });
  return rp;
}

// Tells subscribers and answers with the final (durable) info; stops.
void stop_unloaded(self_pointer self,
                   caf::typed_response_promise<session_info>& rp) {
  auto& st = self->state;
  for (auto& sub : st.bus.subscribers())
    caf::anon_send(sub.handle, unloaded_atom::value, st.rec.id,
                   st.rec.last_seq);
  auto out = st.durable_view();
  out.loaded = false;
  rp.deliver(out);
  self->quit();
}

// Writes the snapshot if the stored one lags (batches carry one only now
// and then) and runs `k` once every batch sent, that one included, is
// durable (or with the error when the session is fenced first).
void write_final_snapshot(self_pointer self,
                          std::function<void(const caf::error&)> k) {
  auto& st = self->state;
  if (st.snapshot_stale()) {
    st.before_change(); // tracks the snapshot-only batch below in `views`
    st.snapshot_due = true;
    st.flush();
  }
  st.after_batches(std::move(k));
}

// Once the last emitted event and a current snapshot are durable, the store
// holds the final state; then the actor stops.
void finish_unload(self_pointer self, caf::typed_response_promise<session_info> rp) {
  auto& st = self->state;
  st.after_durable(st.last_emitted(), [self, rp](const caf::error& err) mutable {
    if (err) {
      rp.deliver(err);
      return;
    }
    write_final_snapshot(self, [self, rp](const caf::error& err) mutable {
      if (err)
        rp.deliver(err);
      else
        stop_unloaded(self, rp);
    });
  });
}

void session_actor_impl::init(session_start& start) {
  auto self = this;
  auto& st = state;
  st.self = self;
  st.rec = std::move(start.info);
  st.svc = std::move(start.services);
  st.host = std::move(start.host);
  replay_into(st.rec, start.replay);
  st.rec.loaded = true;
  // A connection belongs to the process that held the session: after a load
  // the peer may only come back as a reconnect.
  st.rec.peer_connected = false;
  st.next_seq = st.rec.last_seq + 1;
  if (start.type)
    st.type = std::move(start.type);
  else if (st.svc->types)
    st.type = st.svc->types->make(st.rec.type);
  st.idle_reported = start.idle_reported;
  st.last_activity = st.now(); // idle since it was created or loaded
}

void session_actor_impl::first_resume() {
  auto self = this;
  auto& st = state;
  if (is_new_ && st.type && st.type->spawns_nothing()
      && st.rec.state == session_state::created) {
    st.change_state(lifecycle_event::spawn, "");
    st.change_state(lifecycle_event::activate, "");
  }
  st.with_type("on_start", [&](session_type& t) { t.on_start(st); });
  st.arm_idle_timer();
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.peer_conn && dm.source == st.peer_conn.address()) {
      st.peer_conn = nullptr;
      if (st.rec.peer_connected) {
        st.close_peer("connection_lost");
        st.start_grace();
      }
      return;
    }
    if (st.bus.remove(dm.source))
      st.touch();
  });
}

session_actor::behavior_type shared_behavior() {
  return {
    [](begin_spawn_atom) {
      auto self = current();
      return change_then_reply(self, [](session_data& st) {
        return st.change_state(lifecycle_event::spawn, "");
      });
    },
    [](activate_atom, const std::string& agent) {
      auto self = current();
      return change_then_reply(self, [&agent](session_data& st) {
        auto err = st.change_state(lifecycle_event::activate, "");
        if (!err && !agent.empty()) // batched with its status:changed
          st.rec.metadata["agent"] = agent;
        return err;
      });
    },
    [](heartbeat_atom) -> caf::result<micros> {
      return heartbeat(current());
    },
    [](heartbeat_atom, const caf::actor& conn) -> caf::result<micros> {
      auto self = current();
      if (auto err = check_peer_conn(self->state, conn, false))
        return err;
      return heartbeat(self);
    },
    [](message_atom, const std::string& data) -> caf::result<uint64_t> {
      return message(current(), data, false);
    },
    [](message_atom, const json_text& data) -> caf::result<uint64_t> {
      return message(current(), data.str(), true);
    },
    [](terminate_atom, const std::string& reason) {
      auto self = current();
      return change_then_reply(self, [&reason](session_data& st) {
        return st.terminate(reason.empty() ? "requested" : reason);
      });
    },
    [](cleanup_atom) -> caf::result<session_info> {
      auto self = current();
      auto& st = self->state;
      bool wait = st.holds_resources()
                  && st.rec.state == session_state::terminating;
      if (wait || (st.type_cleaned && st.rec.state == session_state::cleaned)) {
        // The type releases its resources, then cleans the session itself.
        auto rp = self->make_response_promise<session_info>();
        auto reply = [self, rp](const caf::error& err) mutable {
          if (err)
            rp.deliver(err);
          else
            self->state.reply_when_durable<session_info>(
              rp, [self] { return self->state.durable_view(); });
        };
        if (wait)
          st.on_cleaned.push_back(std::move(reply));
        else
          reply(caf::none);
        return rp;
      }
      return change_then_reply(self, [](session_data& st) {
        return st.change_state(lifecycle_event::clean, "");
      });
    },
    [](attach_atom, const std::string& identity, caf::actor conn) {
      auto self = current();
      return change_then_reply(self, [&](session_data& st) {
        return st.attach(identity, std::move(conn));
      });
    },
    [](detach_atom, const std::string& reason) {
      auto self = current();
      return change_then_reply(self, [&reason](session_data& st) {
        return st.detach(reason);
      });
    },
    [](detach_atom, const std::string& reason, const caf::actor& conn) {
      auto self = current();
      return change_then_reply(self, [&](session_data& st) -> caf::error {
        if (auto err = check_peer_conn(st, conn, false))
          return err;
        return st.detach(reason);
      });
    },
    [](subscribe_atom, caf::actor sub) -> caf::result<uint64_t> {
      return subscribe(current(), std::move(sub), false);
    },
    [](subscribe_atom, caf::actor sub, bool credits) -> caf::result<uint64_t> {
      return subscribe(current(), std::move(sub), credits);
    },
    [](credit_atom, const caf::actor& sub, uint64_t n) {
      if (sub)
        current()->state.bus.credit(sub.address(), n);
    },
    [](unsubscribe_atom, caf::actor sub) -> bool {
      auto self = current();
      auto& st = self->state;
      if (!sub || !st.bus.remove(sub.address()))
        return false;
      self->demonitor(sub.address());
      st.touch();
      return true;
    },
    [](publish_atom, const std::string& type,
           const std::string& data) -> caf::result<uint64_t> {
      return publish(current(), type, data, nullptr, false);
    },
    [](publish_atom, const std::string& type, const std::string& data,
       const std::string& key) -> caf::result<uint64_t> {
      return publish(current(), type, data, &key, false);
    },
    [](publish_atom, const std::string& type, const std::string& data,
       const std::string& key, const caf::actor& conn) -> caf::result<uint64_t> {
      return publish_from(current(), type, data, key, conn, false);
    },
    [](publish_atom, const std::string& type,
           const json_text& data) -> caf::result<uint64_t> {
      return publish(current(), type, data.str(), nullptr, true);
    },
    [](publish_atom, const std::string& type, const json_text& data,
       const std::string& key) -> caf::result<uint64_t> {
      return publish(current(), type, data.str(), &key, true);
    },
    [](publish_atom, const std::string& type, const json_text& data,
       const std::string& key, const caf::actor& conn) -> caf::result<uint64_t> {
      return publish_from(current(), type, data.str(), key, conn, true);
    },
    [](publish_atom, const std::string& type, const json_text& data,
       const std::string& key, const caf::actor& conn, uint64_t ask) {
      publish_by_message(current(), type, data.str(), key, conn, ask, true);
    },
    [](info_atom) -> session_info {
      // The durable view: nothing a crash could roll back.
      auto self = current(); return self->state.durable_view(); },
    [](sync_atom) -> caf::result<session_info> {
      auto self = current();
      auto rp = self->make_response_promise<session_info>();
      self->state.reply_when_durable<session_info>(
        rp, [self] { return self->state.durable_view(); });
      return rp;
    },
    [](unload_atom) -> caf::result<session_info> {
      auto self = current();
      auto& st = self->state;
      // Resources (a process) cannot move: an explicit unload is refused; a
      // host shutdown ends the session first and unloads it once CLEANED.
      if (st.holds_resources() && !st.unloading && !st.svc->host_stopping)
        return make_error(errc::conflict,
                          "session " + st.rec.id
                            + " holds a running process; terminate it to "
                              "stop it");
      auto rp = self->make_response_promise<session_info>();
      if (st.holds_resources()) {
        if (!st.unloading) {
          st.unloading = true;
          if (st.rec.state != session_state::terminating)
            st.terminate("host shutdown");
        }
        st.on_cleaned.push_back([self, rp](const caf::error& err) mutable {
          if (err)
            rp.deliver(err);
          else
            finish_unload(self, rp);
        });
        return rp;
      }
      if (!st.unloading) {
        if (st.rec.peer_connected)
          st.close_peer("unload");
        st.unloading = true;
      }
      finish_unload(self, rp);
      return rp;
    },
    [](hook_added_atom, hook_id id) -> bool {
      auto self = current();
      auto& st = self->state;
      if (!st.svc->hooks->enable(id))
        return false;
      // Smart hook (seed 000): an open-hook on a connected session fires now.
      if (st.rec.peer_connected && !st.emitting) {
        if (auto fn = st.svc->hooks->get(hook_kind::session_open, id)) {
          metadata_map md{{"peer", st.rec.peer}};
          st.emitting = true;
          st.call_hook(*fn, hook_event{st.rec.id, hook_kind::session_open, md,
                                       &st});
          st.emitting = false;
        }
      }
      return true;
    },
    [](durable_atom, uint64_t seq) {
      auto self = current(); self->state.on_durable(seq); },
    [](store_failed_atom, const std::string& what) {
      auto self = current();
      self->state.on_store_failed(what);
    },
    [](fenced_atom, const std::string& what) {
      auto self = current(); self->state.on_fenced(what); },
    [](flush_atom) {
      auto self = current(); self->state.flush(); },
    [](hb_check_atom, uint64_t gen) {
      auto self = current(); self->state.on_heartbeat_check(gen); },
    [](grace_check_atom, uint64_t gen) {
      auto self = current(); self->state.on_grace_check(gen); },
    [](idle_check_atom, uint64_t) {
      auto self = current(); self->state.on_idle_check(); },
    [](external_atom, uint64_t tag, const std::string& data) {
      // Even while closing: it is how a type learns its resources are gone.
      auto self = current();
      self->state.with_type("on_external", [&](session_type& t) {
        t.on_external(self->state, tag, data);
      });
    },
    [](type_timer_atom, uint64_t id) {
      auto self = current();
      auto& st = self->state;
      if (!st.unloading && !st.closed())
        st.with_type("on_timer", [&](session_type& t) { t.on_timer(st, id); });
    },
  };
}


session_actor_impl::behavior_type session_actor_impl::make_behavior() {
  first_resume();
  static const behavior_type shared = shared_behavior();
  return shared;
}

} // namespace

session_actor spawn_session(caf::actor_system& sys, session_start&& start) {
  if (!start.type && start.services && start.services->types)
    start.type = start.services->types->make(start.info.type);
  // Nothing to do before its first message: not scheduled until then (one
  // thread hand-off less per activation).
  auto& t = start.type;
  if (t && t->quiet_start()
      && !(start.is_new && t->spawns_nothing()
           && start.info.state == session_state::created))
    return sys.spawn<session_actor_impl, caf::lazy_init>(std::move(start));
  return sys.spawn<session_actor_impl>(std::move(start));
}

std::vector<event> first_steps(session_info& info, const session_services& svc,
                               std::vector<lifecycle_record>& records) {
  std::vector<event> out;
  for (auto step : {lifecycle_event::spawn, lifecycle_event::activate}) {
    auto t = next_state(info.state, step);
    if (!t.ok())
      break;
    metadata_map md{{"state", to_string(*t.to)},
                    {"previous", to_string(info.state)}};
    info.state = *t.to;
    event e;
    e.session_id = info.id;
    e.seq = ++info.last_seq;
    e.type = event_type::status_changed;
    e.data = lifecycle_payload(md);
    e.ts = info.updated_at = svc.clock->now();
    e.epoch = info.epoch;
    records.push_back(lifecycle_record{e.ts, info.id, e.type, std::move(md)});
    out.push_back(std::move(e));
  }
  return out;
}

} // namespace sessionhost
