#pragma once
// Spawns the client broadcast listener linked to its hub (see client_hub.hpp).

#include <caf/fwd.hpp>

#include "actors/actors.hpp"

namespace sessionhost {

/// Spawns the listener linked to `parent`. It subscribes to session buses
/// with credits and confirms every `credit_every` events it forwarded: keep
/// it well inside the sessions' subscriber window.
client_broadcast_listener_actor
spawn_client_broadcast_listener(caf::local_actor* parent,
                                session_host_actor host, client_hub_actor hub,
                                uint64_t credit_every);

} // namespace sessionhost
