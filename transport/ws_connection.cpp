// One actor per WebSocket connection (docs/PROTOCOL.md, "WebSocket"). Frames
// from the io thread arrive as messages; replies and events go out through
// the connection's bounded ws_sink. Subscriptions replay stored events from
// the store, then continue with live events the client hub writes to the
// sink itself (live_feed, shared with the hub under its own lock): each
// subscription keeps `last_sent` and drops anything at or below it, and a
// gap (or a lagged notice) switches it back to reading from the store, so a
// client never sees a gap or a duplicate. An unloaded session ends its
// subscriptions with an "unloaded" op once everything up to its last seq was
// sent. On a "sessionhost.v1.proto" connection the same ops travel as
// protobuf frames (proto_frames.hpp).
#include <array>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "host/error.hpp"
#include "host/json_check.hpp"
#include "transport/api_context.hpp"
#include "transport/json_codec.hpp"
#include "transport/proto_frames.hpp"

namespace sessionhost::transport {

using nlohmann::json;

namespace {

using ws_in_atom = caf::atom_constant<caf::atom("t_wsin")>;
using ws_bin_atom = caf::atom_constant<caf::atom("t_wsbin")>;
using replay_atom = caf::atom_constant<caf::atom("t_replay")>;
using ack_timeout_atom = caf::atom_constant<caf::atom("t_acktmo")>;
using flush_acks_atom = caf::atom_constant<caf::atom("t_flush")>;

constexpr size_t replay_page = 256;
constexpr size_t max_pending = 4096;

class live_feed;

struct subscription {
  uint64_t gen = 0;
  bool subscribing = true; // waiting for the hub's answer
  std::optional<uint64_t> unloaded_at; // the session was unloaded at this seq
  std::shared_ptr<live_feed> feed;     // what the hub shares
};

struct ws_state {
  std::shared_ptr<api_context> ctx;
  std::weak_ptr<ws_sink> sink;
  // A tree, not a hash map: a connection holds one or a few, and a hash
  // map's bucket array cost an idle subscribed connection ~180 bytes.
  std::map<std::string, subscription> subs;
  uint64_t next_gen = 1;
  const token_scope* scope = nullptr;     // null: no authentication
  bool proto = false;                     // binary protobuf frames
  // Sessions this connection attached to: a quick refusal of a publish
  // that cannot be the peer's; the session itself checks the connection.
  std::unordered_set<std::string> attached;
  std::unordered_map<std::string, bool> scope_seen; // in_scope answers by id
  // Frames not yet handed over: events, and acks (flushed by a message to
  // ourselves, behind the replies queued meanwhile: one hand-over per burst).
  std::vector<outgoing_frame> outbox;
  bool flush_scheduled = false;
  // Session handles the host gave us, monitored: every publish after the
  // first goes straight to the session instead of asking the host again.
  std::unordered_map<std::string, session_actor> located;
  // Requests to sessions in flight, by number: their deadlines. CAF 0.17
  // hands every timed request to its clock thread (a wake-up, and a timeout
  // message later even when the answer came): session requests are sent
  // untimed and one timer per connection expires them instead.
  struct in_flight {
    std::chrono::steady_clock::time_point deadline;
    std::string ref; // as JSON text, the way dump writes it
    std::string session;
    // A publish sent as a message (publish_acks_atom answers it): the
    // message, to send again should that session stop before answering,
    // and the session it went to. Empty for a request.
    caf::message msg;
    caf::actor_addr via;
    bool resent = false; // sent again once already: not again
    int64_t read_us = 0; // a publish: when its frame was read (micros)
  };
  std::map<uint64_t, in_flight> asking;
  uint64_t next_ask = 1;
  bool ack_timer_armed = false;
  // When the frame being handled was read off the socket (micros since the
  // epoch): a publish's ack counts its latency from there.
  int64_t frame_read_us = 0;
  static inline const char* name = "ws_connection";
};

using self_ptr = caf::stateful_actor<ws_state>*;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// Hands the event frames gathered so far to the connection in one call.
void flush_outbox(self_ptr self) {
  auto& st = self->state;
  if (st.outbox.empty())
    return;
  st.ctx->if_open([&] {
    if (auto s = st.sink.lock())
      s->send_frames(st.outbox); // empties it, keeps its capacity
  });
  st.outbox.clear();
  if (st.outbox.capacity() > 16) // a burst is over: keep idle ones small
    std::vector<outgoing_frame>{}.swap(st.outbox);
}

// `ts`: see outgoing_frame::event_ts.
void send_frame(self_ptr self, std::string frame, int64_t ts = 0) {
  flush_outbox(self); // events gathered before it go first
  self->state.ctx->if_open([&] {
    if (auto s = self->state.sink.lock())
      s->send_text(std::move(frame), ts);
  });
}

void send(self_ptr self, const json& j) {
  send_frame(self, self->state.proto ? server_op_to_proto(j) : dump(j));
}

void send_error(self_ptr self, errc code, const std::string& message,
                const json& ref, const std::string& session = {}) {
  json j{{"op", "error"}, {"code", to_string(code)}, {"message", message},
         {"ref", ref}};
  if (!session.empty())
    j["session"] = session;
  send(self, j);
}

void send_error(self_ptr self, const caf::error& err, const json& ref,
                const std::string& session = {}) {
  if (err == caf::sec::request_timeout)
    return send_error(self, errc::unavailable,
                      "the host did not answer in time", ref, session);
  send_error(self, code_of(err), message_of(err), ref, session);
}

// With the ref as JSON text (requests in flight keep it so).
void send_error_ref(self_ptr self, errc code, const std::string& message,
                    const std::string& ref, const std::string& session) {
  send_error(self, code, message, json::parse(ref), session);
}

void send_error_ref(self_ptr self, const caf::error& err,
                    const std::string& ref, const std::string& session) {
  send_error(self, err, json::parse(ref), session);
}

/// Queues a JSON text frame behind the ones gathered so far; a message to
/// ourselves hands them over once the replies queued meanwhile are done.
/// `read_us`: the read time of the publish it acknowledges, if it is one.
void queue_text(self_ptr self, std::string_view text, int64_t read_us = 0) {
  auto& st = self->state;
  st.outbox.push_back(outgoing_frame::ack(make_wire_frame(text, false), read_us));
  if (!st.flush_scheduled) {
    st.flush_scheduled = true;
    self->send(self, flush_acks_atom::value);
  }
}

} // namespace

/// The "event" op of `e` as JSON text. Its data is JSON text already: when
/// it is valid, it goes in as it is, not parsed and dumped again; the keys
/// in the order `dump` gives them. `checked`: `e` came live from its session,
/// which emits only checked data (json_check.hpp); an event read back from
/// the store is checked here.
namespace {

std::string event_op_json(const event& e, bool checked) {
  if (!checked && !json_valid(e.data)) {
    auto j = to_json(e); // not JSON: the data becomes a string
    j["op"] = "event";
    return dump(j);
  }
  std::string out;
  out.reserve(e.data.size() + e.session_id.size() + e.type.size() + 96);
  out += "{\"data\":";
  out += e.data;
  out += ",\"op\":\"event\",\"seq\":";
  out += std::to_string(e.seq);
  out += ",\"session\":";
  out += json_quote(e.session_id);
  out += ",\"ts\":";
  out += std::to_string(e.ts);
  out += ",\"type\":";
  out += json_quote(e.type);
  out += '}';
  return out;
}

} // namespace

/// Event frames serialized once and shared by every subscriber of the
/// session (fan-out: one serialization per event, not per client), as whole
/// wire frames (header included: server frames are unmasked), JSON and
/// protobuf apart. Keyed by (session, seq): a delivered event is durable and
/// never changes. A direct-mapped table with striped locks; a collision only
/// costs a second serialization. `live`: straight from the session (its data
/// checked already), not read back from the store.
class frame_cache {
public:
  wire_frame frame(const event& e, bool proto, bool live) {
    // The hub asks for one event's frame once per subscriber, back to back
    // on its thread: the last answer, kept per thread, saves the hash and
    // the lock for all but the first.
    thread_local struct {
      const frame_cache* owner = nullptr;
      uint64_t seq = 0;
      bool proto = false;
      std::string session;
      wire_frame wire;
    } last;
    if (last.owner == this && last.seq == e.seq && last.proto == proto
        && last.session == e.session_id)
      return last.wire;
    auto wire = lookup(e, proto, live);
    last.owner = this;
    last.seq = e.seq;
    last.proto = proto;
    last.session = e.session_id;
    last.wire = wire;
    return wire;
  }

private:
  wire_frame lookup(const event& e, bool proto, bool live) {
    auto h = std::hash<std::string>{}(e.session_id)
             ^ (e.seq * 0x9E3779B97F4A7C15ull);
    auto k = h % slots_.size();
    auto& slot = slots_[k];
    std::lock_guard<std::mutex> guard{locks_[k % locks_.size()]};
    if (slot.seq != e.seq || slot.session != e.session_id) {
      slot.json = nullptr;
      slot.proto = nullptr;
      slot.session = e.session_id;
      slot.seq = e.seq;
    }
    auto& wire = proto ? slot.proto : slot.json;
    if (!wire) {
      if (proto) {
        wire = make_wire_frame(event_to_proto(e), true);
      } else {
        wire = make_wire_frame(event_op_json(e, live), false);
      }
    }
    return wire;
  }

