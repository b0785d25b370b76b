#pragma once
// The actor side of `sessionhost serve`: implements the transport `backend`
// with CAF. REST requests run in a short-lived event-based actor each (no
// blocking on the io thread); every WebSocket gets one connection actor
// (ws_connection.hpp). JSON shapes: docs/PROTOCOL.md.
//
// Thread safety: every method may be called from any thread; the api only
// sends messages and spawns actors.

#include <memory>
#include <string>

#include <caf/fwd.hpp>

#include "transport/auth.hpp"
#include "transport/backend.hpp"
#include "transport/server.hpp"

namespace sessionhost {
class embedded_host;
}

namespace sessionhost::transport {

struct api_options {
  /// One of them is required as "Authorization: Bearer <token>" (or
  /// ?token=) on every route but /healthz and on every WebSocket upgrade;
  /// null: no authentication.
  std::shared_ptr<const token_table> tokens;
  /// Browser origins allowed to open WebSockets (origin_policy).
  std::string allowed_origins;
  /// Timeout of every request to the host's actors.
  std::chrono::milliseconds request_timeout{10'000};
};

struct api_context;

class api : public backend {
public:
  /// `host` must outlive every request; `stats` is the server's (/metrics).
  api(caf::actor_system& sys, embedded_host& host, api_options opts,
      std::shared_ptr<server_stats> stats);
  ~api() override;

  void handle_http(http_request req, respond_fn respond) override;
  std::optional<http_response> check_upgrade(const ws_upgrade& up) override;
  std::shared_ptr<ws_handler> open_ws(std::shared_ptr<ws_sink> sink,
                                      const ws_upgrade& up) override;

  /// From now on, answers and frames still produced by actors are dropped
  /// instead of handed to the server (call before destroying the server).
  void close();

private:
  std::shared_ptr<api_context> ctx_;
};

} // namespace sessionhost::transport
