#pragma once
// Message tags of sessionhost's actors. CAF 0.17 atoms hold at most 10
// characters; ours carry a prefix per actor (s_ session, h_ host, p_
// persistence, c_ client hub) so they never collide with caf::*_atom.

#include <caf/atom.hpp>

namespace sessionhost {

// -- session actor --------------------------------------------------------
using begin_spawn_atom = caf::atom_constant<caf::atom("s_spawn")>;
using activate_atom = caf::atom_constant<caf::atom("s_activate")>;
using heartbeat_atom = caf::atom_constant<caf::atom("s_hbeat")>;
using message_atom = caf::atom_constant<caf::atom("s_message")>;
using terminate_atom = caf::atom_constant<caf::atom("s_term")>;
using cleanup_atom = caf::atom_constant<caf::atom("s_cleanup")>;
using attach_atom = caf::atom_constant<caf::atom("s_attach")>;
using detach_atom = caf::atom_constant<caf::atom("s_detach")>;
using subscribe_atom = caf::atom_constant<caf::atom("s_sub")>;
using unsubscribe_atom = caf::atom_constant<caf::atom("s_unsub")>;
using publish_atom = caf::atom_constant<caf::atom("s_publish")>;
using info_atom = caf::atom_constant<caf::atom("s_info")>;
using unload_atom = caf::atom_constant<caf::atom("s_unload")>;
using hook_added_atom = caf::atom_constant<caf::atom("s_hookadd")>;
/// A batch of durable events, session → subscriber (a request: the reply is
/// the subscriber's credit).
using events_atom = caf::atom_constant<caf::atom("s_events")>;
/// Session → subscriber: you fell behind and were dropped; resume from seq.
using lagged_atom = caf::atom_constant<caf::atom("s_lagged")>;
/// Session → subscriber: the session was unloaded; resubscribe to go on.
using unloaded_atom = caf::atom_constant<caf::atom("s_unloaded")>;
// Internal to the session: timers and its own flush.
using flush_atom = caf::atom_constant<caf::atom("s_flush")>;
using hb_check_atom = caf::atom_constant<caf::atom("s_hbcheck")>;
using grace_check_atom = caf::atom_constant<caf::atom("s_grace")>;
using idle_check_atom = caf::atom_constant<caf::atom("s_idle")>;
using type_timer_atom = caf::atom_constant<caf::atom("s_ttimer")>;

// -- persistence listener -------------------------------------------------
using persist_atom = caf::atom_constant<caf::atom("p_persist")>;
using durable_atom = caf::atom_constant<caf::atom("p_durable")>;
using store_failed_atom = caf::atom_constant<caf::atom("p_failed")>;
using fenced_atom = caf::atom_constant<caf::atom("p_fenced")>;
using sync_atom = caf::atom_constant<caf::atom("p_sync")>;
using commit_atom = caf::atom_constant<caf::atom("p_commit")>;

// -- session host ---------------------------------------------------------
using create_atom = caf::atom_constant<caf::atom("h_create")>;
using get_session_atom = caf::atom_constant<caf::atom("h_get")>;
using get_by_role_atom = caf::atom_constant<caf::atom("h_getrole")>;
using find_by_peer_atom = caf::atom_constant<caf::atom("h_getpeer")>;
using load_atom = caf::atom_constant<caf::atom("h_load")>;
using is_loaded_atom = caf::atom_constant<caf::atom("h_isloaded")>;
using loaded_ids_atom = caf::atom_constant<caf::atom("h_loaded")>;
using list_atom = caf::atom_constant<caf::atom("h_list")>;
using count_atom = caf::atom_constant<caf::atom("h_count")>;
using shutdown_atom = caf::atom_constant<caf::atom("h_shutdown")>;
using healthy_atom = caf::atom_constant<caf::atom("h_healthy")>;
using add_hook_atom = caf::atom_constant<caf::atom("h_addhook")>;
/// Session → host: my state / peer changed, I am idle, I am gone.
using state_changed_atom = caf::atom_constant<caf::atom("h_state")>;
using peer_changed_atom = caf::atom_constant<caf::atom("h_peer")>;
using idle_atom = caf::atom_constant<caf::atom("h_idle")>;

// -- client hub and broadcast listener ------------------------------------
using hub_subscribe_atom = caf::atom_constant<caf::atom("c_sub")>;
using hub_unsubscribe_atom = caf::atom_constant<caf::atom("c_unsub")>;
using broadcast_atom = caf::atom_constant<caf::atom("c_bcast")>;
using client_count_atom = caf::atom_constant<caf::atom("c_count")>;
using watch_atom = caf::atom_constant<caf::atom("c_watch")>;
using unwatch_atom = caf::atom_constant<caf::atom("c_unwatch")>;
using watching_atom = caf::atom_constant<caf::atom("c_watching")>;

} // namespace sessionhost