  struct slot_type {
    std::string session;
    uint64_t seq = 0; // 0: empty (seqs start at 1)
    wire_frame json;
    wire_frame proto;
  };
  std::array<slot_type, 4096> slots_;
  std::array<std::mutex, 64> locks_;
};

std::shared_ptr<frame_cache> make_frame_cache() {
  return std::make_shared<frame_cache>();
}

namespace {

/// Hands event frames to the connection's sink; false when it is closed,
/// closing or was just closed for being over its bound.
/// `frames` is left empty.
bool hand_over(api_context& ctx, const std::weak_ptr<ws_sink>& sink,
               std::vector<outgoing_frame>& frames) {
  if (frames.empty())
    return true;
  bool ok = false;
  // Strong references to the sink are taken only under if_open (see
  // api_context), so none outlives the server.
  ctx.if_open([&] {
    if (auto s = sink.lock())
      ok = s->send_frames(frames);
  });
  frames.clear();
  return ok;
}

/// A subscription's live side, shared by the connection's actor and the
/// hub (client_feed.hpp). While it is live the hub writes the session's
/// events to the socket itself, in its own turn; before that (the hub's
/// answer under way, or reading from the store) the hub's events wait in
/// `pending`, and the connection goes live under the lock once it sent
/// what came before. Every event frame of the subscription is handed to
/// the sink under the lock, so they go out in seq order, each once.
class live_feed final : public client_feed {
public:
  live_feed(const std::shared_ptr<api_context>& ctx, std::weak_ptr<ws_sink> sink,
            bool proto, caf::actor_addr conn, std::string id)
    : ctx_(ctx), sink_(std::move(sink)), conn_(std::move(conn)),
      id_(std::move(id)), proto_(proto) {}

