#pragma once
// The client hub (seed 004's ClientHub) and its client broadcast listener.
//
// The hub keeps, per session, the clients subscribed to it (an event_bus, so
// each client has its own bounded window) and sends each client the events
// the broadcast listener forwards; a client that subscribed with a
// client_feed (a WebSocket connection) is written to in the hub's own turn
// instead, bounded by its socket queue. The listener subscribes to a session's bus
// only while the hub has clients for it, so sessions without clients stay
// idle and can be passivated. A client that lags (or whose session vanished
// without unloading) gets (lagged_atom, session_id, last_seq) and may
// resubscribe; a client whose session was unloaded (by request, for idleness
// or because the host stops) gets (unloaded_atom, session_id, last_seq) and
// is no longer subscribed: resubscribing would load the session again.
// Session lists are REST-only: the hub never broadcasts them.

#include <caf/fwd.hpp>

#include "actors/actors.hpp"

namespace sessionhost {

struct client_hub_options {
  /// Unconfirmed events per client and session before it is dropped.
  size_t client_window = 8192;
  /// The sessions' subscriber window: the broadcast listener, a crediting
  /// subscriber of every watched session, confirms well inside it.
  size_t session_window = 8192;
};

/// Spawns the hub and, linked to it, its broadcast listener.
client_hub_actor spawn_client_hub(caf::actor_system& sys,
                                  session_host_actor host,
                                  client_hub_options opts);

} // namespace sessionhost
