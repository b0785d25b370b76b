#pragma once
// sessionhost inside a caller's own actor system: spawns the session host,
// the persistence listener and the client hub (with its broadcast listener),
// offers seed 000's hook calls, and stops them all without shutting the
// caller's system down.
//
// The blocking helpers (register_on_session_open(id, …), stop) wait on a
// scoped_actor and must not be called from inside an actor or a hook.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include "actors/actors.hpp"
#include "actors/hooks.hpp"
#include "actors/observability.hpp"
#include "host/clock.hpp"
#include "host/config.hpp"
#include "host/id_generator.hpp"
#include "host/session_type.hpp"
#include "host/store/session_store.hpp"

namespace sessionhost {

/// What an embedded_host is started with; every member has a default.
struct host_options {
  /// Timeouts, policies and bounds (see host_config).
  host_config config;
  store_ptr store;                    ///< default: a memory_store
  std::shared_ptr<sessionhost::clock> clock; ///< default: the system clock
  std::shared_ptr<id_generator> ids;  ///< default: UUIDv4
  /// Session types by name; default: the built-ins (echo, agent).
  std::shared_ptr<session_type_registry> types;
  /// The actors that block in the store on threads of their own: the
  /// persistence listener, retention, and the host's create writer and
  /// loader (off for CAF's test_coordinator).
  bool detached_persistence = true;
  /// Unconfirmed events per client of the client hub; past it the client is
  /// dropped and sent (lagged_atom, session_id, last_seq).
  size_t client_window = 8192;
};

/// The host's actors inside the caller's actor system. Construct it after
/// the system, destroy it (or call stop) before the system.
class embedded_host {
public:
  /// Spawns the persistence listener, the session host and the client hub
  /// (with its broadcast listener) in `sys`.
  embedded_host(caf::actor_system& sys, host_options opts);
  /// Calls stop().
  ~embedded_host();

  embedded_host(const embedded_host&) = delete;
  embedded_host& operator=(const embedded_host&) = delete;

  // -- actors -------------------------------------------------------------
  /// The session host: create, locate, load, unload, list, terminate.
  const session_host_actor& host() const noexcept { return host_; }
  /// The client hub: subscribe any actor to a session's events.
  const client_hub_actor& hub() const noexcept { return hub_; }
  /// The client hub's window (host_options::client_window).
  size_t client_window() const noexcept { return client_window_; }
  /// The persistence listener (group commit into the store).
  const persistence_listener_actor& persistence() const noexcept {
    return persistence_;
  }
  /// Purges the store per `config`'s retention keys (see host/config.hpp).
  const retention_actor& retention() const noexcept { return retention_; }
  /// Lifecycle records and counters of every session of this host.
  observability_hub& observability() noexcept { return *obs_; }
  /// The hook registry the hook calls below use.
  hook_registry& hooks() noexcept { return *hooks_; }
  /// The store the sessions are durable in.
  const store_ptr& store() const noexcept { return store_; }
  /// The session types sessions are created from; adding one later is fine.
  session_type_registry& types() noexcept { return *types_; }

  // -- loads ---------------------------------------------------------------
  /// Loads several sessions with one request (host()'s `load_atom,
  /// std::vector<std::string>`): 1 to 10,000 ids, one load_result per id in
  /// their order, the session's info or that id's error as a single load
  /// answers it (one bad id never fails the others; a duplicate id is
  /// loaded once and answered twice). Already loaded sessions answer their
  /// current info. The whole call fails only for a list that is empty or
  /// too long (bad_request) or no answer within `timeout`. Blocks: not from
  /// inside an actor.
  caf::expected<std::vector<load_result>>
  load(const std::vector<std::string>& ids,
       caf::timespan timeout = std::chrono::seconds(60));

  // -- hooks (seed 000) ---------------------------------------------------
  /// Host-wide hooks: every session, including ones loaded later.
  /// Returns the id that unregisters it.
  hook_id register_on_session_open(hook_fn fn);
  /// Host-wide session_close hook (metadata "reason": manual,
  /// connection_lost, heartbeat_timeout, …).
  hook_id register_on_session_close(hook_fn fn);
  /// Host-wide heartbeat_timeout hook.
  hook_id register_on_heartbeat_timeout(hook_fn fn);
  /// Hooks of one session; they survive unloading. An open-hook on a session
  /// whose peer is connected fires at once. Blocks until registered.
  hook_id register_on_session_open(const std::string& session_id, hook_fn fn);
  /// A session_close hook of one session. Blocks until registered.
  hook_id register_on_session_close(const std::string& session_id, hook_fn fn);
  /// A heartbeat_timeout hook of one session. Blocks until registered.
  hook_id register_on_heartbeat_timeout(const std::string& session_id,
                                        hook_fn fn);
  /// Removes a session_open hook (host-wide or per session); whether it was
  /// there.
  bool unregister_on_session_open(hook_id id);
  /// Removes a session_close hook; whether it was there.
  bool unregister_on_session_close(hook_id id);
  /// Removes a heartbeat_timeout hook; whether it was there.
  bool unregister_on_heartbeat_timeout(hook_id id);
  /// Removes every hook of one session; returns how many.
  size_t clear_session_hooks(const std::string& session_id);
  /// Removes every hook.
  void clear_session_hooks();

  /// Unloads every session (flushed and durable), then stops the host's
  /// actors. Idempotent; the destructor calls it. Never stops `sys` or any
  /// actor the caller spawned. Blocks while sessions keep unloading; once
  /// none finished for `config.shutdown_timeout` it stops the rest without
  /// their final snapshot (acknowledged events are durable already) and
  /// returns; so it does if the host ends first. Not from inside an actor.
  void stop();

private:
  hook_id add_session_hook(hook_kind kind, const std::string& session_id,
                           hook_fn fn);

  caf::actor_system& sys_;
  store_ptr store_;
  std::shared_ptr<observability_hub> obs_;
  std::shared_ptr<hook_registry> hooks_;
  std::shared_ptr<session_type_registry> types_;
  persistence_listener_actor persistence_;
  retention_actor retention_;
  session_host_actor host_;
  client_hub_actor hub_;
  size_t client_window_ = 0;
  bool stopped_ = false;
};

} // namespace sessionhost
