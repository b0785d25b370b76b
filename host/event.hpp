#pragma once
// One entry of a session's event stream: the envelope (session, seq, time,
// writer epoch) around a typed payload. Sequence numbers start at 1 per
// session and increase by one with no gaps.

#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>

#include "host/clock.hpp"

namespace sessionhost {

/// The event type names (seeds 000, 002, 004).
namespace event_type {
/// A block of output begins ({"block_id"}).
constexpr const char* block_start = "block:start";
/// A piece of a block ({"block_id","delta"}).
constexpr const char* block_delta = "block:delta";
/// A block is complete ({"block_id","text"}).
constexpr const char* block_complete = "block:complete";
/// The lifecycle state changed ({"state","previous","reason"}).
constexpr const char* status_changed = "status:changed";
/// A log line of the session.
constexpr const char* log = "log";
/// Something went wrong ({"message","code"}); the session goes on.
constexpr const char* error = "error";
/// The first message of a new session arrived (seed 002).
constexpr const char* session_start = "session:start";
/// Just before the session is terminated (seed 002).
constexpr const char* session_end = "session:end";
/// The peer attached ({"peer"}, "reconnects" on a reconnect).
constexpr const char* session_open = "session_open";
/// The peer went ({"reason": manual, connection_lost, heartbeat_timeout}).
constexpr const char* session_close = "session_close";
/// The peer missed its heartbeat.
constexpr const char* heartbeat_timeout = "heartbeat_timeout";
/// The input a session received (`record_message`); replaying the stream
/// gives back the message count.
constexpr const char* message = "message";
} // namespace event_type

/// One event of a session's stream.
struct event {
  std::string session_id;  ///< the session it belongs to
  uint64_t seq = 0;        ///< 1, 2, 3, … per session, no gaps
  std::string type;        ///< an event_type name or a session type's own
  std::string data = "{}"; ///< the payload as JSON text
  micros ts = 0;           ///< microseconds since the Unix epoch
  uint64_t epoch = 0;      ///< activation epoch of the writer (fencing)
  /// The producer's idempotency key (publish), empty: none.
  std::string idempotency_key;
};

/// Field-wise equality.
inline bool operator==(const event& x, const event& y) {
  return x.session_id == y.session_id && x.seq == y.seq && x.type == y.type
         && x.data == y.data && x.ts == y.ts && x.epoch == y.epoch
         && x.idempotency_key == y.idempotency_key;
}

/// CAF serialization (messages between nodes).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event& x) {
  return f(caf::meta::type_name("sessionhost.event"), x.session_id, x.seq,
           x.type, x.data, x.ts, x.epoch, x.idempotency_key);
}

} // namespace sessionhost
