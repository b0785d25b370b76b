#pragma once
// The retention actor: applies the retention policy (host/store/retention.hpp)
// to the store every `interval`, on a thread of its own, and counts what it
// deleted in the observability counters (`events_purged`, `sessions_purged`).
//
// It never blocks a session: sessions never talk to it, and the store purges
// in small transactions that writers interleave with. One tick purges at most
// `step_rows` rows and then yields to its mailbox (exit messages included)
// before the next step, so stopping it never waits for a whole large purge.
// A purge that fails is logged and tried again at the next interval.
//
// Thread safety: an actor; talk to it with messages only.

#include <chrono>
#include <memory>

#include <caf/fwd.hpp>

#include "actors/actors.hpp"
#include "actors/observability.hpp"
#include "host/clock.hpp"
#include "host/config.hpp"
#include "host/store/retention.hpp"
#include "host/store/session_store.hpp"

namespace sessionhost {

struct retention_options {
  retention_policy policy;
  /// Time between purges; zero (or a policy with no rule on) starts no timer.
  std::chrono::milliseconds interval{std::chrono::minutes(10)};
  /// Most rows one step deletes before the actor reads its mailbox again.
  uint64_t step_rows = 50'000;
  /// Run on a thread of its own (off for CAF's test_coordinator).
  bool detached = true;
};

/// The policy the `sessionhost.retention-*` and `cleaned-grace` keys give.
retention_options retention_options_of(const host_config& cfg);

retention_actor spawn_retention_actor(caf::actor_system& sys, store_ptr store,
                                      std::shared_ptr<clock> clk,
                                      std::shared_ptr<observability_hub> obs,
                                      retention_options opts);

} // namespace sessionhost
