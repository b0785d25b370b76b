#pragma once
// The seam between the Beast server (server.hpp, Asio threads, no CAF) and
// the actor side (api.hpp, CAF, no Beast): plain request/response structs and
// three small interfaces. Keeping Beast and CAF in separate translation units
// keeps each of them buildable in reasonable time.
//
// Thread safety: `backend` and `ws_handler` methods are called from the io
// thread and must not block; `ws_sink` methods may be called from any thread.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sessionhost::transport {

/// An HTTP request, already read in full.
struct http_request {
  std::string method;  // "GET", "POST", …
  std::string target;  // path plus query, as sent: "/v1/sessions?limit=2"
  std::string body;
  std::string authorization; // the Authorization header, if any
};

/// The answer to an `http_request`.
struct http_response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

/// Called exactly once with the response; may be called from any thread.
using respond_fn = std::function<void(http_response)>;

/// The WebSocket subprotocol of binary protobuf frames (proto/sessionhost/
/// v1/session.proto: ClientOp in, ServerOp out).
constexpr const char* proto_subprotocol = "sessionhost.v1.proto";

/// A WebSocket upgrade request, as the backend sees it.
struct ws_upgrade {
  std::string target;        // path plus query: "/v1/ws?token=…"
  std::string authorization; // the Authorization header, if any
  std::string origin;        // the Origin header (browsers), if any
  std::string host;          // the Host header
  bool proto = false;        // the client offered `proto_subprotocol`
};

/// One WebSocket frame as it goes on the wire, header included. Server
/// frames are not masked, so an event's frame is the same for every client:
/// built once, shared (immutable) by every connection that sends it.
using wire_frame = std::shared_ptr<const std::string>;

/// The wire frame of one unfragmented message: text, or binary.
wire_frame make_wire_frame(std::string_view payload, bool binary);

/// A frame to send, with the time its latency histogram counts from
/// (micros since the epoch): positive, the publish time of the live event it
/// carries (publish-to-send); negative, minus the read time of the publish
/// it acknowledges (publish-to-ack); 0, none. One field, not two: idle
/// connections keep their queue's buffer.
struct outgoing_frame {
  wire_frame wire;
  int64_t event_ts = 0;

  /// The ack of a publish read off the socket at `read_us`.
  static outgoing_frame ack(wire_frame w, int64_t read_us) {
    return {std::move(w), read_us > 0 ? -read_us : 0};
  }
};

/// The server side of one WebSocket connection, as seen by the actors.
class ws_sink {
public:
  virtual ~ws_sink() = default;
  /// Queues ready-made frames in order (binary ones only on a
  /// `proto_subprotocol` connection); they go out in as few socket writes as
  /// possible. Takes them out of `frames`, which is left empty with its
  /// capacity (the caller's next batch needs no allocation). Returns false,
  /// like `send_text`, when closing or over the bound.
  virtual bool send_frames(std::vector<outgoing_frame>& frames) = 0;
  /// Queues one frame: text, or binary on a `proto_subprotocol` connection.
  /// `event_ts` (micros since the epoch, 0: none) is the publish time of the
  /// live event the frame carries, for the publish-to-send histogram.
  /// Returns false when the connection is closing or when the frame would
  /// push the outgoing queue over its byte bound; in the latter case the
  /// connection is closed with 1013 (try again later).
  virtual bool send_text(std::string text, int64_t event_ts = 0) = 0;
  /// Bytes queued and not yet written to the socket.
  virtual size_t queued_bytes() const noexcept = 0;
  /// The outgoing queue bound in bytes.
  virtual size_t queue_limit() const noexcept = 0;
  /// Sends the queued frames, then a close frame with `code`.
  virtual void close(uint16_t code, std::string reason) = 0;
};

/// The actor side of one WebSocket connection.
class ws_handler {
public:
  virtual ~ws_handler() = default;
  virtual void on_text(std::string text) = 0;
  /// A binary frame (protobuf on a `proto_subprotocol` connection).
  virtual void on_binary(std::string data) = 0;
  /// The connection is gone (closed by either side or failed).
  virtual void on_closed() = 0;
};

/// What the server calls for every request and every WebSocket.
class backend {
public:
  virtual ~backend() = default;
  virtual void handle_http(http_request req, respond_fn respond) = 0;
  /// Whether a WebSocket upgrade to /v1/ws may proceed (token, Origin):
  /// nothing to accept it, else the refusal to answer with.
  virtual std::optional<http_response> check_upgrade(const ws_upgrade& up) = 0;
  /// A WebSocket that passed `check_upgrade` was accepted; returns its
  /// handler.
  virtual std::shared_ptr<ws_handler> open_ws(std::shared_ptr<ws_sink> sink,
                                              const ws_upgrade& up) = 0;
};

} // namespace sessionhost::transport
