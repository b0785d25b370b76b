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

#include "transport/backend.hpp"
#include "transport/server.hpp"

namespace sessionhost {
class embedded_host;
}

namespace sessionhost::transport {

struct api_options {
  /// Required as "Authorization: Bearer <token>" (or ?token= on /v1/ws)
  /// on every route but /healthz; empty: no authentication.
  std::string auth_token;
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
  std::shared_ptr<ws_handler> open_ws(std::shared_ptr<ws_sink> sink) override;
  bool authorize(const std::string& authorization,
                 const std::string& target) override;

  /// From now on, answers and frames still produced by actors are dropped
  /// instead of handed to the server (call before destroying the server).
  void close();

private:
  std::shared_ptr<api_context> ctx_;
};

} // namespace sessionhost::transport
