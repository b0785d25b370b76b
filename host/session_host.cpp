#include "host/session_host.hpp"

#include <algorithm>
#include <optional>
#include <deque>
#include <queue>
#include <functional>
#include <iterator>
#include <set>
#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/spawn_options.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>
#include <spdlog/spdlog.h>

#include "actors/session_actor.hpp"
#include "host/error.hpp"
#include "host/session_key.hpp"

namespace sessionhost {
namespace {

// One burst of creates for the writer, and back: every row (its snapshot is
// the session as created), how many of them belong to each request (in
// order), and after the write one error per request (none: stored). The
// rows travel to the writer and back by move, so a session's info is not
// copied for the store. Local only: it never crosses the network.
struct create_burst {
  std::vector<append_batch> rows;
  std::vector<size_t> sizes;
  std::vector<caf::error> errors;
};

// One chunk of loads for the loader, and back: the ids asked for, then what
// the store gave for each (or why the whole call failed). Local only.
struct load_chunk {
  std::vector<std::string> ids;
  std::vector<activation> got;
  std::optional<store_error> failed;
};

} // namespace
} // namespace sessionhost

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessionhost::create_burst)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessionhost::load_chunk)

namespace sessionhost {

namespace {

using session_cont = std::function<void(const session_actor&)>;
using error_cont = std::function<void(const caf::error&)>;

// A batch load's answers, filled in slot by slot by its waiters; sent once
// the last slot is answered.
struct load_batch {
  session_host_actor::pointer self = nullptr; // the host, to ask sessions
  caf::typed_response_promise<std::vector<load_result>> rp;
  std::vector<load_result> results;
  size_t pending = 0;

  void answer(size_t slot, session_info info) {
    results[slot].info = std::move(info);
    done();
  }
  void answer(size_t slot, caf::error err) {
    results[slot].error = std::move(err);
    done();
  }
  void done() {
    if (--pending == 0)
      rp.deliver(std::move(results));
  }
};

// An operation waiting for a session to be loaded: either `ok`/`fail`, a
// load request, answered with the session's info (`load`), or one slot of a
// batch load (`batch`).
struct session_waiter {
  session_cont ok;
  error_cont fail;
  caf::typed_response_promise<session_info> load;
  std::shared_ptr<load_batch> batch;
  size_t slot = 0;
  bool is_load = false;

  // Whether it wants the session's info (a load or a batch's slot).
  bool wants_info() const { return is_load || batch != nullptr; }
};

struct host_state {
  static inline const char* name = "sessionhost.session_host";

  // Kept small: the host holds one per loaded session.
  struct entry {
    session_actor handle;
  };
  using loaded_map = std::unordered_map<session_key, entry, session_key_hash>;

