#pragma once
// The persistence listener: every session hands it its events first, and it
// writes them with group commit — whatever arrived while the last transaction
// ran goes into the next one, up to `batch_limit` events — then tells each
// session the seq it is durable up to. Sessions release events to clients
// and acknowledge producers only then (the output gate). At moderate rates,
// where each commit would carry one event, it first waits `commit_delay` for
// more (see persistence_options).
//
// When the store fails, nothing is dropped or acknowledged: the batch is
// kept, sessions are told (they emit an `error` event), the hub's
// store_healthy flag turns false, and the write is retried with backoff. A
// session whose write is refused for good (stale epoch: another activation
// owns it) is fenced and stops.

#include <chrono>
#include <memory>

#include <caf/fwd.hpp>

#include "actors/actors.hpp"
#include "actors/observability.hpp"
#include "host/store/session_store.hpp"

namespace sessionhost {

struct persistence_options {
  size_t batch_limit = 16'384;
  /// Run on a thread of its own, so a slow fsync never blocks the scheduler.
  /// Off in deterministic tests (test_coordinator).
  bool detached = true;
  /// Group-commit delay: when a persist reaches an idle listener and the
  /// previous commit was small (fewer than `small_commit` events), wait this
  /// long for more before committing, so a moderate rate (where every
  /// publish would be its own fsync) shares commits. It bounds what the
  /// first event of a commit waits; under load commits are large and nothing
  /// waits. 0: never wait. Only with `detached` (it sleeps its own thread).
  std::chrono::microseconds commit_delay{0};
  /// A commit of fewer events than this counts as small (see commit_delay).
  size_t small_commit = 8;
};

persistence_listener_actor
spawn_persistence_listener(caf::actor_system& sys, store_ptr store,
                           std::shared_ptr<observability_hub> obs,
                           persistence_options opts);

} // namespace sessionhost