  bool take(const std::vector<event>& events) override {
    auto ctx = ctx_.lock();
    if (!ctx)
      return false;
    std::lock_guard<std::mutex> guard{mtx};
    if (ended)
      return false;
    if (!live) {
      hold(events.begin(), events.end());
      return true;
    }
    // One vector per hub thread, reused: no allocation per feed and batch.
    thread_local std::vector<outgoing_frame> out;
    write_live(*ctx, out, events.begin(), events.end());
    auto ok = hand_over(*ctx, sink_, out);
    if (out.capacity() > 64)
      std::vector<outgoing_frame>{}.swap(out);
    return ok;
  }

  /// REQUIRES: mtx held, not live. Keeps live events for later.
  template <class Iter>
  void hold(Iter first, Iter last) {
    auto n = static_cast<size_t>(std::distance(first, last));
    if (pending.size() + n > max_pending) {
      // Everything here is durable: read from the store later (a gap
      // sends the subscription back to it).
      pending.clear();
      return;
    }
    pending.insert(pending.end(), first, last);
  }

  /// REQUIRES: mtx held, live. Adds the frames of the events that come
  /// next in line to `out`; at a gap the rest waits and the connection
  /// reads the store.
  template <class Iter>
  void write_live(api_context& ctx, std::vector<outgoing_frame>& out,
                  Iter first, Iter last) {
    for (; first != last; ++first) {
      auto& e = *first;
      if (e.seq <= last_sent)
        continue;
      if (e.seq == last_sent + 1) {
        out.push_back({ctx.frames->frame(e, proto_, true), e.ts});
        last_sent = e.seq;
        continue;
      }
      live = false;
      replaying = true;
      pending.insert(pending.end(), first, last);
      if (auto a = caf::actor_cast<caf::actor>(conn_))
        caf::anon_send(a, replay_atom::value, id_, gen);
      return;
    }
  }

  /// REQUIRES: mtx held. Goes live with what was held back.
  void go_live(api_context& ctx, std::vector<outgoing_frame>& out) {
    live = true;
    replaying = false;
    auto held = std::move(pending);
    pending.clear();
    write_live(ctx, out, held.begin(), held.end());
  }

  const std::weak_ptr<ws_sink>& sink() const noexcept { return sink_; }
  bool proto() const noexcept { return proto_; }

