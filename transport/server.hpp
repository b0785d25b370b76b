#pragma once
// The HTTP + WebSocket server of `sessionhost serve`: Boost.Beast on its own
// Asio io thread, no CAF. Every request goes to a `backend`; WebSockets at
// /v1/ws get a `ws_handler` from it and send through a bounded `ws_sink`.
//
// Thread safety: start/stop_accepting/close_websockets/stop are called from
// one controlling thread (main); everything else runs on the io thread.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "host/latency_histogram.hpp"
#include "transport/backend.hpp"

namespace sessionhost::transport {

struct server_options {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;           // 0: any free port
  size_t max_body = 1 << 20;      // HTTP bodies above it: 413
  size_t max_frame = 1 << 20;     // WebSocket frames above it: close 1009
  size_t client_queue_bytes = 8 << 20; // per WebSocket outgoing bound: 1013
};

/// Counters the server keeps (for /metrics).
struct server_stats {
  std::atomic<uint64_t> http_requests{0};
  std::atomic<uint64_t> ws_connections{0};     // accepted, ever
  std::atomic<uint64_t> ws_open{0};            // open now
  std::atomic<uint64_t> ws_slow_closed{0};     // closed with 1013
  std::atomic<uint64_t> ws_oversize_closed{0}; // closed with 1009
  std::atomic<uint64_t> ws_refused{0};         // upgrades refused (401/403)
  std::atomic<uint64_t> ws_resumed{0}; // live subscriptions the hub dropped
  /// A live event's publish (its `ts`) to its frame handed to the socket
  /// write, per subscriber.
  latency_histogram publish_to_send;
  /// A WebSocket publish frame read off the socket to its ack handed to the
  /// socket write.
  latency_histogram publish_to_ack;
};

class server {
public:
  /// `stats` is shared with whoever reports it (/metrics); null: own one.
  server(server_options opts, std::shared_ptr<backend> be,
         std::shared_ptr<server_stats> stats = nullptr);
  ~server();

  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds, listens and starts the io thread. Returns the bound port; throws
  /// std::system_error when the address cannot be bound.
  uint16_t start();

  /// Stops accepting new connections (open ones keep working).
  void stop_accepting();

  /// Closes every open WebSocket with `code` and waits (at most
  /// `timeout_ms`) until they are gone. Returns how many were still open.
  size_t close_websockets(uint16_t code, int timeout_ms);

  /// Stops the io thread; every connection is dropped.
  void stop();

  server_stats& stats() noexcept;

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace sessionhost::transport
