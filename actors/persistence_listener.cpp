#include "actors/persistence_listener.hpp"

#include <chrono>
#include <set>
#include <thread>
#include <utility>

#include <sys/prctl.h>

#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>
#include <spdlog/spdlog.h>

namespace sessionhost {

namespace {

using namespace std::chrono_literals;

struct listener_state {
  static inline const char* name = "sessionhost.persistence_listener";

  store_ptr store;
  std::shared_ptr<observability_hub> obs;
  size_t batch_limit = 0;
  std::chrono::microseconds commit_delay{0};
  size_t small_commit = 0;
  size_t last_commit_events = 0; // of the last successful commit
  bool may_wait = false;         // the scheduled commit may wait commit_delay
  bool slack_set = false;        // this thread's timer slack is ours
  std::deque<std::pair<session_actor, append_batch>> buffer;
  bool commit_scheduled = false;
  bool failing = false;
  std::chrono::milliseconds backoff = 10ms;
  std::vector<caf::typed_response_promise<bool>> syncs;
};

using self_pointer = persistence_listener_actor::stateful_pointer<listener_state>;

// The wall clock, as events' `ts` is (host/clock.hpp).
micros now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

uint64_t durable_seq_of(const append_batch& b) {
  if (!b.events.empty())
    return b.events.back().seq;
  return b.snapshot ? b.snapshot->last_seq : 0;
}

// `from_idle`: a persist reached a listener with nothing scheduled (not the
// tail of a commit, whose leftovers have waited for that commit already).
void schedule_commit(self_pointer self, bool from_idle) {
  auto& st = self->state;
  if (st.commit_scheduled || st.failing)
    return;
  st.commit_scheduled = true;
  st.may_wait = from_idle && st.commit_delay.count() > 0
                && st.last_commit_events < st.small_commit;
  // Queued behind every persist already in the mailbox: that is the batch.
  self->send(self, commit_atom::value);
}

void report_durable(self_pointer self, const session_actor& who,
                    const append_batch& b, micros now) {
  auto& obs = *self->state.obs;
  obs.counters.events_persisted += b.events.size();
  for (auto& e : b.events)
    obs.publish_to_durable.observe(now - e.ts);
  self->send(who, durable_atom::value, durable_seq_of(b));
}

// A batch that failed for a reason other than I/O: write each session's part
// alone so one fenced session never blocks the others.
void commit_isolated(self_pointer self,
                     std::vector<std::pair<session_actor, append_batch>>& items) {
  auto& st = self->state;
  std::set<std::string> fenced;
  for (auto& [who, batch] : items) {
    if (fenced.count(batch.session_id))
      continue;
    try {
      st.store->append({batch});
      report_durable(self, who, batch, now_us());
    } catch (const store_error& e) {
      if (e.error_code() == store_error::code::io)
        throw;
      fenced.insert(batch.session_id);
      spdlog::warn("persistence: session {} refused: {}", batch.session_id,
                   e.what());
      self->send(who, fenced_atom::value, std::string{e.what()});
    }
  }
}

void commit(self_pointer self) {
  auto& st = self->state;
  st.commit_scheduled = false;
  if (st.buffer.empty()) {
    for (auto& rp : st.syncs)
      rp.deliver(true);
    st.syncs.clear();
    return;
  }
  // Take whole session batches up to the event limit (at least one).
  std::vector<std::pair<session_actor, append_batch>> items;
  size_t events = 0;
  while (!st.buffer.empty()
         && (items.empty()
             || events + st.buffer.front().second.events.size()
                  <= st.batch_limit)) {
    events += st.buffer.front().second.events.size();
    items.push_back(std::move(st.buffer.front()));
    st.buffer.pop_front();
  }
  std::vector<append_batch> batches;
  batches.reserve(items.size());
  for (auto& item : items)
    batches.push_back(item.second);
  try {
    try {
      auto start = now_us();
      st.store->append(batches);
      auto now = now_us();
      st.obs->store_commit.observe(now - start);
      for (auto& [who, batch] : items)
        report_durable(self, who, batch, now);
    } catch (const store_error& e) {
      if (e.error_code() == store_error::code::io)
        throw;
      commit_isolated(self, items);
    }
    st.failing = false;
    st.backoff = 10ms;
    st.obs->store_healthy = true;
    st.last_commit_events = events;
    schedule_commit(self, false);
  } catch (const store_error& e) {
    // Keep everything, in order, and try again later.
    st.obs->counters.store_failures++;
    if (!st.failing) {
      spdlog::error("persistence: store write failed, retrying: {}", e.what());
      std::set<std::string> told;
      for (auto& [who, batch] : items)
        if (told.insert(batch.session_id).second)
          self->send(who, store_failed_atom::value, std::string{e.what()});
    }
    st.failing = true; // new persists wait for the retry below
    st.obs->store_healthy = false;
    for (auto i = items.rbegin(); i != items.rend(); ++i)
      st.buffer.push_front(std::move(*i));
    st.commit_scheduled = true;
    self->delayed_send(self, st.backoff, commit_atom::value);
    st.backoff = std::min(st.backoff * 2, std::chrono::milliseconds(1000));
  }
}

persistence_listener_actor::behavior_type
listener(self_pointer self, store_ptr store,
         std::shared_ptr<observability_hub> obs, persistence_options opts) {
  self->state.store = std::move(store);
  self->state.obs = std::move(obs);
  self->state.batch_limit = opts.batch_limit > 0 ? opts.batch_limit : 1;
  // Waiting sleeps the thread: only on a thread of its own.
  if (opts.detached && opts.commit_delay.count() > 0)
    self->state.commit_delay = opts.commit_delay;
  self->state.small_commit = opts.small_commit;
  return {
    [self](persist_atom, session_actor who, append_batch& batch) {
      self->state.buffer.emplace_back(std::move(who), std::move(batch));
      schedule_commit(self, true);
    },
    [self](commit_atom) {
      auto& st = self->state;
      if (st.may_wait && st.syncs.empty()) {
        // Sleeping is fine: this is the listener's own thread (detached).
        // Whatever persists arrive meanwhile queue ahead of the commit sent
        // below, so it takes them too: one fsync for all of them.
        st.may_wait = false;
        if (!st.slack_set) { // the default 50 µs slack would double 50 µs
          prctl(PR_SET_TIMERSLACK, 1UL);
          st.slack_set = true;
        }
        std::this_thread::sleep_for(st.commit_delay);
        self->send(self, commit_atom::value);
        return;
      }
      commit(self);
    },
    [self](sync_atom) -> caf::result<bool> {
      auto& st = self->state;
      if (st.buffer.empty() && !st.commit_scheduled)
        return true;
      auto rp = self->make_response_promise<bool>();
      st.syncs.push_back(rp);
      return rp;
    },
  };
}

} // namespace

persistence_listener_actor
spawn_persistence_listener(caf::actor_system& sys, store_ptr store,
                           std::shared_ptr<observability_hub> obs,
                           persistence_options opts) {
  if (opts.detached)
    return sys.spawn<caf::detached>(listener, std::move(store), std::move(obs),
                                    opts);
  return sys.spawn(listener, std::move(store), std::move(obs), opts);
}

} // namespace sessionhost