  std::mutex mtx;
  // -- protected by mtx ------------------------------------------------------
  uint64_t gen = 0;        // the subscription's, for replay_atom
  uint64_t last_sent = 0;  // highest seq handed to the sink
  bool live = false;       // the hub writes
  bool replaying = false;  // the connection reads the store
  bool ended = false;      // unsubscribed: the hub is told so by `take`
  // Live events held back meanwhile. A vector: an empty std::deque holds
  // ~600 bytes, per subscription.
  std::vector<event> pending;

private:
  // -- constant after construction ---------------------------------------------
  std::weak_ptr<api_context> ctx_; // the hub may hold us longer than the api
  std::weak_ptr<ws_sink> sink_;
  caf::actor_addr conn_;
  std::string id_;
  bool proto_;
};

/// Ends a subscription: the hub hears it from the feed at its next batch
/// (and from hub_unsubscribe, when `tell_hub`).
void end_subscription(self_ptr self, std::map<std::string, subscription>::iterator i,
                      bool tell_hub) {
  {
    std::lock_guard<std::mutex> guard{i->second.feed->mtx};
    i->second.feed->ended = true;
  }
  auto id = i->first;
  self->state.subs.erase(i);
  if (tell_hub)
    caf::anon_send(self->state.ctx->hub, hub_unsubscribe_atom::value,
                   caf::actor{self}, id);
}

/// Ends an unloaded session's subscription once it sent what there was.
void finish_unloaded(self_ptr self, const std::string& id) {
  auto i = self->state.subs.find(id);
  if (i == self->state.subs.end() || !i->second.unloaded_at)
    return;
  auto last = *i->second.unloaded_at;
  end_subscription(self, i, false);
  send(self, json{{"op", "unloaded"}, {"session", id}, {"last_seq", last}});
}

void replay_step(self_ptr self, const std::string& id) {
  auto i = self->state.subs.find(id);
  if (i == self->state.subs.end())
    return;
  auto& sub = i->second;
  auto& feed = *sub.feed;
  uint64_t from = 0;
  {
    // Only the connection ends a replay, and the hub leaves last_sent alone
    // meanwhile: what is read here holds until the lock is taken again.
    std::lock_guard<std::mutex> guard{feed.mtx};
    if (!feed.replaying)
      return;
    from = feed.last_sent;
  }
  auto& ctx = *self->state.ctx;
  bool open = false;
  size_t queued = 0, limit = 0;
  ctx.if_open([&] {
    if (auto sink = feed.sink().lock()) {
      open = true;
      queued = sink->queued_bytes();
      limit = sink->queue_limit();
    }
  });
  if (!open)
    return;
  if (queued > limit / 2) {
    // Let the socket drain first; live events wait in `pending`.
    self->delayed_send(self, std::chrono::milliseconds(20), replay_atom::value,
                       id, sub.gen);
    return;
  }
  std::vector<event> page;
  try {
    page = ctx.store->read_events(id, from, replay_page);
  } catch (const store_error& e) {
    send_error(self, errc::internal, std::string{"replay failed: "} + e.what(),
               nullptr, id);
    return end_subscription(self, i, true);
  }
  flush_outbox(self); // frames queued before these go first
  bool caught_up = page.size() < replay_page;
  bool missing = false;
  {
    std::lock_guard<std::mutex> guard{feed.mtx};
    std::vector<outgoing_frame> out;
    for (auto& e : page) {
      if (e.seq != feed.last_sent + 1)
        break; // never skip: the next step reads from last_sent again
      out.push_back({ctx.frames->frame(e, feed.proto(), false), 0});
      feed.last_sent = e.seq;
    }
    if (caught_up && !sub.unloaded_at) {
      if (!feed.pending.empty()
          && feed.pending.front().seq > feed.last_sent + 1 && page.empty()) {
        // The store lacks events the hub already delivered: cannot happen
        // while the output gate holds; refuse to show a gap.
        missing = true;
      } else {
        feed.go_live(ctx, out); // with what was held back
      }
    } else if (caught_up) {
      feed.replaying = false; // unloaded: nothing live comes any more
    }
    hand_over(ctx, feed.sink(), out);
  }
  if (!caught_up) {
    self->send(self, replay_atom::value, id, sub.gen);
    return;
  }
  if (sub.unloaded_at)
    return finish_unloaded(self, id);
  if (missing) {
    send_error(self, errc::internal,
               "events missing from the store, subscription ended", nullptr,
               id);
    end_subscription(self, i, true);
  }
}

/// Subscribes at the hub (again); `reply` sends the "subscribed" op.
void hub_subscribe(self_ptr self, const std::string& id, uint64_t gen,
                   std::optional<uint64_t> from_seq, json ref, bool reply) {
  auto i = self->state.subs.find(id);
  if (i == self->state.subs.end())
    return;
  client_feed_ptr feed = i->second.feed;
  self
    ->request(self->state.ctx->hub, self->state.ctx->timeout,
              hub_subscribe_atom::value, caf::actor{self}, id, feed)
    .then(
      [self, id, gen, from_seq, ref, reply](uint64_t last) {
        auto i = self->state.subs.find(id);
        if (i == self->state.subs.end() || i->second.gen != gen)
          return;
        auto& sub = i->second;
        auto& feed = *sub.feed;
        sub.subscribing = false;
        if (reply) {
          {
            std::lock_guard<std::mutex> guard{feed.mtx};
            feed.last_sent = from_seq ? *from_seq : last;
          }
          // Before any event: the hub holds them until the feed is live.
          send(self, json{{"op", "subscribed"}, {"session", id},
                          {"last_seq", last}, {"ref", ref}});
        }
        {
          std::lock_guard<std::mutex> guard{feed.mtx};
          if (feed.last_sent < last) {
            feed.replaying = true;
          } else {
            flush_outbox(self);
            std::vector<outgoing_frame> out;
            feed.go_live(*self->state.ctx, out);
            hand_over(*self->state.ctx, feed.sink(), out);
            return;
          }
        }
        replay_step(self, id);
      },
      [self, id, gen, ref](caf::error& err) {
        auto i = self->state.subs.find(id);
        if (i == self->state.subs.end() || i->second.gen != gen)
          return;
        end_subscription(self, i, false);
        send_error(self, err, ref, id);
      });
}

// -- ops --------------------------------------------------------------------

bool get_string(const json& j, const char* key, std::string& out) {
  auto i = j.find(key);
  if (i == j.end() || !i->is_string())
    return false;
  out = i->get<std::string>();
  return !out.empty();
}

void op_subscribe(self_ptr self, const json& j, const json& ref,
                  const std::string& id) {
  std::optional<uint64_t> from;
  if (auto f = j.find("from_seq"); f != j.end() && !f->is_null()) {
    if (!f->is_number_unsigned())
      return send_error(self, errc::bad_request,
                        "\"from_seq\" must be a non-negative integer", ref, id);
    from = f->get<uint64_t>();
  }
  if (self->state.subs.count(id) > 0)
    return send_error(self, errc::conflict, "already subscribed to " + id, ref,
                      id);
  auto gen = self->state.next_gen++;
  auto& sub = self->state.subs[id];
  sub.gen = gen;
  sub.feed = std::make_shared<live_feed>(self->state.ctx, self->state.sink,
                                         self->state.proto, self->address(),
                                         id);
  sub.feed->gen = gen;
  hub_subscribe(self, id, gen, from, ref, true);
}

void op_unsubscribe(self_ptr self, const json& ref, const std::string& id) {
  auto i = self->state.subs.find(id);
  if (i == self->state.subs.end())
    return send_error(self, errc::bad_request, "not subscribed to " + id, ref,
                      id);
  end_subscription(self, i, true); // no event after the answer
  send(self, json{{"op", "unsubscribed"}, {"session", id}, {"ref", ref}});
}

/// Whether a request to a remembered session handle failed because that
/// activation is gone or going (stopped, fenced, unloading): it never
/// applied the request, so asking the host again for the current one is safe.
bool stale_handle(const caf::error& err) {
  if (err == caf::sec::request_receiver_down)
    return true;
  return err.category() == error_category
         && code_of(err) == errc::unavailable;
}

void forget_session(self_ptr self, const std::string& id,
                    const session_actor& s) {
  auto& located = self->state.located;
  if (auto i = located.find(id); i != located.end() && i->second == s) {
    self->demonitor(s.address());
    located.erase(i);
  }
}

/// Runs `f(session_actor, from_cache)`: with the remembered handle, else the
/// one the host gives (remembered from then on); errors go to the client.
template <class F>
void with_session(self_ptr self, const std::string& id, const std::string& ref,
                  F f) {
  auto& located = self->state.located;
  if (auto i = located.find(id); i != located.end()) {
    auto s = i->second; // f may change `located`
    return f(s, true);
  }
  self
    ->request(self->state.ctx->host, self->state.ctx->timeout,
              get_session_atom::value, id)
    .then(
      [self, id, f](session_actor& s) mutable {
        auto& located = self->state.located;
        // A bounded cache: a client touching many sessions asks the host.
        if (located.count(id) == 0 && located.size() < 1024) {
          self->monitor(s);
          located.emplace(id, s);
        }
        f(s, false);
      },
      [self, ref, id](caf::error& err) { send_error_ref(self, err, ref, id); });
}

// Checks at a tenth of the timeout: an expiry is late by that much at most.
void arm_ack_timer(self_ptr self) {
  auto& st = self->state;
  st.ack_timer_armed = true;
  self->delayed_send(self, std::max(st.ctx->timeout / 10,
                                    std::chrono::milliseconds(10)),
                     ack_timeout_atom::value);
}

/// Expires requests past their deadline; re-arms while any are in flight.
void expire_asks(self_ptr self) {
  auto& st = self->state;
  st.ack_timer_armed = false;
  auto now = std::chrono::steady_clock::now();
  for (auto i = st.asking.begin(); i != st.asking.end();) {
    if (i->second.deadline > now) {
      ++i;
      continue;
    }
    send_error_ref(self, errc::unavailable, "the host did not answer in time",
                   i->second.ref, i->second.session);
    i = st.asking.erase(i);
  }
  if (!st.asking.empty())
    arm_ack_timer(self);
}

/// Registers a request in flight; returns its number.
uint64_t start_ask(self_ptr self, const std::string& id,
                   const std::string& ref) {
  auto& st = self->state;
  auto n = st.next_ask++;
  ws_state::in_flight f;
  f.deadline = std::chrono::steady_clock::now() + st.ctx->timeout;
  f.ref = ref;
  f.session = id;
  st.asking.emplace(n, std::move(f));
  if (!st.ack_timer_armed)
    arm_ack_timer(self);
  return n;
}

/// Acknowledgements that carry the seq only ("send", "publish"): written as
/// text directly on a JSON connection, no DOM.
struct seq_ack {
  void operator()(json& out, uint64_t& seq) const { out["seq"] = seq; }
};

/// `{"op":"ack","ref":…,"seq":…,"session":…}`: the text dump gives.
std::string seq_ack_text(const std::string& ref, uint64_t seq,
                         const std::string& id) {
  std::string out;
  out.reserve(ref.size() + id.size() + 56);
  out += "{\"op\":\"ack\",\"ref\":";
  out += ref;
  out += ",\"seq\":";
  out += std::to_string(seq);
  out += ",\"session\":";
  out += json_quote(id);
  out += '}';
  return out;
}

/// Acknowledges a publish or a send with its seq; `read_us`: when the
/// publish was read (0: not a publish).
void ack_seq(self_ptr self, const std::string& ref, const std::string& id,
             uint64_t seq, int64_t read_us = 0) {
  if (!self->state.proto)
    return queue_text(self, seq_ack_text(ref, seq, id), read_us);
  json j{{"op", "ack"}, {"session", id}, {"ref", json::parse(ref)}};
  j["seq"] = seq;
  send_frame(self, server_op_to_proto(j), read_us > 0 ? -read_us : 0);
}

/// Sends `msg` to session `s` and acknowledges with `extra(result)` merged
/// in. A remembered handle that went stale is asked about once more, through
/// the host. The message is built once and shared by a retry.
template <class T, class Extra>
void ask_session(self_ptr self, const session_actor& s, bool from_cache,
                 const std::string& id, const std::string& ref, Extra extra,
                 caf::message msg) {
  auto n = start_ask(self, id, ref);
  self->request(caf::actor_cast<caf::actor>(s), caf::infinite, msg)
    .then(
      [self, n, extra](T& result) mutable {
        auto& asking = self->state.asking;
        auto i = asking.find(n);
        if (i == asking.end())
          return; // expired: the client was told already
        auto ref = std::move(i->second.ref);
        auto id = std::move(i->second.session);
        asking.erase(i);
        if constexpr (std::is_same_v<Extra, seq_ack>)
          return ack_seq(self, ref, id, result);
        json j{{"op", "ack"}, {"session", id}, {"ref", json::parse(ref)}};
        extra(j, result);
        send(self, j);
      },
      [self, n, s, from_cache, extra, msg](caf::error& err) {
        auto& asking = self->state.asking;
        auto i = asking.find(n);
        if (i == asking.end())
          return;
        auto ref = std::move(i->second.ref);
        auto id = std::move(i->second.session);
        asking.erase(i);
        if (!from_cache || !stale_handle(err))
          return send_error_ref(self, err, ref, id);
        forget_session(self, id, s);
        with_session(self, id, ref, [=](session_actor& fresh, bool) {
          ask_session<T>(self, fresh, false, id, ref, extra, msg);
        });
      });
}

/// Asks the session and acknowledges with `extra(result)` merged in.
template <class T, class Extra, class... Ts>
void ask_and_ack(self_ptr self, const std::string& id, const std::string& ref,
                 Extra extra, Ts&&... xs) {
  auto msg = caf::make_message(std::forward<Ts>(xs)...);
  with_session(self, id, ref, [=](session_actor& s, bool from_cache) {
    ask_session<T>(self, s, from_cache, id, ref, extra, msg);
  });
}

/// Sends the publish in flight as `n` to session `s` (again): as a message
/// when `s` is remembered, hence monitored (a stop before it answers shows
/// as a down message), else as a request.
void send_publish(self_ptr self, uint64_t n, const session_actor& s) {
  auto& st = self->state;
  auto i = st.asking.find(n);
  if (i == st.asking.end())
    return; // expired meanwhile
  auto& f = i->second;
  if (auto j = st.located.find(f.session);
      j != st.located.end() && j->second == s) {
    f.via = s.address();
    self->send(caf::actor_cast<caf::actor>(s), f.msg);
    return;
  }
  // Not remembered (a connection touching over 1,024 sessions): a request.
  auto ref = std::move(f.ref);
  auto id = std::move(f.session);
  auto& m = f.msg;
  auto req = caf::make_message(publish_atom::value, m.get_as<std::string>(1),
                               m.get_as<json_text>(2), m.get_as<std::string>(3),
                               caf::actor{self});
  st.asking.erase(i);
  ask_session<uint64_t>(self, s, false, id, ref, seq_ack{}, std::move(req));
}

/// A publish from this connection (the peer's): sent as a message and
/// acknowledged with the others of its commit in one message.
void publish(self_ptr self, const std::string& id, const std::string& ref,
             std::string type, json_text data, std::string key) {
  auto n = start_ask(self, id, ref);
  auto& f = self->state.asking.find(n)->second;
  f.read_us = self->state.frame_read_us;
  f.msg = caf::make_message(publish_atom::value, std::move(type),
                            std::move(data), std::move(key), caf::actor{self},
                            n);
  with_session(self, id, ref, [self, n](session_actor& s, bool) {
    send_publish(self, n, s);
  });
}

/// Asks the host again for the session of publish `n` and sends it there,
/// once; `err` goes to the client instead when it was sent again already.
void resend_publish(self_ptr self, uint64_t n, const caf::error& err) {
  auto& st = self->state;
  auto i = st.asking.find(n);
  if (i == st.asking.end())
    return;
  if (i->second.resent) {
    auto ref = std::move(i->second.ref);
    auto id = std::move(i->second.session);
    st.asking.erase(i);
    return send_error_ref(self, err, ref, id);
  }
  i->second.resent = true;
  i->second.via = caf::actor_addr{};
  auto id = i->second.session;
  auto ref = i->second.ref;
  with_session(self, id, ref, [self, n](session_actor& s, bool) {
    send_publish(self, n, s);
  });
}

const std::set<std::string> known_ops{"subscribe", "unsubscribe", "send",
                                     "publish",   "attach",      "heartbeat",
                                     "detach"};

/// Whether the connection's token reaches `id` (answers cached).
bool scope_allows(self_ptr self, const std::string& id) {
  auto& st = self->state;
  if (!st.scope || st.scope->allows_id(id))
    return true;
  if (auto i = st.scope_seen.find(id); i != st.scope_seen.end())
    return i->second;
  auto ok = in_scope(*st.ctx, st.scope, id); // throws store_error
  if (st.scope_seen.size() < 4096)
    st.scope_seen.emplace(id, ok);
  return ok;
}

void on_op(self_ptr self, json& j) {
  if (!j.is_object())
    return send_error(self, errc::bad_request,
                      "the frame must be a JSON object", nullptr);
  json ref = j.contains("ref") ? j["ref"] : json(nullptr);
  std::string op;
  if (!get_string(j, "op", op))
    return send_error(self, errc::bad_request, "\"op\" must be a string", ref);
  std::string id;
  if (!get_string(j, "session", id))
    return send_error(self, errc::bad_request,
                      "\"session\" must be a non-empty string", ref);
  if (known_ops.count(op) == 0)
    return send_error(self, errc::bad_request, "unknown op \"" + op + "\"", ref,
                      id);
  if (auto* sc = self->state.scope) {
    if (sc->read_only && op != "subscribe" && op != "unsubscribe")
      return send_error(self, errc::forbidden,
                        "this token is read-only: " + op + " refused", ref, id);
    if (!scope_allows(self, id))
      return send_error(self, errc::forbidden,
                        "session " + id + " is outside this token's scope",
                        ref, id);
  }
  auto info_of = [](json& out, session_info& info) {
    out["peer"] = info.peer.empty() ? json(nullptr) : json(info.peer);
    out["peer_connected"] = info.peer_connected;
    out["reconnects"] = info.reconnects;
    out["state"] = to_string(info.state);
  };
  if (op == "subscribe")
    return op_subscribe(self, j, ref, id);
  auto ref_text = dump(ref);
  if (op == "unsubscribe")
    return op_unsubscribe(self, ref, id);
  if (op == "send") {
    if (!j.contains("data"))
      return send_error(self, errc::bad_request, "\"data\" is missing", ref, id);
    return ask_and_ack<uint64_t>(self, id, ref_text, seq_ack{},
                                 message_atom::value,
                                 json_text::write(j["data"]));
  }
  if (op == "publish") {
    std::string type;
    if (!get_string(j, "type", type))
      return send_error(self, errc::bad_request,
                        "\"type\" must be a non-empty string", ref, id);
    auto data = j.contains("data") ? json_text::write(j["data"]) : json_text{};
    std::string key;
    if (auto k = j.find("idempotency_key"); k != j.end() && !k->is_null()) {
      if (!get_string(j, "idempotency_key", key))
        return send_error(self, errc::bad_request,
                          "\"idempotency_key\" must be a non-empty string",
                          ref, id);
    }
    if (self->state.attached.count(id) == 0)
      return send_error(self, errc::forbidden,
                        "publish needs this connection attached as the "
                        "session's peer",
                        ref, id);
    // The session decides too: this connection may no longer be the
    // peer's (it attached again elsewhere).
    return publish(self, id, ref_text, std::move(type), std::move(data),
                   std::move(key));
  }
  if (op == "attach") {
    std::string peer;
    if (!get_string(j, "peer", peer))
      return send_error(self, errc::bad_request,
                        "\"peer\" must be a non-empty string", ref, id);
    auto attached = [self, id, info_of](json& out, session_info& info) {
      info_of(out, info);
      self->state.attached.insert(id);
    };
    return ask_and_ack<session_info>(self, id, ref_text, attached,
                                     attach_atom::value, peer,
                                     caf::actor{self});
  }
  if (op == "heartbeat")
    return ask_and_ack<micros>(
      self, id, ref_text, [](json& out, micros& ts) { out["ts"] = ts; },
      heartbeat_atom::value, caf::actor{self});
  if (op == "detach") {
    self->state.attached.erase(id);
    return ask_and_ack<session_info>(self, id, ref_text, info_of,
                                     detach_atom::value, std::string{"manual"},
                                     caf::actor{self});
  }
}

/// A well-formed "publish" from a connection allowed to make it, taken
/// from the frame's text without a DOM: `data` goes on as the text it came
/// in. Anything else (another op, a field of the wrong kind, an escaped key,
/// a refusal) returns false: on_op then answers it, errors included.
bool fast_publish(self_ptr self, checked_json_view frame) {
  thread_local std::vector<json_member> members;
  if (!json_object_members(frame.text(), members))
    return false;
  std::string_view op, id, type, key, data, ref = "null";
  bool has_op = false, has_id = false, has_type = false;
  for (auto& m : members) {
    if (m.key.find('\\') != std::string_view::npos)
      return false;
    if (m.key == "op") {
      has_op = json_plain_string(m.value, op);
    } else if (m.key == "session") {
      has_id = json_plain_string(m.value, id);
    } else if (m.key == "type") {
      has_type = json_plain_string(m.value, type);
    } else if (m.key == "data") {
      data = m.value;
    } else if (m.key == "ref") {
      ref = m.value;
    } else if (m.key == "idempotency_key") {
      key = {};
      if (m.value != "null" && (!json_plain_string(m.value, key) || key.empty()))
        return false;
    }
  }
  if (!has_op || op != "publish" || !has_id || id.empty() || !has_type
      || type.empty())
    return false;
  std::string sid{id};
  if (auto* sc = self->state.scope)
    if (sc->read_only || !scope_allows(self, sid))
      return false;
  if (self->state.attached.count(sid) == 0)
    return false;
  // The session decides too: this connection may no longer be the peer's
  // (it attached again elsewhere).
  auto ref_text = json_compact(ref);
  // `data` is a whole value of the checked frame: checked with it.
  publish(self, sid, ref_text, std::string{type},
          data.empty() ? json_text{} : frame.value_at(data), std::string{key});
  return true;
}

void on_text(self_ptr self, const std::string& text) {
  if (self->state.proto)
    return send_error(self, errc::bad_request,
                      "text frame on a sessionhost.v1.proto connection: send "
                      "binary ClientOp frames",
                      nullptr);
  // Validated once, without a DOM (a publish's data is not checked again);
  // only ops other than a plain publish build one.
  auto frame = checked_json_view::check(text);
  if (!frame)
    return send_error(self, errc::bad_request, "the frame is not valid JSON",
                      nullptr);
  if (fast_publish(self, *frame))
    return;
  auto j = json::parse(text);
  on_op(self, j);
}

void on_binary(self_ptr self, const std::string& data) {
  if (!self->state.proto)
    return send_error(self, errc::bad_request,
                      "binary frame of " + std::to_string(data.size())
                        + " bytes ignored: this connection speaks JSON text "
                          "(offer the subprotocol sessionhost.v1.proto for "
                          "protobuf)",
                      nullptr);
  std::string error;
  auto j = client_op_to_json(data, error);
  if (!j)
    return send_error(self, errc::bad_request, error, nullptr);
  on_op(self, *j);
}

caf::behavior ws_connection(self_ptr self, std::shared_ptr<api_context> ctx,
                            std::weak_ptr<ws_sink> sink,
                            const token_scope* scope, bool proto) {
  self->state.ctx = std::move(ctx);
  self->state.sink = std::move(sink);
  self->state.scope = scope;
  self->state.proto = proto;
  self->set_down_handler([self](caf::down_msg& dm) {
    // A remembered session stopped: ask the host next time.
    auto& st = self->state;
    auto& located = st.located;
    for (auto i = located.begin(); i != located.end(); ++i)
      if (i->second.address() == dm.source) {
        located.erase(i);
        break;
      }
    // Publishes it had not answered: a session that stopped by itself
    // (unloaded) answered everything it took, so these never reached it
    // and go to the next activation; after a failure nobody knows.
    std::vector<uint64_t> lost;
    for (auto& [n, f] : st.asking)
      if (f.via && f.via == dm.source)
        lost.push_back(n);
    bool by_itself = !dm.reason || dm.reason == caf::exit_reason::normal;
    for (auto n : lost) {
      if (by_itself) {
        resend_publish(self, n,
                       make_error(errc::unavailable,
                                  "the session stopped before it answered"));
        continue;
      }
      auto i = st.asking.find(n);
      send_error_ref(self, errc::unavailable,
                     "the session stopped before it answered",
                     i->second.ref, i->second.session);
      st.asking.erase(i);
    }
  });
  return {
    [self](ws_in_atom, const std::string& text, int64_t read_us) {
      self->state.frame_read_us = read_us;
      try {
        on_text(self, text);
      } catch (const store_error& e) {
        send_error(self, errc::internal, e.what(), nullptr);
      } catch (const std::exception& e) {
        send_error(self, errc::bad_request, e.what(), nullptr);
      }
    },
    [self](ws_bin_atom, const std::string& data, int64_t read_us) {
      self->state.frame_read_us = read_us;
      try {
        on_binary(self, data);
      } catch (const store_error& e) {
        send_error(self, errc::internal, e.what(), nullptr);
      } catch (const std::exception& e) {
        send_error(self, errc::bad_request, e.what(), nullptr);
      }
    },
    [self](lagged_atom, const std::string& id, uint64_t) {
      // Dropped by the hub (we lagged, or the session went away without
      // unloading): resume transparently from what this client has seen.
      auto i = self->state.subs.find(id);
      if (i == self->state.subs.end())
        return;
      auto& sub = i->second;
      ++self->state.ctx->stats->ws_resumed;
      sub.gen = self->state.next_gen++;
      sub.subscribing = true;
      {
        // The hub forgot the feed: nothing writes to it meanwhile.
        std::lock_guard<std::mutex> guard{sub.feed->mtx};
        sub.feed->gen = sub.gen;
        sub.feed->live = false;
        sub.feed->replaying = false;
        sub.feed->pending.clear();
      }
      hub_subscribe(self, id, sub.gen, std::nullopt, nullptr, false);
    },
    [self](unloaded_atom, const std::string& id, uint64_t last) {
      // The session was unloaded (by request, idleness, or the host
      // stopping): send what is left up to `last` from the store, then
      // "unloaded"; the client decides whether to load it again.
      auto i = self->state.subs.find(id);
      if (i == self->state.subs.end())
        return;
      auto& sub = i->second;
      sub.unloaded_at = last;
      bool done = false;
      {
        // The hub forgot the feed: nothing writes to it any more.
        std::lock_guard<std::mutex> guard{sub.feed->mtx};
        if (sub.feed->replaying)
          return; // replay_step finishes it
        sub.feed->live = false;
        done = sub.feed->last_sent >= last;
        if (!done) {
          sub.feed->replaying = true;
          sub.feed->pending.clear();
        }
      }
      if (done)
        return finish_unloaded(self, id);
      replay_step(self, id);
    },
    [self](publish_acks_atom, const std::vector<uint64_t>& acks) {
      // The publishes of one commit: (ask, seq) pairs. Their acks go out in
      // one write at the end of this turn (unless a flush is on its way
      // already), without a flush message to ourselves: a turn less per
      // commit.
      auto& st = self->state;
      struct flush_own {
        self_ptr self;
        bool own;
        ~flush_own() {
          if (!own)
            return;
          self->state.flush_scheduled = false;
          flush_outbox(self);
        }
      } flush{self, !st.flush_scheduled};
      st.flush_scheduled = true;
      auto& asking = st.asking;
      for (size_t k = 0; k + 1 < acks.size(); k += 2) {
        auto i = asking.find(acks[k]);
        if (i == asking.end())
          continue; // expired: the client was told already
        auto ref = std::move(i->second.ref);
        auto id = std::move(i->second.session);
        auto read_us = i->second.read_us;
        asking.erase(i);
        ack_seq(self, ref, id, acks[k + 1], read_us);
      }
    },
    [self](publish_refused_atom, uint64_t n, const caf::error& err) {
      auto& st = self->state;
      auto i = st.asking.find(n);
      if (i == st.asking.end())
        return;
      if (stale_handle(err)) { // that activation is going: the next one
        auto& located = st.located;
        if (auto j = located.find(i->second.session);
            j != located.end() && j->second.address() == i->second.via)
          forget_session(self, i->second.session, j->second);
        return resend_publish(self, n, err);
      }
      auto ref = std::move(i->second.ref);
      auto id = std::move(i->second.session);
      st.asking.erase(i);
      send_error_ref(self, err, ref, id);
    },
    [self](ack_timeout_atom) { expire_asks(self); },
    [self](flush_acks_atom) {
      self->state.flush_scheduled = false;
      flush_outbox(self);
    },
    [self](replay_atom, const std::string& id, uint64_t gen) {
      auto i = self->state.subs.find(id);
      if (i != self->state.subs.end() && i->second.gen == gen)
        replay_step(self, id);
    },
  };
}

// The wall clock in micros, as the server's publish-to-send histogram reads it.
int64_t wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

class handler final : public ws_handler {
public:
  explicit handler(caf::actor a) : actor_(std::move(a)) {}
  ~handler() override { on_closed(); }

  // Stamped with the read time: a publish's ack latency counts from here.
  void on_text(std::string text) override {
    caf::anon_send(actor_, ws_in_atom::value, std::move(text), wall_us());
  }
  void on_binary(std::string data) override {
    caf::anon_send(actor_, ws_bin_atom::value, std::move(data), wall_us());
  }
  void on_closed() override {
    if (actor_) {
      caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
      actor_ = nullptr;
    }
  }

private:
  caf::actor actor_;
};

} // namespace

std::shared_ptr<ws_handler> spawn_ws_connection(std::shared_ptr<api_context> ctx,
                                                std::shared_ptr<ws_sink> sink,
                                                const token_scope* scope,
                                                bool proto) {
  auto* sys = ctx->sys;
  auto a = sys->spawn(ws_connection, std::move(ctx),
                      std::weak_ptr<ws_sink>{sink}, scope, proto);
  return std::make_shared<handler>(caf::actor{a});
}

} // namespace sessionhost::transport
