#pragma once
// What every session of one host shares: configuration, the injected clock,
// the hook registry, the observability hub and the persistence listener.
// Constant after the host starts, except the hub/registry (thread-safe) and
// the health flag (atomic).

#include <atomic>
#include <memory>

#include "actors/actors.hpp"
#include "actors/hooks.hpp"
#include "actors/observability.hpp"
#include "host/clock.hpp"
#include "host/config.hpp"
#include "host/session_type.hpp"
#include "host/store/session_store.hpp"

namespace sessionhost {

struct session_services {
  host_config config;
  std::shared_ptr<sessionhost::clock> clock;
  std::shared_ptr<hook_registry> hooks;
  std::shared_ptr<observability_hub> obs;
  /// Session types by name; sessions of an unknown type are passive.
  std::shared_ptr<session_type_registry> types;
  persistence_listener_actor persistence;
  /// Set by the host when it shuts down: a session whose type holds
  /// resources (a process) is terminated before it is unloaded.
  std::atomic<bool> host_stopping{false};
  /// Read only to recover idempotency keys of earlier activations.
  store_ptr store;
};

using services_ptr = std::shared_ptr<session_services>;

} // namespace sessionhost
