#pragma once
// Spawns the client broadcast listener linked to its hub (see client_hub.hpp).

#include <caf/fwd.hpp>

#include "actors/actors.hpp"

namespace sessionhost {

client_broadcast_listener_actor
spawn_client_broadcast_listener(caf::local_actor* parent,
                                session_host_actor host, client_hub_actor hub);

} // namespace sessionhost