  host_args args;
  // Shared with the exit path, which runs after the state is gone.
  std::shared_ptr<loaded_map> loaded_owner = std::make_shared<loaded_map>();
  loaded_map& loaded = *loaded_owner;
  // Keys point into `loaded` (its nodes never move). By actor id, not
  // address: an integer hashes for free and holds no reference.
  std::unordered_map<caf::actor_id, const session_key*> by_actor;
  // Only sessions with a peer: identity by id, and ids by identity.
  std::unordered_map<std::string, std::string> peer_of;
  std::unordered_map<std::string, std::set<std::string>> by_peer;
  // Sessions being unloaded, with the operations waiting to load them again.
  std::unordered_map<std::string, std::vector<std::function<void()>>> unloading;
  bool shutting_down = false;
  // Create requests of the current burst, stored together by create_commit
  // (one transaction, so one fsync, for all of them). A request is one
  // session (create) or several (a batch, all or none); its sessions are
  // the next `count` rows of `creating_rows`.
  struct pending_create {
    size_t count = 1;
    caf::typed_response_promise<session_info> one;            // a create
    caf::typed_response_promise<std::vector<session_info>> many; // a batch
    bool batch = false;
  };
  std::vector<pending_create> creating;
  std::vector<append_batch> creating_rows; // of `creating`, in order
  std::set<std::string> creating_roles; // roles of `creating`
  // The store writes of creates run in their own actor (`writer`), so the
  // host keeps validating and spawning while SQLite commits; one burst at a
  // time, the next one gathers meanwhile.
  caf::actor writer;
  bool committing = false;
  std::set<std::string> committing_roles; // roles of the burst being stored
  // Unloads waiting for a slot: at most max_unloads_in_flight at once.
  std::deque<std::pair<std::string, std::function<void(caf::expected<session_info>)>>>
    unload_backlog;
  size_t unloads_in_flight = 0;
  // Sessions being loaded, with the operations waiting for each: those of
  // the current burst (`gathering`, keys of this map, whose nodes never
  // move), then those handed to the loader. The store's reads and claims
  // run there, in chunks, so the host starts one chunk's sessions while the
  // loader reads and claims the next. The map keeps its buckets between
  // bursts.
  std::unordered_map<std::string, std::vector<session_waiter>> loading;
  std::vector<const std::string*> gathering;
  caf::actor loader;
  size_t chunks_in_flight = 0;
  // Run once no chunk is with the loader (a shutdown answers only then, so
  // every load on the way is answered before the host goes).
  std::vector<std::function<void()>> when_chunks_back;
  // Reused for each chunk's answers (no large allocation per chunk).
  struct started {
    std::vector<session_waiter> waiters;
    session_actor handle;
    std::optional<session_info> fresh;
  };
  std::vector<started> ready;
  // Idle passivation: when to ask which session whether it is still idle
  // (16 bytes per idle session instead of a CAF timer each), earliest first.
  struct idle_entry {
    micros at;
    caf::actor_id session;
    bool operator>(const idle_entry& x) const { return at > x.at; }
  };
  std::priority_queue<idle_entry, std::vector<idle_entry>,
                      std::greater<idle_entry>>
    idle_queue;
  micros idle_armed_at = 0; // 0: no timer
  uint64_t idle_gen = 0;
  // Shutdowns not answered yet, and the sessions they finished unloading:
  // a watchdog answers them `unavailable` once that count stays put for
  // shutdown_timeout (a stalled store, a process that never ends).
  struct shutdown_wait {
    caf::typed_response_promise<uint64_t> rp;
    bool answered = false;
  };
  std::vector<std::shared_ptr<shutdown_wait>> shutdowns;
  uint64_t shutdown_unloaded = 0;
  bool shutdown_watched = false;
};

using self_pointer = session_host_actor::stateful_pointer<host_state>;

// The loaded session `id`, or null.
host_state::entry* find_loaded(host_state& st, const std::string& id) {
  auto i = st.loaded.find(session_key{id});
  return i == st.loaded.end() ? nullptr : &i->second;
}

bool is_loaded(host_state& st, const std::string& id) {
  return find_loaded(st, id) != nullptr;
}

// Takes the operations waiting for `id` to load out of `loading` (none if
// it is not there): the load is over, one way or another.
std::vector<session_waiter> take_waiters(host_state& st, const std::string& id) {
  std::vector<session_waiter> waiters;
  if (auto i = st.loading.find(id); i != st.loading.end()) {
    waiters = std::move(i->second);
    st.loading.erase(i);
  }
  return waiters;
}

caf::error from_store(const store_error& e) {
  using code = store_error::code;
  switch (e.error_code()) {
    case code::conflict: return make_error(errc::conflict, e.what());
    case code::not_found: return make_error(errc::not_found, e.what());
    case code::stale_epoch: return make_error(errc::stale_epoch, e.what());
    case code::invalid_argument: return make_error(errc::bad_request, e.what());
    case code::io: return make_error(errc::unavailable, e.what());
    default: return make_error(errc::internal, e.what());
  }
}

/// What the store holds of an unloaded session, as an unload answers it.
caf::expected<session_info> stored_info(session_store& store,
                                        const std::string& id) {
  try {
    if (auto snap = store.load(id))
      return std::move(*snap);
    return make_error(errc::not_found, "no session " + id);
  } catch (const store_error& e) {
    return from_store(e);
  }
}

void index_peer(host_state& st, const std::string& id, const std::string& peer) {
  if (auto p = st.peer_of.find(id); p != st.peer_of.end()) {
    if (auto i = st.by_peer.find(p->second); i != st.by_peer.end()) {
      i->second.erase(id);
      if (i->second.empty())
        st.by_peer.erase(i);
    }
    st.peer_of.erase(p);
  }
  if (!peer.empty()) {
    st.peer_of.emplace(id, peer);
    st.by_peer[peer].insert(id);
  }
}

void forget(host_state& st, const std::string& id) {
  auto i = st.loaded.find(session_key{id});
  if (i == st.loaded.end())
    return;
  index_peer(st, id, "");
  st.by_actor.erase(i->second.handle.id());
  st.loaded.erase(i);
}

void arm_idle_tick(self_pointer self);

// Spawns a session and indexes it. Its first idle check is queued here, so
// a new activation sends the host nothing before it has work.
session_actor adopt(self_pointer self, session_info info,
                    std::vector<event> replay, bool is_new,
                    std::unique_ptr<session_type> type = nullptr) {
  auto& st = self->state;
  auto& svc = *st.args.services;
  session_key key{info.id};
  auto idle_us = std::chrono::duration_cast<std::chrono::microseconds>(
                   svc.config.idle_timeout)
                   .count();
  session_start start;
  start.info = std::move(info);
  start.replay = std::move(replay);
  start.services = st.args.services;
  start.host = session_host_actor{self};
  start.is_new = is_new;
  start.type = std::move(type);
  start.idle_reported = idle_us > 0;
  auto handle = spawn_session(self->system(), std::move(start));
  self->monitor(handle);
  auto i = st.loaded.insert_or_assign(std::move(key), host_state::entry{handle}).first;
  st.by_actor[handle.id()] = &i->first;
  if (idle_us > 0) {
    st.idle_queue.push(
      host_state::idle_entry{svc.clock->now() + idle_us, handle.id()});
    arm_idle_tick(self);
  }
  return handle;
}

// Hands a waiter its session. `fresh`: the session as it was just loaded,
// when its actor has nothing to do before its first message (a quiet start):
// then that is what the session itself would answer, and a load is answered
// here, without a turn of the session (which stays unscheduled).
void serve(session_waiter& w, const session_actor& h,
           const session_info* fresh) {
  if (w.batch) {
    if (fresh) {
      w.batch->answer(w.slot, *fresh);
      return;
    }
    // Loaded already (or not a quiet start): the session answers its info.
    auto self = w.batch->self;
    auto batch = std::move(w.batch);
    auto slot = w.slot;
    self->request(h, caf::infinite, info_atom::value)
      .then([batch, slot](session_info& info) { batch->answer(slot, std::move(info)); },
            [batch, slot](caf::error& err) { batch->answer(slot, std::move(err)); });
    return;
  }
  if (!w.is_load)
    w.ok(h);
  else if (fresh)
    w.load.deliver(*fresh);
  else
    w.load.delegate(h, info_atom::value);
}

void refuse(session_waiter& w, const caf::error& err) {
  if (w.batch)
    w.batch->answer(w.slot, err);
  else if (w.is_load)
    w.load.deliver(err);
  else
    w.fail(err);
}

// Serves `w` with the session `id`, loading it first (activation on
// demand); waits for an unload in progress to finish so the session is never
// loaded twice. Loads of a burst are activated together by load_commit.
void with_session(self_pointer self, const std::string& id, session_waiter w) {
  auto& st = self->state;
  if (auto i = st.unloading.find(id); i != st.unloading.end()) {
    i->second.push_back([self, id, w]() mutable {
      with_session(self, id, std::move(w));
    });
    return;
  }
  if (auto e = find_loaded(st, id)) {
    serve(w, e->handle, nullptr);
    return;
  }
  if (!valid_session_id(id)) {
    refuse(w, make_error(errc::not_found, "malformed session id"));
    return;
  }
  if (st.shutting_down) {
    refuse(w, make_error(errc::unavailable, "host is shutting down"));
    return;
  }
  auto [i, added] = st.loading.try_emplace(id);
  i->second.push_back(std::move(w));
  if (!added)
    return; // gathered already, or on its way from the store
  if (st.gathering.empty())
    self->send(self, load_commit_atom::value);
  st.gathering.push_back(&i->first);
}

// Runs `ok` with the session's handle, loading it first.
void with_session(self_pointer self, const std::string& id, session_cont ok,
                  error_cont fail) {
  session_waiter w;
  w.ok = std::move(ok);
  w.fail = std::move(fail);
  with_session(self, id, std::move(w));
}

caf::error load_error(const std::string& id, const store_error& e) {
  spdlog::error("host: cannot load session {}: {}", id, e.what());
  if (e.error_code() == store_error::code::corrupt)
    return make_error(errc::internal,
                      "session " + id + " cannot be loaded: " + e.what());
  return from_store(e);
}

// At most this many loads per store call: the host starts one chunk's
// sessions while the loader reads and claims the next.
constexpr size_t load_chunk_size = 256;
// With a scheduled loader (a test scheduler), a burst this small is loaded
// on the host's own turn: handing it over would only add a wake-up. A
// detached loader takes every burst, so the claim's write transaction (it
// waits for the store's write lock) never blocks the host's worker.
constexpr size_t small_load_burst = 16;

// Starts the sessions of a chunk the loader brought back and answers
// whatever waited for them. A failure touches only its own session.
void start_loaded(self_pointer self, load_chunk& chunk) {
  auto& st = self->state;
  auto& svc = *st.args.services;
  auto fail_all = [](auto& waiters, const caf::error& err) {
    for (auto& w : waiters)
      refuse(w, err);
  };
  if (chunk.failed || chunk.got.size() != chunk.ids.size()) {
    auto e = chunk.failed ? *chunk.failed
                          : store_error(store_error::code::io,
                                        "the store answered a burst of loads "
                                        "with the wrong number of sessions");
    for (auto& id : chunk.ids) {
      auto waiters = take_waiters(st, id);
      fail_all(waiters, load_error(id, e));
    }
    return;
  }
  // The sessions first, then the answers, back to back: whoever waits for
  // several of them is woken once for a run of answers rather than once for
  // each (a wake-up across CPUs is a VM exit here).
  auto& ready = st.ready;
  ready.clear();
  for (auto& a : chunk.got) {
    auto waiters = take_waiters(st, a.id);
    if (st.shutting_down) { // claimed, never started: as after a crash
      fail_all(waiters, make_error(errc::unavailable, "host is shutting down"));
      continue;
    }
    if (a.error) {
      if (a.error->error_code() == store_error::code::not_found)
        fail_all(waiters, make_error(errc::not_found, "no session " + a.id));
      else
        fail_all(waiters, load_error(a.id, *a.error));
      continue;
    }
    // A quiet start: the session's actor does nothing before its first
    // message, so it is what was loaded (as loaded, without its old peer
    // connection) and the host answers loads for it.
    auto type = svc.types ? svc.types->make(a.info->type) : nullptr;
    auto& r = ready.emplace_back();
    if (type && type->quiet_start()
        && std::any_of(waiters.begin(), waiters.end(),
                       [](auto& w) { return w.wants_info(); })) {
      r.fresh = *a.info;
      r.fresh->loaded = true;
      r.fresh->peer_connected = false;
    }
    r.waiters = std::move(waiters);
    r.handle = adopt(self, std::move(*a.info), {}, false, std::move(type));
  }
  for (auto& r : ready) {
    if (!r.fresh) {
      for (auto& w : r.waiters)
        serve(w, r.handle, nullptr);
      continue;
    }
    // The last load answered takes the fresh info itself, not a copy.
    auto loads = std::count_if(r.waiters.begin(), r.waiters.end(),
                               [](auto& w) { return w.wants_info(); });
    for (auto& w : r.waiters) {
      if (w.wants_info() && --loads == 0) {
        if (w.batch)
          w.batch->answer(w.slot, std::move(*r.fresh));
        else
          w.load.deliver(std::move(*r.fresh));
      } else {
        serve(w, r.handle, &*r.fresh);
      }
    }
  }
  ready.clear();
}

// Hands the loads asked for since the last commit to the loader, in chunks:
// each chunk is one store call (load_activate_many: the rows and the events
// after each snapshot in one read transaction, new epochs for all of them,
// fencing older writers, in one write transaction).
void commit_loads(self_pointer self) {
  auto& st = self->state;
  auto batch = std::move(st.gathering);
  st.gathering.clear();
  if (st.shutting_down) {
    for (auto key : batch)
      for (auto& w : take_waiters(st, *key))
        refuse(w, make_error(errc::unavailable, "host is shutting down"));
    return;
  }
  load_chunk chunk;
  auto send = [&] {
    if (!st.args.detached_store && batch.size() <= small_load_burst) {
      try {
        chunk.got = st.args.store->load_activate_many(chunk.ids);
      } catch (const store_error& e) {
        chunk.failed = e;
      }
      start_loaded(self, chunk);
      return;
    }
    ++st.chunks_in_flight;
    auto back = [self] {
      auto& st = self->state;
      if (--st.chunks_in_flight > 0)
        return;
      auto waiting = std::move(st.when_chunks_back);
      st.when_chunks_back.clear();
      for (auto& f : waiting)
        f();
    };
    self->request(st.loader, caf::infinite, std::move(chunk))
      .then([self, back](load_chunk& done) {
              start_loaded(self, done);
              back();
            },
            [self, back](caf::error& err) {
              // The loader is gone, so is every chunk it had (and the host
              // is going down: nothing gathers any more).
              auto gone = std::move(self->state.loading);
              self->state.loading.clear();
              self->state.gathering.clear();
              for (auto& [id, waiters] : gone)
                for (auto& w : waiters)
                  refuse(w, make_error(errc::unavailable,
                                       "session " + id + " was not loaded: "
                                         + to_string(err)));
              back();
            });
    chunk = load_chunk{};
    chunk.ids.reserve(load_chunk_size);
  };
  chunk.ids.reserve(std::min(batch.size(), load_chunk_size));
  for (auto key : batch) {
    if (auto e = find_loaded(st, *key)) {
      // Loaded by a create in between: nothing to do.
      for (auto& w : take_waiters(st, *key))
        serve(w, e->handle, nullptr);
      continue;
    }
    chunk.ids.push_back(*key);
    if (chunk.ids.size() == load_chunk_size)
      send();
  }
  if (!chunk.ids.empty())
    send();
}

// The store's side of loads, in an actor of its own: one chunk per message.
caf::behavior loader(caf::event_based_actor*, store_ptr store) {
  return {
    [store](load_chunk& chunk) -> load_chunk {
      try {
        chunk.got = store->load_activate_many(chunk.ids);
      } catch (const store_error& e) {
        chunk.failed = e;
      }
      return std::move(chunk);
    },
  };
}

// CAF 0.17 keeps an actor's pending request handlers in a flat map searched
// linearly, so a host that asked 100,000 sessions to unload at once (shutdown,
// a wave of idle passivation) would spend quadratic time on its own replies.
constexpr size_t max_unloads_in_flight = 256;

// The most sessions one batch create may ask for.
constexpr size_t max_create_batch = 10'000;
// The most ids one batch load may ask for.
constexpr size_t max_load_batch = 10'000;

using unload_done = std::function<void(caf::expected<session_info>)>;

void start_unload(self_pointer self, const std::string& id, unload_done done);

// Starts waiting unloads while there is room.
void drain_unloads(self_pointer self) {
  auto& st = self->state;
  while (st.unloads_in_flight < max_unloads_in_flight
         && !st.unload_backlog.empty()) {
    auto [id, done] = std::move(st.unload_backlog.front());
    st.unload_backlog.pop_front();
    start_unload(self, id, std::move(done));
  }
}

// Unloads a loaded session: it flushes, snapshots and stops; then whatever
// waited for it runs. From the call on, the session counts as unloading.
void unload(self_pointer self, const std::string& id, unload_done done) {
  auto& st = self->state;
  if (!is_loaded(st, id)) {
    done(make_error(errc::not_found, "session " + id + " is not loaded"));
    return;
  }
  st.unloading[id];
  st.unload_backlog.emplace_back(id, std::move(done));
  drain_unloads(self);
}

void start_unload(self_pointer self, const std::string& id, unload_done done) {
  auto& st = self->state;
  auto finish = [self, id, done](caf::expected<session_info> x) {
    auto& st = self->state;
    // A refused unload (a session holding a process) leaves it loaded.
    if (x || code_of(x.error()) != errc::conflict)
      forget(st, id);
    auto waiting = std::move(st.unloading[id]);
    st.unloading.erase(id);
    done(std::move(x));
    for (auto& w : waiting)
      w();
  };
  auto e = find_loaded(st, id);
  if (!e) { // gone while it waited for a slot
    finish(make_error(errc::not_found, "session " + id + " is not loaded"));
    return;
  }
  ++st.unloads_in_flight;
  auto finished = [self, finish](caf::expected<session_info> x) mutable {
    --self->state.unloads_in_flight;
    finish(std::move(x));
    drain_unloads(self);
  };
  self->request(e->handle, caf::infinite, unload_atom::value)
    .then([finished](session_info& info) mutable { finished(std::move(info)); },
          [finished](caf::error& err) mutable { finished(err); });
}

// What a batch waits for: its sessions' infos once each has started.
struct batch_reply {
  caf::typed_response_promise<std::vector<session_info>> rp;
  std::vector<session_info> infos;
  size_t left = 0;
  bool failed = false;

