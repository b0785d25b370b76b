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
constexpr const char* block_start = "block:start";
constexpr const char* block_delta = "block:delta";
constexpr const char* block_complete = "block:complete";
constexpr const char* status_changed = "status:changed";
constexpr const char* log = "log";
constexpr const char* error = "error";
constexpr const char* session_start = "session:start";
constexpr const char* session_end = "session:end";
constexpr const char* session_open = "session_open";
constexpr const char* session_close = "session_close";
constexpr const char* heartbeat_timeout = "heartbeat_timeout";
/// The input a session received (`record_message`); replaying the stream
/// gives back the message count.
constexpr const char* message = "message";
} // namespace event_type

struct event {
  std::string session_id;
  uint64_t seq = 0;
  std::string type;
  std::string data = "{}"; // the payload as JSON text
  micros ts = 0;           // microseconds since the Unix epoch
  uint64_t epoch = 0;      // activation epoch of the writer (fencing)
};

inline bool operator==(const event& x, const event& y) {
  return x.session_id == y.session_id && x.seq == y.seq && x.type == y.type
         && x.data == y.data && x.ts == y.ts && x.epoch == y.epoch;
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event& x) {
  return f(caf::meta::type_name("sessionhost.event"), x.session_id, x.seq,
           x.type, x.data, x.ts, x.epoch);
}

} // namespace sessionhost
