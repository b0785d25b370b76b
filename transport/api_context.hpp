#pragma once
// What the REST handlers and the WebSocket connection actors share: the host's
// actor handles, the store, counters and options. Immutable after
// construction, so any actor may read it from any thread.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "actors/actors.hpp"
#include "actors/observability.hpp"
#include "host/store/session_store.hpp"
#include "transport/auth.hpp"
#include "transport/server.hpp"

namespace caf { class actor_system; }

namespace sessionhost::transport {

/// Event frames serialized once for every WebSocket subscriber
/// (ws_connection.cpp); thread-safe.
class frame_cache;
std::shared_ptr<frame_cache> make_frame_cache();

struct api_context {
  caf::actor_system* sys = nullptr;
  session_host_actor host;
  client_hub_actor hub;
  store_ptr store;
  observability_hub* obs = nullptr;
  std::shared_ptr<server_stats> stats;
  std::shared_ptr<const token_table> tokens; // null: no authentication
  origin_policy origins;
  std::chrono::milliseconds timeout{10'000};
  std::shared_ptr<frame_cache> frames = make_frame_cache();

  /// Runs `f` (which hands something to the server) unless the api was
  /// closed; after `close()` returns, nothing reaches the server any more.
  template <class F>
  void if_open(F&& f) {
    std::lock_guard<std::mutex> guard{mtx};
    if (!closed)
      f();
  }
  void close() {
    std::lock_guard<std::mutex> guard{mtx};
    closed = true;
  }

private:
  std::mutex mtx;
  bool closed = false; // guarded by mtx
};

/// Whether `scope` (null: no authentication) reaches session `id`: by id,
/// else by the role stored for it (a blocking store read). Unknown
/// sessions are outside every limited scope.
bool in_scope(const api_context& ctx, const token_scope* scope,
              const std::string& id);

/// Spawns the actor of one WebSocket connection; returns its handler.
/// `scope` (null: no authentication) limits what its ops reach; `proto`
/// selects binary protobuf frames.
std::shared_ptr<ws_handler> spawn_ws_connection(std::shared_ptr<api_context> ctx,
                                                std::shared_ptr<ws_sink> sink,
                                                const token_scope* scope,
                                                bool proto);

} // namespace sessionhost::transport