  void set(size_t i, caf::expected<session_info> x) {
    if (failed)
      return;
    if (!x) {
      failed = true;
      rp.deliver(x.error());
      return;
    }
    infos[i] = std::move(*x);
    if (--left == 0)
      rp.deliver(std::move(infos));
  }
};

// What the host keeps of a burst while the writer stores it: its requests,
// and per row the session's type instance, whether its first steps (→
// ACTIVE) are in the row already, and their records (once durable). A type
// that spawns nothing has its first steps taken in the host, so such a
// session starts ACTIVE with them durable and answers at once (no round
// trip through the persistence listener). A type with a quiet start (agent)
// starts CREATED and is answered by the host too; any other type starts
// CREATED and answers once its own first steps are durable.
struct create_job {
  std::vector<host_state::pending_create> requests;
  std::vector<std::unique_ptr<session_type>> types;
  std::vector<bool> stepped;
  std::vector<lifecycle_record> records; // of the first steps, in row order
  std::vector<size_t> record_rows;       // the row of each record
};

// Fills in the rows of a burst: the first steps of the sessions whose type
// spawns nothing.
void prepare_rows(host_state& st, std::vector<append_batch>& rows,
                  create_job& j) {
  auto& svc = *st.args.services;
  j.types.reserve(rows.size());
  j.stepped.reserve(rows.size());
  for (auto& row : rows) {
    auto& info = *row.snapshot;
    auto type = svc.types ? svc.types->make(info.type) : nullptr;
    bool stepped = type && type->spawns_nothing();
    if (stepped) {
      row.events = first_steps(info, svc, j.records);
      j.record_rows.resize(j.records.size(), j.types.size()); // this row
    }
    j.types.push_back(std::move(type));
    j.stepped.push_back(stepped);
  }
}

// Starts the sessions of a stored request (rows `first` on) and answers it.
void start_created(self_pointer self, host_state::pending_create& c,
                   std::vector<append_batch>& rows, size_t first,
                   create_job& j) {
  std::shared_ptr<batch_reply> reply;
  if (c.batch) {
    reply = std::make_shared<batch_reply>();
    reply->rp = c.many;
    reply->infos.resize(c.count);
    reply->left = c.count;
  }
  for (size_t i = 0; i < c.count; ++i) {
    auto k = first + i;
    auto& info = *rows[k].snapshot;
    auto& type = j.types[k];
    // Stored with its first steps, or of a type with nothing to start: the
    // session is what was stored, so the host answers for it.
    if (j.stepped[k] || (type && type->quiet_start())) {
      info.loaded = true;
      adopt(self, info, {}, false, std::move(type)); // the session's copy
      if (reply)
        reply->set(i, std::move(info));
      else
        c.one.deliver(std::move(info));
      continue;
    }
    auto handle = adopt(self, std::move(info), {}, true, std::move(type));
    if (!reply) {
      c.one.delegate(handle, sync_atom::value);
      continue;
    }
    self->request(handle, caf::infinite, sync_atom::value)
      .then([reply, i](session_info& x) { reply->set(i, std::move(x)); },
            [reply, i](caf::error& e) { reply->set(i, std::move(e)); });
  }
}

// The store writes of creates, in an actor of their own: one burst per
// message, all rows in one transaction (create_started); when that fails on
// a conflict (another node took a role), each request is retried alone so
// only the conflicting ones fail. Answers with the burst itself, its rows
// intact and one error per request (none: it is stored).
caf::behavior create_writer(caf::event_based_actor*, store_ptr store) {
  return {
    [store](create_burst& burst) -> create_burst {
      auto& rows = burst.rows;
      auto& sizes = burst.sizes;
      burst.errors.assign(sizes.size(), caf::error{});
      auto& out = burst.errors;
      try {
        store->create_started(rows);
        return std::move(burst);
      } catch (const store_error& e) {
        if (sizes.size() == 1 || e.error_code() != store_error::code::conflict) {
          for (auto& x : out)
            x = from_store(e);
          return std::move(burst);
        }
      }
      std::vector<append_batch> one;
      size_t next = 0;
      for (size_t k = 0; k < sizes.size(); ++k) {
        auto begin = rows.begin() + static_cast<ptrdiff_t>(next);
        auto end = begin + static_cast<ptrdiff_t>(sizes[k]);
        one.assign(std::make_move_iterator(begin), std::make_move_iterator(end));
        try {
          store->create_started(one); // a request: all or none
        } catch (const store_error& e) {
          out[k] = from_store(e);
        }
        std::move(one.begin(), one.end(), begin); // the rows go back
        next += sizes[k];
      }
      return std::move(burst);
    },
  };
}

// Hands the creates gathered since the last commit to the writer, then
// starts the sessions of the requests it stored. The roles of the burst stay
// taken until then.
void commit_creates(self_pointer self) {
  auto& st = self->state;
  if (st.committing || st.creating.empty())
    return; // the commit in flight takes them up when it is done
  auto j = std::make_shared<create_job>();
  j->requests = std::move(st.creating);
  st.creating.clear();
  create_burst burst;
  burst.rows = std::move(st.creating_rows);
  st.creating_rows.clear();
  // The next burst is likely as large: room for it now, not by doubling
  // (each doubling moves every row gathered so far).
  st.creating.reserve(std::min<size_t>(j->requests.size(), 1024));
  st.creating_rows.reserve(std::min<size_t>(burst.rows.size(), 1024));
  auto fail = [](host_state::pending_create& c, const caf::error& err) {
    if (c.batch)
      c.many.deliver(err);
    else
      c.one.deliver(err);
  };
  if (st.shutting_down) { // nothing stored: the sessions never existed
    st.creating_roles.clear();
    for (auto& c : j->requests)
      fail(c, make_error(errc::unavailable, "host is shutting down"));
    return;
  }
  prepare_rows(st, burst.rows, *j);
  burst.sizes.reserve(j->requests.size());
  for (auto& c : j->requests)
    burst.sizes.push_back(c.count);
  st.committing = true;
  st.committing_roles = std::move(st.creating_roles);
  st.creating_roles.clear();
  auto done = [self, j, fail](create_burst* stored, const caf::error& err) {
    auto& st = self->state;
    st.committing = false;
    st.committing_roles.clear();
    auto& svc = *st.args.services;
    size_t first = 0;
    size_t record = 0; // the next of j->records
    for (size_t k = 0; k < j->requests.size(); ++k) {
      auto& c = j->requests[k];
      auto at = first;
      first += c.count;
      if (!stored) {
        fail(c, err);
      } else if (k < stored->errors.size() && stored->errors[k]) {
        fail(c, stored->errors[k]);
      } else if (st.shutting_down) {
        // Stored, so created; the host no longer starts sessions.
        std::vector<session_info> infos;
        for (size_t i = 0; i < c.count; ++i)
          infos.push_back(std::move(*stored->rows[at + i].snapshot));
        if (c.batch)
          c.many.deliver(std::move(infos));
        else
          c.one.deliver(std::move(infos.front()));
      } else {
        for (; record < j->records.size() && j->record_rows[record] < first;
             ++record)
          if (j->record_rows[record] >= at) // durable now
            svc.obs->record(std::move(j->records[record]));
        start_created(self, c, stored->rows, at, *j);
      }
    }
    commit_creates(self); // what gathered meanwhile
  };
  self->request(st.writer, caf::infinite, std::move(burst))
    .then([done](create_burst& stored) { done(&stored, caf::error{}); },
          [done](caf::error& err) { done(nullptr, err); });
}

// Keeps the host's one idle timer set for the earliest idle check.
void arm_idle_tick(self_pointer self) {
  auto& st = self->state;
  if (st.idle_queue.empty())
    return;
  auto at = st.idle_queue.top().at;
  if (st.idle_armed_at != 0 && st.idle_armed_at <= at)
    return;
  st.idle_armed_at = at;
  auto now = st.args.services->clock->now();
  auto delay = std::chrono::microseconds(at > now ? at - now : 0);
  self->delayed_send(self, delay, idle_tick_atom::value, ++st.idle_gen);
}

caf::error check_create(const std::string& type, const std::string& role,
                        const metadata_map& md) {
  auto name_ok = [](const std::string& s, size_t max) {
    if (s.empty() || s.size() > max)
      return false;
    for (char c : s)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'
            || c == '.' || c == ':'))
        return false;
    return true;
  };
  if (!name_ok(type, max_type_name))
    return make_error(errc::bad_request,
                      "type must be 1-64 characters of [A-Za-z0-9_.:-]");
  if (!role.empty() && !name_ok(role, max_role))
    return make_error(errc::bad_request,
                      "role must be 1-128 characters of [A-Za-z0-9_.:-]");
  if (md.size() > max_metadata_entries)
    return make_error(errc::bad_request, "at most 64 metadata entries");
  for (auto& [k, v] : md)
    if (k.empty() || k.size() > max_metadata_key
        || v.size() > max_metadata_value)
      return make_error(errc::bad_request,
                        "metadata keys must have 1-128 characters, values at "
                        "most 4096");
  return caf::none;
}

