#pragma once
// Message tags of sessionhost's actors. CAF 0.17 atoms hold at most 10
// characters; ours carry a prefix per actor (s_ session, h_ host, p_
// persistence, c_ client hub) so they never collide with caf::*_atom.

#include <caf/atom.hpp>

namespace sessionhost {

// -- session actor --------------------------------------------------------
/// session: CREATED → SPAWNING.
using begin_spawn_atom = caf::atom_constant<caf::atom("s_spawn")>;
/// session: SPAWNING → ACTIVE, with the agent that drives it.
using activate_atom = caf::atom_constant<caf::atom("s_activate")>;
/// session: the peer is alive.
using heartbeat_atom = caf::atom_constant<caf::atom("s_hbeat")>;
/// session: input (JSON text) for its session type.
using message_atom = caf::atom_constant<caf::atom("s_message")>;
/// session and host: mark a session TERMINATING (session:end first).
using terminate_atom = caf::atom_constant<caf::atom("s_term")>;
/// session: TERMINATING → CLEANED.
using cleanup_atom = caf::atom_constant<caf::atom("s_cleanup")>;
/// session: attach the peer (identity, connection actor).
using attach_atom = caf::atom_constant<caf::atom("s_attach")>;
/// session: detach the peer with a reason.
using detach_atom = caf::atom_constant<caf::atom("s_detach")>;
/// session: add a subscriber actor to its event bus.
using subscribe_atom = caf::atom_constant<caf::atom("s_sub")>;
/// session: remove a subscriber actor.
using unsubscribe_atom = caf::atom_constant<caf::atom("s_unsub")>;
/// session: a subscriber that confirms by message processed n events.
using credit_atom = caf::atom_constant<caf::atom("s_credit")>;
/// session: publish an event (type, JSON data).
using publish_atom = caf::atom_constant<caf::atom("s_publish")>;
/// session → peer connection: the publishes of one commit acknowledged in
/// one message, (ask, seq) pairs flattened into one std::vector<uint64_t>.
using publish_acks_atom = caf::atom_constant<caf::atom("s_packs")>;
/// session → peer connection: a publish refused (ask, caf::error).
using publish_refused_atom = caf::atom_constant<caf::atom("s_prefused")>;
/// session: its session_info now.
using info_atom = caf::atom_constant<caf::atom("s_info")>;
/// session and host: flush, snapshot and stop the actor.
using unload_atom = caf::atom_constant<caf::atom("s_unload")>;
/// session: a per-session hook was registered.
using hook_added_atom = caf::atom_constant<caf::atom("s_hookadd")>;
/// A batch of durable events, session → subscriber (a request: the reply is
/// the subscriber's credit).
using events_atom = caf::atom_constant<caf::atom("s_events")>;
/// Session → subscriber: you fell behind and were dropped; resume from seq.
using lagged_atom = caf::atom_constant<caf::atom("s_lagged")>;
/// Session → subscriber: the session was unloaded; resubscribe to go on.
using unloaded_atom = caf::atom_constant<caf::atom("s_unloaded")>;
// Internal to the session: timers and its own flush.
/// session, internal: hand pending events to the listener.
using flush_atom = caf::atom_constant<caf::atom("s_flush")>;
/// session, internal: heartbeat timer.
using hb_check_atom = caf::atom_constant<caf::atom("s_hbcheck")>;
/// session, internal: reconnect-grace timer.
using grace_check_atom = caf::atom_constant<caf::atom("s_grace")>;
/// session, internal: idle timer.
using idle_check_atom = caf::atom_constant<caf::atom("s_idle")>;
/// session, internal: a session type's own timer.
using type_timer_atom = caf::atom_constant<caf::atom("s_ttimer")>;
/// session: input for its type from outside the actor (session_poster).
using external_atom = caf::atom_constant<caf::atom("s_extern")>;

// -- persistence listener -------------------------------------------------
/// persistence listener: a session's batch to write.
using persist_atom = caf::atom_constant<caf::atom("p_persist")>;
/// listener → session: durable up to seq.
using durable_atom = caf::atom_constant<caf::atom("p_durable")>;
/// listener → session: the store refused a write (retrying).
using store_failed_atom = caf::atom_constant<caf::atom("p_failed")>;
/// listener → session: a newer activation owns the session.
using fenced_atom = caf::atom_constant<caf::atom("p_fenced")>;
/// listener and session: answer once everything so far is durable.
using sync_atom = caf::atom_constant<caf::atom("p_sync")>;
/// persistence listener, internal: write what is buffered.
using commit_atom = caf::atom_constant<caf::atom("p_commit")>;

// -- retention actor ------------------------------------------------------
using purge_atom = caf::atom_constant<caf::atom("r_purge")>;
using retention_tick_atom = caf::atom_constant<caf::atom("r_tick")>;

// -- session host ---------------------------------------------------------
/// host: create a session (type, role, metadata).
using create_atom = caf::atom_constant<caf::atom("h_create")>;
/// host: a session's actor by id (loading it on demand).
using get_session_atom = caf::atom_constant<caf::atom("h_get")>;
/// host: the live session holding a role.
using get_by_role_atom = caf::atom_constant<caf::atom("h_getrole")>;
/// host: ids of the sessions a peer identity is attached to.
using find_by_peer_atom = caf::atom_constant<caf::atom("h_getpeer")>;
/// host: load a stored session (warming).
using load_atom = caf::atom_constant<caf::atom("h_load")>;
/// host: whether a session is loaded.
using is_loaded_atom = caf::atom_constant<caf::atom("h_isloaded")>;
/// host: ids of the loaded sessions.
using loaded_ids_atom = caf::atom_constant<caf::atom("h_loaded")>;
/// host: a page of stored sessions (filter, cursor, limit).
using list_atom = caf::atom_constant<caf::atom("h_list")>;
/// host: how many stored sessions match a filter.
using count_atom = caf::atom_constant<caf::atom("h_count")>;
/// host: unload every session, then report how many.
using shutdown_atom = caf::atom_constant<caf::atom("h_shutdown")>;
/// host: whether the store accepts writes.
using healthy_atom = caf::atom_constant<caf::atom("h_healthy")>;
/// host: a per-session hook was added to the registry.
using add_hook_atom = caf::atom_constant<caf::atom("h_addhook")>;
/// Session → host: my state / peer changed, I am idle, I am gone.
using state_changed_atom = caf::atom_constant<caf::atom("h_state")>;
/// Session → host: its peer attached or detached.
using peer_changed_atom = caf::atom_constant<caf::atom("h_peer")>;
/// Session → host: it is idle and may be unloaded.
using idle_atom = caf::atom_constant<caf::atom("h_idle")>;
/// From an idle session: check me at (micros). Host-internal: the timer.
using idle_soon_atom = caf::atom_constant<caf::atom("h_idlesoon")>;
using idle_tick_atom = caf::atom_constant<caf::atom("h_idletick")>;
/// Host-internal: has the shutdown moved since the last check?
using shutdown_check_atom = caf::atom_constant<caf::atom("h_sdcheck")>;
/// Host-internal: store the sessions created since the last commit.
using create_commit_atom = caf::atom_constant<caf::atom("h_crcommit")>;
/// Host-internal: activate the sessions asked for since the last commit.
using load_commit_atom = caf::atom_constant<caf::atom("h_ldcommit")>;

// -- client hub and broadcast listener ------------------------------------
/// client hub: subscribe a client actor to a session.
using hub_subscribe_atom = caf::atom_constant<caf::atom("c_sub")>;
/// client hub: unsubscribe a client actor.
using hub_unsubscribe_atom = caf::atom_constant<caf::atom("c_unsub")>;
/// client hub: a client that credits explicitly processed n events.
using hub_credit_atom = caf::atom_constant<caf::atom("c_credit")>;
/// client hub: events of a session for its clients.
using broadcast_atom = caf::atom_constant<caf::atom("c_bcast")>;
/// client hub: how many clients a session has.
using client_count_atom = caf::atom_constant<caf::atom("c_count")>;
/// broadcast listener: start forwarding a session.
using watch_atom = caf::atom_constant<caf::atom("c_watch")>;
/// broadcast listener ↔ hub: stop forwarding a session.
using unwatch_atom = caf::atom_constant<caf::atom("c_unwatch")>;
/// broadcast listener: the sessions it forwards.
using watching_atom = caf::atom_constant<caf::atom("c_watching")>;

} // namespace sessionhost
