#pragma once
// The session actor: one per loaded session, owning its lifecycle state, its
// peer, its event bus, its timers and the firing of its hooks.
//
// Event path: an emission gets the next seq and goes to the persistence
// listener; only when the listener reports it durable is it released to the
// bus subscribers and are the replies that depend on it sent (output gate).
// At most `max_backlog` events may wait for durability; past that, publish
// and message fail with `overloaded`.

#include <memory>
#include <vector>

#include <caf/fwd.hpp>

#include "actors/actors.hpp"
#include "actors/session_services.hpp"
#include "host/store/catch_up.hpp" // replay_into

namespace sessionhost {

struct session_start {
  /// The session as created, or as restored from its snapshot.
  session_info info;
  /// Stored events after the snapshot's last_seq, replayed into the state.
  std::vector<event> replay;
  services_ptr services;
  /// Told about state and peer changes and idleness; may be invalid.
  session_host_actor host;
  /// A session just created (not loaded): a type that spawns nothing makes
  /// it ACTIVE at once.
  bool is_new = false;
  /// The type instance, when the host made it already; else the session
  /// makes one from `services->types`.
  std::unique_ptr<session_type> type{};
  /// The host has this session's first idle check queued already, so the
  /// session does not report one when it starts.
  bool idle_reported = false;
};

/// Spawns a session actor. `start` is moved from (taken by reference: a
/// session_start is large, and each copy or move of it costs an activation).
session_actor spawn_session(caf::actor_system& sys, session_start&& start);

/// The first steps of a new session whose type spawns nothing (CREATED →
/// SPAWNING → ACTIVE): the status_changed events the session would emit,
/// applied to `info` (state, updated_at, last_seq), with their records for
/// the observability hub in `records`. The host stores them right after the
/// create, so the session starts ACTIVE with them durable.
std::vector<event> first_steps(session_info& info, const session_services& svc,
                               std::vector<lifecycle_record>& records);

} // namespace sessionhost