// Checks one create and gives the session its id: appends the row that
// stores it to `rows` (its snapshot is the session itself, built in place),
// or returns why not and appends nothing. `roles` collects the roles of the
// request so far (a second use of one is a conflict).
caf::error prepare_create(self_pointer self, const std::string& type,
                          const std::string& role, const metadata_map& metadata,
                          std::set<std::string>& roles,
                          std::vector<append_batch>& rows) {
  auto& st = self->state;
  if (st.shutting_down)
    return make_error(errc::unavailable, "host is shutting down");
  if (auto err = check_create(type, role, metadata))
    return err;
  auto& types = st.args.services->types;
  if (types && !types->contains(type))
    return make_error(errc::bad_request, "unknown session type " + type);
  if (!role.empty()
      && (st.creating_roles.count(role) || st.committing_roles.count(role)
          || roles.count(role)))
    return make_error(errc::conflict,
                      "role " + role + " is being taken by another create");
  try {
    if (!role.empty())
      if (auto holder = st.args.store->find_by_role(role))
        return make_error(errc::conflict,
                          "role " + role + " is held by session " + *holder);
  } catch (const store_error& e) {
    return from_store(e);
  }
  if (!role.empty())
    roles.insert(role);
  auto& row = rows.emplace_back();
  auto& info = row.snapshot.emplace();
  info.id = st.args.ids->next();
  info.type = type;
  info.role = role;
  info.metadata = metadata;
  info.created_at = info.updated_at = st.args.services->clock->now();
  info.epoch = 1;
  row.session_id = info.id;
  row.epoch = info.epoch;
  return caf::none;
}

