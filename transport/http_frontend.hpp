#pragma once
// REST + WebSocket (docs/PROTOCOL.md) in front of an embedded_host: what
// `sessionhost serve` runs, for a host of your own — your actor system, your
// store, your session types. `POST /v1/sessions {"type":"my_type"}` creates
// any type registered in the host's session_type_registry; an unknown type
// is a 400 and creates nothing. The HTTP server runs on an Asio thread of its
// own; each request and each WebSocket becomes an actor in your system.
//
//   sessionhost::transport::http_frontend web{sys, host, opts};
//   uint16_t port = web.start();      // opts.server.port 0: any free port
//   …
//   web.stop_accepting();             // shutdown, in this order:
//   host.stop();                      //   sessions flushed and unloaded
//   web.stop();                       //   WebSockets closed (1001), thread gone
//
// Thread safety: start, stop_accepting and stop are called from one thread of
// yours (never from inside an actor); port() from any thread.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <caf/fwd.hpp>

#include "transport/api.hpp"
#include "transport/server.hpp"

namespace sessionhost {
class embedded_host;
}

namespace sessionhost::transport {

/// What an http_frontend serves with; every member has a default.
struct http_frontend_options {
  /// Listen address (default 127.0.0.1:8080; port 0: any free port) and the
  /// frame, body and per-WebSocket queue bounds.
  server_options server;
  /// Bearer token (empty: none; then listen on loopback only) and the
  /// timeout of every request to the host's actors.
  api_options api;
  /// Also serve the dashboard (`GET /`, `GET /web/…`), as serve does.
  bool dashboard = true;
};

/// The REST + WebSocket transport of one embedded_host.
class http_frontend {
public:
  /// Nothing listens before start(). `host` and `sys` must outlive this
  /// object.
  http_frontend(caf::actor_system& sys, embedded_host& host,
                http_frontend_options opts = {});
  /// Calls stop().
  ~http_frontend();

  http_frontend(const http_frontend&) = delete;
  http_frontend& operator=(const http_frontend&) = delete;

  /// Binds, listens and starts the server thread. Returns the bound port;
  /// throws std::system_error when the address cannot be bound.
  uint16_t start();

  /// The port start() bound (0 before).
  uint16_t port() const noexcept;

  /// Stops accepting connections; open ones keep working, so that a
  /// following embedded_host::stop() still reaches subscribed WebSockets.
  void stop_accepting();

  /// Closes every WebSocket with 1001 (going away), waiting at most
  /// `ws_close_timeout`, then stops the server thread; answers the host's
  /// actors produce afterwards are dropped. Returns how many WebSockets did
  /// not close in time. Idempotent.
  size_t stop(std::chrono::milliseconds ws_close_timeout
              = std::chrono::milliseconds{1500});

private:
  std::shared_ptr<api> api_;
  std::shared_ptr<backend> backend_; // api_, or the dashboard in front of it
  std::unique_ptr<server> server_;
  std::atomic<uint16_t> port_{0};
  bool stopped_ = false;
};

} // namespace sessionhost::transport
