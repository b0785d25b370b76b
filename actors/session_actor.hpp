#pragma once
// The session actor: one per loaded session, owning its lifecycle state, its
// peer, its event bus, its timers and the firing of its hooks.
//
// Event path: an emission gets the next seq and goes to the persistence
// listener; only when the listener reports it durable is it released to the
// bus subscribers and are the replies that depend on it sent (output gate).
// At most `max_backlog` events may wait for durability; past that, publish
// and message fail with `overloaded`.

#include <vector>

#include <caf/fwd.hpp>

#include "actors/actors.hpp"
#include "actors/session_services.hpp"

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
};

/// Spawns a session actor.
session_actor spawn_session(caf::actor_system& sys, session_start start);

/// Applies stored events after a snapshot to it (state, counters, peer,
/// last_seq): the fold that makes "snapshot + events after it" exact.
void replay_into(session_info& info, const std::vector<event>& events);

} // namespace sessionhost