// Arms the shutdown's watchdog (one timer for every pending shutdown) with
// the unloads finished so far.
void watch_shutdown(self_pointer self) {
  auto& st = self->state;
  if (st.shutdown_watched)
    return;
  st.shutdown_watched = true;
  self->delayed_send(self, st.args.services->config.shutdown_timeout,
                     shutdown_check_atom::value, st.shutdown_unloaded);
}

// Answers a shutdown once: with its count, or the watchdog's error,
// whichever comes first.
template <class Answer>
void answer_shutdown(host_state::shutdown_wait& w, Answer x) {
  if (w.answered)
    return;
  w.answered = true;
  w.rp.deliver(std::move(x));
}

// Schedules the commit of the creates queued from now on: behind whatever
// is queued already, so one commit per burst.
void queue_creates(self_pointer self) {
  if (self->state.creating.empty() && !self->state.committing)
    self->send(self, create_commit_atom::value);
}

session_host_actor::behavior_type host_behavior(self_pointer self,
                                                host_args args) {
  self->state.args = std::move(args);
  // On threads of their own (detached_store): a commit blocks its thread
  // until fdatasync returns, which on a CAF worker would stall everything
  // scheduled there. Scheduled only for a deterministic test scheduler.
  auto& store = self->state.args.store;
  if (self->state.args.detached_store) {
    self->state.writer = self->spawn<caf::detached>(create_writer, store);
    self->state.loader = self->spawn<caf::detached>(loader, store);
  } else {
    self->state.writer = self->spawn(create_writer, store);
    self->state.loader = self->spawn(loader, store);
  }
  // Sessions and the writer do not outlive their host (a killed host would
  // otherwise leave them running, and ~actor_system waiting for them). The
  // state is gone by the time attached functors run, so the functor shares
  // the loaded map.
  self->attach_functor([sessions = self->state.loaded_owner,
                        writer = self->state.writer,
                        loader = self->state.loader](const caf::error&) {
    caf::anon_send_exit(writer, caf::exit_reason::kill);
    caf::anon_send_exit(loader, caf::exit_reason::kill);
    for (auto& [id, e] : *sessions)
      caf::anon_send_exit(e.handle, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    auto i = st.by_actor.find(dm.source.id());
    if (i == st.by_actor.end())
      return;
    auto id = i->second->str();
    if (!st.unloading.count(id)) // an unload cleans up after itself
      forget(st, id);
  });
  return {
    [self](create_atom, const std::string& type, const std::string& role,
           const metadata_map& md) -> caf::result<session_info> {
      auto& st = self->state;
      std::set<std::string> roles;
      if (auto err = prepare_create(self, type, role, md, roles,
                                    st.creating_rows))
        return err;
      queue_creates(self);
      st.creating_roles.insert(roles.begin(), roles.end());
      host_state::pending_create c;
      c.one = self->make_response_promise<session_info>();
      auto rp = c.one;
      st.creating.push_back(std::move(c));
      return rp;
    },
    [self](create_atom, const std::vector<session_spec>& specs)
      -> caf::result<std::vector<session_info>> {
      auto& st = self->state;
      if (specs.empty() || specs.size() > max_create_batch)
        return make_error(errc::bad_request,
                          "a batch creates 1 to "
                            + std::to_string(max_create_batch) + " sessions");
      std::set<std::string> roles; // of this batch: each role once
      std::vector<append_batch> rows;
      rows.reserve(specs.size());
      for (size_t i = 0; i < specs.size(); ++i) {
        auto& spec = specs[i];
        if (auto err = prepare_create(self, spec.type, spec.role,
                                      spec.metadata, roles, rows))
          return make_error(code_of(err), "session " + std::to_string(i)
                                            + " of the batch: "
                                            + message_of(err));
      }
      queue_creates(self);
      st.creating_roles.insert(roles.begin(), roles.end());
      std::move(rows.begin(), rows.end(), std::back_inserter(st.creating_rows));
      host_state::pending_create c;
      c.batch = true;
      c.count = specs.size();
      c.many = self->make_response_promise<std::vector<session_info>>();
      auto rp = c.many;
      st.creating.push_back(std::move(c));
      return rp;
    },
    [self](create_commit_atom) { commit_creates(self); },
    [self](load_commit_atom) { commit_loads(self); },
    [self](get_session_atom, const std::string& id) -> caf::result<session_actor> {
      auto rp = self->make_response_promise<session_actor>();
      with_session(
        self, id, [rp](const session_actor& h) mutable { rp.deliver(h); },
        [rp](const caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
    [self](get_by_role_atom, const std::string& role) -> caf::result<session_actor> {
      std::optional<std::string> id;
      try {
        id = self->state.args.store->find_by_role(role);
      } catch (const store_error& e) {
        return from_store(e);
      }
      if (!id)
        return make_error(errc::not_found, "no live session has role " + role);
      auto rp = self->make_response_promise<session_actor>();
      with_session(
        self, *id, [rp](const session_actor& h) mutable { rp.deliver(h); },
        [rp](const caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
    [self](find_by_peer_atom, const std::string& peer) {
      auto& st = self->state;
      std::vector<std::string> out;
      if (auto i = st.by_peer.find(peer); i != st.by_peer.end())
        out.assign(i->second.begin(), i->second.end());
      return out;
    },
    [self](load_atom, const std::string& id) -> caf::result<session_info> {
      session_waiter w;
      w.is_load = true;
      w.load = self->make_response_promise<session_info>();
      auto rp = w.load;
      with_session(self, id, std::move(w));
      return rp;
    },
    [self](load_atom, std::vector<std::string>& ids)
      -> caf::result<std::vector<load_result>> {
      if (ids.empty() || ids.size() > max_load_batch)
        return make_error(errc::bad_request,
                          "a batch loads 1 to "
                            + std::to_string(max_load_batch) + " sessions");
      auto batch = std::make_shared<load_batch>();
      batch->self = self;
      batch->rp = self->make_response_promise<std::vector<load_result>>();
      batch->pending = ids.size();
      batch->results.resize(ids.size());
      for (size_t i = 0; i < ids.size(); ++i)
        batch->results[i].id = std::move(ids[i]);
      auto rp = batch->rp;
      // Each slot waits like a single load; duplicates wait on one load.
      for (size_t i = 0; i < batch->results.size(); ++i) {
        session_waiter w;
        w.batch = batch;
        w.slot = i;
        with_session(self, batch->results[i].id, std::move(w));
      }
      return rp;
    },
    [self](unload_atom, const std::string& id) -> caf::result<session_info> {
      auto& st = self->state;
      if (!valid_session_id(id))
        return make_error(errc::not_found, "malformed session id");
      if (!is_loaded(st, id) && !st.unloading.count(id)) {
        // Not loaded: unloading is done already; report what is stored.
        auto stored = stored_info(*st.args.store, id);
        if (!stored)
          return std::move(stored.error());
        return std::move(*stored);
      }
      auto rp = self->make_response_promise<session_info>();
      if (st.unloading.count(id)) {
        // Already on its way out: answer with what the store then holds.
        st.unloading[id].push_back([self, id, rp]() mutable {
          auto stored = stored_info(*self->state.args.store, id);
          if (stored)
            rp.deliver(std::move(*stored));
          else
            rp.deliver(std::move(stored.error()));
        });
        return rp;
      }
      unload(self, id, [rp](caf::expected<session_info> x) mutable {
        if (x)
          rp.deliver(std::move(*x));
        else
          rp.deliver(x.error());
      });
      return rp;
    },
    [self](is_loaded_atom, const std::string& id) {
      return is_loaded(self->state, id);
    },
    [self](loaded_ids_atom) {
      std::vector<std::string> out;
      for (auto& [key, e] : self->state.loaded)
        out.push_back(key.str());
      return out;
    },
    [self](list_atom, const session_filter& filter, const std::string& cursor,
           uint64_t limit) -> caf::result<session_page> {
      auto& st = self->state;
      if (limit == 0 || limit > 1000)
        return make_error(errc::bad_request, "limit must be 1 to 1000");
      try {
        auto page = st.args.store->list(filter, cursor, limit);
        for (auto& s : page.sessions)
          s.loaded = is_loaded(st, s.id);
        for (auto& id : page.unreadable)
          spdlog::error("session {}: stored snapshot does not decode; left "
                        "out of the list", id);
        return page;
      } catch (const store_error& e) {
        return from_store(e);
      }
    },
    [self](count_atom, const session_filter& filter) -> caf::result<uint64_t> {
      try {
        return self->state.args.store->count(filter);
      } catch (const store_error& e) {
        return from_store(e);
      }
    },
    [self](terminate_atom, const std::string& id,
           const std::string& reason) -> caf::result<session_info> {
      auto rp = self->make_response_promise<session_info>();
      with_session(
        self, id,
        [self, rp, reason](const session_actor& h) mutable {
          self->request(h, caf::infinite, terminate_atom::value, reason)
            .then(
              [self, rp, h](session_info&) mutable {
                // Built-in types own nothing to clean: finish at once.
                rp.delegate(h, cleanup_atom::value);
              },
              [rp](caf::error& err) mutable { rp.deliver(err); });
        },
        [rp](const caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
    [self](shutdown_atom) -> caf::result<uint64_t> {
      auto& st = self->state;
      st.shutting_down = true;
      st.args.services->host_stopping = true;
      auto wait = std::make_shared<host_state::shutdown_wait>();
      wait->rp = self->make_response_promise<uint64_t>();
      st.shutdowns.push_back(wait);
      watch_shutdown(self);
      auto ids = std::vector<std::string>{};
      for (auto& [key, e] : st.loaded)
        if (auto id = key.str(); !st.unloading.count(id))
          ids.push_back(std::move(id));
      auto total = static_cast<uint64_t>(ids.size());
      auto left = std::make_shared<size_t>(ids.size());
      auto finish = [self, wait, total]() mutable {
        // Everything the sessions wrote is durable; report how many ended.
        auto sync = [self, wait, total]() mutable {
          auto done = [self, wait, total] {
            ++self->state.shutdown_unloaded; // the sync counts as progress
            answer_shutdown(*wait, total);
          };
          self->request(self->state.args.services->persistence, caf::infinite,
                        sync_atom::value)
            .then([done](bool) { done(); }, [done](caf::error&) { done(); });
        };
        // Loads on the way from the loader are answered (refused) first.
        if (self->state.chunks_in_flight > 0)
          self->state.when_chunks_back.push_back(sync);
        else
          sync();
      };
      if (ids.empty()) {
        finish();
        return wait->rp;
      }
      for (auto& id : ids)
        unload(self, id,
               [self, left, finish](caf::expected<session_info>) mutable {
                 ++self->state.shutdown_unloaded;
                 if (--*left == 0)
                   finish();
               });
      return wait->rp;
    },
    [self](shutdown_check_atom, uint64_t unloaded_then) {
      auto& st = self->state;
      st.shutdown_watched = false;
      auto& waits = st.shutdowns;
      waits.erase(std::remove_if(waits.begin(), waits.end(),
                                 [](auto& w) { return w->answered; }),
                  waits.end());
      if (waits.empty())
        return;
      if (st.shutdown_unloaded == unloaded_then) {
        auto ms = st.args.services->config.shutdown_timeout.count();
        auto bound = ms % 1000 == 0 ? std::to_string(ms / 1000) + " s"
                                    : std::to_string(ms) + " ms";
        auto err = make_error(errc::unavailable,
                              "shutdown gave up: no session finished "
                              "unloading for " + bound + "; "
                                + std::to_string(st.loaded.size())
                                + " still loaded");
        spdlog::error("session host: {}", message_of(err));
        for (auto& w : waits)
          answer_shutdown(*w, err);
        waits.clear();
        return;
      }
      watch_shutdown(self);
    },
    [self](healthy_atom) {
      auto& st = self->state;
      return !st.shutting_down && st.args.services->obs->store_healthy.load();
    },
    [self](add_hook_atom, const std::string& id, hook_id hid) -> caf::result<bool> {
      auto& st = self->state;
      auto e = find_loaded(st, id);
      if (!e || st.unloading.count(id))
        return st.args.services->hooks->enable(hid);
      return self->delegate(e->handle, hook_added_atom::value, hid);
    },
    [](state_changed_atom, const std::string&, session_state) {
      // Nothing kept: the index holds only what locating needs.
    },
    [self](peer_changed_atom, const std::string& id, const std::string& peer,
           bool) {
      auto& st = self->state;
      if (is_loaded(st, id))
        index_peer(st, id, peer);
    },
    [self](idle_soon_atom, micros at) {
      auto& st = self->state;
      if (auto& sender = self->current_sender())
        st.idle_queue.push(host_state::idle_entry{at, sender->id()});
      arm_idle_tick(self);
    },
    [self](idle_tick_atom, uint64_t gen) {
      auto& st = self->state;
      if (gen != st.idle_gen)
        return; // re-armed since
      st.idle_armed_at = 0;
      auto now = st.args.services->clock->now();
      while (!st.idle_queue.empty() && st.idle_queue.top().at <= now) {
        auto actor = st.idle_queue.top().session;
        st.idle_queue.pop();
        auto i = st.by_actor.find(actor);
        if (i == st.by_actor.end())
          continue;
        auto id = i->second->str();
        if (st.unloading.count(id))
          continue;
        if (auto e = find_loaded(st, id))
          self->send(e->handle, idle_check_atom::value, uint64_t{0});
      }
      arm_idle_tick(self);
    },
    [self](idle_atom, const std::string& id, uint64_t) {
      auto& st = self->state;
      if (!is_loaded(st, id) || st.unloading.count(id) || st.shutting_down)
        return;
      spdlog::debug("host: passivating idle session {}", id);
      unload(self, id, [](caf::expected<session_info>) {});
    },
  };
}

} // namespace

session_host_actor spawn_session_host(caf::actor_system& sys, host_args args) {
  return sys.spawn(host_behavior, std::move(args));
}

} // namespace sessionhost
