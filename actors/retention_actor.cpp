#include "actors/retention_actor.hpp"

#include <tuple>

#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

namespace sessionhost {

namespace {

struct retention_state {
  static inline const char* name = "sessionhost.retention";

  store_ptr store;
  std::shared_ptr<clock> clk;
  std::shared_ptr<observability_hub> obs;
  retention_options opts;
};

using self_pointer = retention_actor::stateful_pointer<retention_state>;

/// One purge of at most `max_rows` rows (0: all); counted. Throws
/// `store_error`.
purge_result purge_step(self_pointer self, uint64_t max_rows) {
  auto& st = self->state;
  auto policy = st.opts.policy;
  policy.max_rows = max_rows;
  auto r = st.store->purge(policy, st.clk->now());
  st.obs->counters.events_purged += r.events;
  st.obs->counters.sessions_purged += r.sessions;
  return r;
}

bool timer_on(const retention_options& o) {
  return o.interval.count() > 0 && o.policy.enabled();
}

retention_actor::behavior_type retention(self_pointer self, store_ptr store,
                                         std::shared_ptr<clock> clk,
                                         std::shared_ptr<observability_hub> obs,
                                         retention_options opts) {
  auto& st = self->state;
  st.store = std::move(store);
  st.clk = std::move(clk);
  st.obs = std::move(obs);
  st.opts = opts;
  if (timer_on(st.opts))
    self->delayed_send(self, st.opts.interval, retention_tick_atom::value);
  return {
    [self](purge_atom) -> caf::result<uint64_t, uint64_t> {
      uint64_t events = 0, sessions = 0;
      try {
        // Bounded: every truncated step deleted rows, and a store holds
        // finitely many.
        for (;;) {
          auto r = purge_step(self, self->state.opts.step_rows);
          events += r.events;
          sessions += r.sessions;
          if (!r.truncated)
            break;
        }
      } catch (const store_error& e) {
        spdlog::error("retention: purge failed: {}", e.what());
        return caf::make_error(caf::sec::runtime_error, e.what());
      }
      return {events, sessions};
    },
    [self](retention_tick_atom) {
      auto& st = self->state;
      bool more = false;
      try {
        auto r = purge_step(self, st.opts.step_rows);
        if (r.events + r.sessions > 0)
          spdlog::info("retention: purged {} events, {} sessions", r.events,
                       r.sessions);
        more = r.truncated;
      } catch (const store_error& e) {
        spdlog::warn("retention: purge failed, retrying in {} ms: {}",
                     st.opts.interval.count(), e.what());
      }
      // One tick in flight at any time: the rest of a cut purge comes next,
      // after whatever is in the mailbox; otherwise the next interval.
      if (more)
        self->send(self, retention_tick_atom::value);
      else
        self->delayed_send(self, st.opts.interval, retention_tick_atom::value);
    },
  };
}

} // namespace

retention_options retention_options_of(const host_config& cfg) {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  retention_options out;
  out.policy.max_event_age = duration_cast<microseconds>(cfg.retention_max_age);
  out.policy.keep_events = cfg.retention_keep_events;
  out.policy.cleaned_grace = duration_cast<microseconds>(cfg.cleaned_grace);
  out.interval = cfg.retention_interval;
  return out;
}

retention_actor spawn_retention_actor(caf::actor_system& sys, store_ptr store,
                                      std::shared_ptr<clock> clk,
                                      std::shared_ptr<observability_hub> obs,
                                      retention_options opts) {
  if (opts.detached)
    return sys.spawn<caf::detached>(retention, std::move(store), std::move(clk),
                                    std::move(obs), opts);
  return sys.spawn(retention, std::move(store), std::move(clk), std::move(obs),
                   opts);
}

} // namespace sessionhost
