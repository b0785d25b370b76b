#pragma once
// The local session host (seed 004's LocalSessionHost, seed 003's
// multi-session coordinator): creates, loads, unloads, locates, lists and
// shuts down sessions.
//
// It keeps its own indexes — loaded sessions by id, by actor and by peer
// identity, their states — updated by the sessions' own notices, and never
// messages every session to answer a query (CAF 0.17's default scheduler
// turns one actor messaging 100,000 others quadratic). Lists and counts come
// from the store, which is never behind an acknowledged operation. Any
// operation on a stored session that is not loaded loads it first.

#include <memory>

#include <caf/fwd.hpp>

#include "actors/actors.hpp"
#include "actors/session_services.hpp"
#include "host/id_generator.hpp"
#include "host/store/session_store.hpp"

namespace sessionhost {

/// What the session host is spawned with.
struct host_args {
  services_ptr services;
  store_ptr store;
  std::shared_ptr<id_generator> ids;
  /// The create writer and the loader, which block in the store (a commit
  /// waits for fdatasync), on threads of their own, so a commit never holds
  /// a CAF worker (on one worker: every session, the hub and every
  /// connection). Off only where CAF's test_coordinator must run them.
  bool detached_store = true;
};

session_host_actor spawn_session_host(caf::actor_system& sys, host_args args);

/// Limits on create_session's input (bad input is refused, not truncated).
constexpr size_t max_type_name = 64;
constexpr size_t max_role = 128;
constexpr size_t max_metadata_entries = 64;
constexpr size_t max_metadata_key = 128;
constexpr size_t max_metadata_value = 4096;

} // namespace sessionhost
