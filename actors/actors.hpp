#pragma once
// Every typed actor interface of sessionhost, in one place. A wrong message
// to any of them is a compile error. CAF 0.17 spelling:
// replies_to<In...>::with<Out...> is "In... -> Out...", reacts_to<In...> is
// "In... -> void".

#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/atoms.hpp"
#include "actors/client_feed.hpp"
#include "actors/hooks.hpp"
#include "host/event.hpp"
#include "host/json_check.hpp"
#include "host/session_info.hpp"
#include "host/store/session_store.hpp"

// The persistence listener is always local to its sessions: its batches never
// cross the network, so they need no serialization.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessionhost::append_batch)

namespace sessionhost {

/// One session: its lifecycle state, its peer, its event bus and its hooks.
/// Every reply that follows an emitted event is sent once that event is
/// durable (the output gate).
using session_actor = caf::typed_actor<
  // CREATED → SPAWNING.
  caf::replies_to<begin_spawn_atom>::with<session_info>,
  // SPAWNING → ACTIVE, recording the agent that now drives it.
  caf::replies_to<activate_atom, std::string>::with<session_info>,
  // The peer is alive; returns the heartbeat time.
  caf::replies_to<heartbeat_atom>::with<micros>,
  // The same from a peer connection: `forbidden` unless it is the
  // connection the peer attached on (not, say, the old socket of a peer
  // that attached again elsewhere); so for detach and publish below.
  caf::replies_to<heartbeat_atom, caf::actor>::with<micros>,
  // Input for the session (JSON text); returns the seq of the first event it
  // produced. The first message of a new session emits session:start.
  caf::replies_to<message_atom, std::string>::with<uint64_t>,
  // The same with data checked where it entered (not checked again).
  caf::replies_to<message_atom, json_text>::with<uint64_t>,
  // mark_terminating(reason): session:end, then → TERMINATING.
  caf::replies_to<terminate_atom, std::string>::with<session_info>,
  // complete_cleanup: TERMINATING → CLEANED.
  caf::replies_to<cleanup_atom>::with<session_info>,
  // attach_peer(identity, connection): session_open; a dead connection
  // actor (if valid) counts as connection_lost.
  caf::replies_to<attach_atom, std::string, caf::actor>::with<session_info>,
  // detach_peer(reason): "manual" or "connection_lost".
  caf::replies_to<detach_atom, std::string>::with<session_info>,
  caf::replies_to<detach_atom, std::string, caf::actor>::with<session_info>,
  // Adds a subscriber; returns the last durable seq: every later event
  // reaches it as (events_atom, session_id, std::vector<event>) requests.
  caf::replies_to<subscribe_atom, caf::actor>::with<uint64_t>,
  // The same with `credits` true: the events come as plain messages and the
  // subscriber confirms them itself, now and then, with credit_atom (no
  // reply, so no turn of the session, per batch).
  caf::replies_to<subscribe_atom, caf::actor, bool>::with<uint64_t>,
  caf::reacts_to<credit_atom, caf::actor, uint64_t>,
  caf::replies_to<unsubscribe_atom, caf::actor>::with<bool>,
  // publish(type, data JSON): returns the seq once durable.
  caf::replies_to<publish_atom, std::string, std::string>::with<uint64_t>,
  // publish(type, data JSON, idempotency key): a key seen within
  // sessionhost.idempotency-window returns the first publish's seq instead
  // of appending again.
  caf::replies_to<publish_atom, std::string, std::string, std::string>::with<uint64_t>,
  // publish(type, data, key or "" for none, peer connection).
  caf::replies_to<publish_atom, std::string, std::string, std::string,
                  caf::actor>::with<uint64_t>,
  // The three above with data checked where it entered (json_text: the
  // session does not check it again).
  caf::replies_to<publish_atom, std::string, json_text>::with<uint64_t>,
  caf::replies_to<publish_atom, std::string, json_text, std::string>::with<
    uint64_t>,
  caf::replies_to<publish_atom, std::string, json_text, std::string,
                  caf::actor>::with<uint64_t>,
  // The same, answered by message rather than as a request: (ask, seq) goes
  // back in one (publish_acks_atom, std::vector<uint64_t>) per connection
  // and commit, a refusal as (publish_refused_atom, ask, caf::error). A
  // connection with ~200 publishes in flight as requests costs both sides
  // CAF 0.17's linear search of pending responses, and a message each.
  caf::reacts_to<publish_atom, std::string, json_text, std::string,
                 caf::actor, uint64_t>,
  // The session as of its last durable seq: never a change that a crash
  // could still roll back (emitted, not yet durable).
  caf::replies_to<info_atom>::with<session_info>,
  // The info once everything emitted so far is durable.
  caf::replies_to<sync_atom>::with<session_info>,
  // Flushes, writes a snapshot and stops the actor; returns the final info.
  caf::replies_to<unload_atom>::with<session_info>,
  // A per-session hook was registered: enable it, fire an open-hook at once
  // if a peer is connected.
  caf::replies_to<hook_added_atom, hook_id>::with<bool>,
  // From the persistence listener.
  caf::reacts_to<durable_atom, uint64_t>,
  caf::reacts_to<store_failed_atom, std::string>,
  caf::reacts_to<fenced_atom, std::string>,
  // Internal: batch hand-off to the listener and timers (with generation).
  caf::reacts_to<flush_atom>,
  caf::reacts_to<hb_check_atom, uint64_t>,
  caf::reacts_to<grace_check_atom, uint64_t>,
  caf::reacts_to<idle_check_atom, uint64_t>,
  caf::reacts_to<type_timer_atom, uint64_t>,
  // Input for the session type from outside the actor (session_poster).
  caf::reacts_to<external_atom, uint64_t, std::string>>;

/// Group commit: collects every session's not-yet-durable events and writes
/// them to the store in one transaction per batch, then tells each session
/// how far it is durable.
using persistence_listener_actor = caf::typed_actor<
  caf::reacts_to<persist_atom, session_actor, append_batch>,
  caf::reacts_to<commit_atom>,
  // Answers once everything received before it is durable (or failed).
  caf::replies_to<sync_atom>::with<bool>>;

/// Retention: purges the store on a timer (actors/retention_actor.hpp).
using retention_actor = caf::typed_actor<
  // Purges now, to the end; returns (events, sessions) deleted.
  caf::replies_to<purge_atom>::with<uint64_t, uint64_t>,
  // Internal: the timer, and the next step of a purge cut into steps.
  caf::reacts_to<retention_tick_atom>>;

/// The local session host (seed 004's SessionHost, seed 003's coordinator).
using session_host_actor = caf::typed_actor<
  // create_session(type, role, metadata).
  caf::replies_to<create_atom, std::string, std::string, metadata_map>::with<
    session_info>,
  // Batch create: every session or none (one store transaction); 1 to
  // 10,000 specs, infos in their order.
  caf::replies_to<create_atom, std::vector<session_spec>>::with<
    std::vector<session_info>>,
  // Locate (loading on demand).
  caf::replies_to<get_session_atom, std::string>::with<session_actor>,
  caf::replies_to<get_by_role_atom, std::string>::with<session_actor>,
  caf::replies_to<find_by_peer_atom, std::string>::with<std::vector<std::string>>,
  caf::replies_to<load_atom, std::string>::with<session_info>,
  // Batch load: 1 to 10,000 ids, one answer per id in their order (the
  // session's info or that id's error, as a single load answers it); the
  // same loader chunks, claims and waiters as single loads.
  caf::replies_to<load_atom, std::vector<std::string>>::with<
    std::vector<load_result>>,
  caf::replies_to<unload_atom, std::string>::with<session_info>,
  caf::replies_to<is_loaded_atom, std::string>::with<bool>,
  caf::replies_to<loaded_ids_atom>::with<std::vector<std::string>>,
  // Stored sessions, loaded or not (getAllSessions): filter, cursor, limit.
  caf::replies_to<list_atom, session_filter, std::string, uint64_t>::with<
    session_page>,
  caf::replies_to<count_atom, session_filter>::with<uint64_t>,
  // terminate(id, reason): TERMINATING, cleanup, CLEANED.
  caf::replies_to<terminate_atom, std::string, std::string>::with<session_info>,
  // Ends hosting: every session flushed, snapshotted and unloaded; how
  // many. `unavailable` once a whole host_config::shutdown_timeout passed
  // in which no session finished unloading (the rest stay loaded).
  caf::replies_to<shutdown_atom>::with<uint64_t>,
  caf::replies_to<healthy_atom>::with<bool>,
  // A per-session hook was added (disabled) to the registry.
  caf::replies_to<add_hook_atom, std::string, hook_id>::with<bool>,
  // From sessions, to keep the host's indexes without asking them.
  caf::reacts_to<state_changed_atom, std::string, session_state>,
  caf::reacts_to<peer_changed_atom, std::string, std::string, bool>,
  caf::reacts_to<idle_atom, std::string, uint64_t>,
  // From an idle session: ask it (idle_check) at this time. The host keeps
  // one timer for all of them (idle_tick, with its generation).
  caf::reacts_to<idle_soon_atom, micros>,
  caf::reacts_to<idle_tick_atom, uint64_t>,
  // Internal: the shutdown's watchdog, with the unloads finished at arming.
  caf::reacts_to<shutdown_check_atom, uint64_t>,
  // Internal: one store transaction for the creates of a burst.
  caf::reacts_to<create_commit_atom>,
  // Internal: one store transaction for the loads of a burst.
  caf::reacts_to<load_commit_atom>>;

/// Keeps session → client subscriptions and sends each client the events of
/// the sessions it subscribed to (seed 004's ClientHub). A client is any
/// actor; it receives (events_atom, session_id, std::vector<event>) requests
/// and (lagged_atom, session_id, last_seq) when it was dropped for lagging,
/// (unloaded_atom, session_id, last_seq) when the session was unloaded.
using client_hub_actor = caf::typed_actor<
  // Returns the seq after which this client receives every event.
  caf::replies_to<hub_subscribe_atom, caf::actor, std::string>::with<uint64_t>,
  // The same with `credits` true: the events come as plain messages, and
  // the client confirms them itself with hub_credit_atom. Many clients with
  // requests in flight make every request and reply at the hub cost a scan
  // of all of them (CAF 0.17 keeps pending responses in a flat map).
  caf::replies_to<hub_subscribe_atom, caf::actor, std::string, bool>::with<
    uint64_t>,
  // The same for a client the hub writes to itself (client_feed.hpp): no
  // message and no credit per batch; `client` is monitored, and told
  // lagged/unloaded like any other.
  caf::replies_to<hub_subscribe_atom, caf::actor, std::string,
                  client_feed_ptr>::with<uint64_t>,
  // (client, session_id, n): the client processed n events of the session.
  caf::reacts_to<hub_credit_atom, caf::actor, std::string, uint64_t>,
  caf::replies_to<hub_unsubscribe_atom, caf::actor, std::string>::with<bool>,
  caf::reacts_to<broadcast_atom, std::string, std::vector<event>>,
  caf::replies_to<client_count_atom, std::string>::with<uint64_t>,
  // From the broadcast listener: it stopped receiving a session (its
  // clients resume), or the session was unloaded at seq (its clients are
  // told so, and their subscriptions end).
  caf::reacts_to<unwatch_atom, std::string>,
  caf::reacts_to<unloaded_atom, std::string, uint64_t>>;

/// Subscribes to the buses of the sessions the hub has clients for and
/// forwards their events to the hub (seed 004's ClientBroadcastListener).
using client_broadcast_listener_actor = caf::typed_actor<
  // Start receiving a session; returns the seq after which it forwards all.
  caf::replies_to<watch_atom, std::string>::with<uint64_t>,
  caf::reacts_to<unwatch_atom, std::string>,
  // As a subscriber of session buses.
  caf::reacts_to<events_atom, std::string, std::vector<event>>,
  caf::reacts_to<lagged_atom, std::string, uint64_t>,
  caf::reacts_to<unloaded_atom, std::string, uint64_t>>;

} // namespace sessionhost
