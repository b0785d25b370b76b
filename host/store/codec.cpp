#include "host/store/codec.hpp"

#include <cstring>
#include <limits>

#include "host/store/session_store.hpp"
#include "sessionhost/v1/session.pb.h"

namespace sessionhost {

namespace {

using code = store_error::code;

// proto3 parsers reject strings that are not UTF-8, so anything we let through
// here would be written once and then be unreadable: refuse it up front.
bool valid_utf8(std::string_view s) noexcept {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // Payloads are mostly ASCII: skip it eight bytes at a time.
    while (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, s.data() + i, 8);
      if ((word & 0x8080808080808080ULL) != 0)
        break;
      i += 8;
    }
    if (i >= n)
      break;
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n)
      return false;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80)
        return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800)
        || (len == 4 && cp < 0x10000) || cp > 0x10FFFF
        || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

void check_utf8(std::string_view s, const char* field) {
  if (!valid_utf8(s))
    throw store_error(code::invalid_argument,
                      std::string{field} + " is not valid UTF-8");
}

v1::SessionState to_proto(session_state x) {
  switch (x) {
    case session_state::created: return v1::SESSION_STATE_CREATED;
    case session_state::spawning: return v1::SESSION_STATE_SPAWNING;
    case session_state::active: return v1::SESSION_STATE_ACTIVE;
    case session_state::terminating: return v1::SESSION_STATE_TERMINATING;
    case session_state::cleaned: return v1::SESSION_STATE_CLEANED;
  }
  return v1::SESSION_STATE_UNSPECIFIED;
}

session_state from_proto(int x) {
  switch (x) {
    case v1::SESSION_STATE_CREATED: return session_state::created;
    case v1::SESSION_STATE_SPAWNING: return session_state::spawning;
    case v1::SESSION_STATE_ACTIVE: return session_state::active;
    case v1::SESSION_STATE_TERMINATING: return session_state::terminating;
    case v1::SESSION_STATE_CLEANED: return session_state::cleaned;
    default:
      throw store_error(code::corrupt, "snapshot has unknown state "
                                         + std::to_string(x));
  }
}

bool parse(google::protobuf::MessageLite& msg, std::string_view bytes) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    return false;
  return msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

} // namespace

void to_proto(const event& x, v1::Event& out) {
  out.set_session_id(x.session_id);
  out.set_seq(x.seq);
  out.set_type(x.type);
  out.set_data(x.data);
  out.set_ts(x.ts);
  out.set_epoch(x.epoch);
  if (!x.idempotency_key.empty())
    out.set_idempotency_key(x.idempotency_key);
}

bool is_valid_utf8(std::string_view s) noexcept {
  return valid_utf8(s);
}

void encode_event(const event& x, std::string& out) {
  check_utf8(x.session_id, "event session_id");
  check_utf8(x.type, "event type");
  check_utf8(x.data, "event data");
  check_utf8(x.idempotency_key, "event idempotency key");
  v1::Event msg;
  to_proto(x, msg);
  out.clear();
  if (!msg.SerializeToString(&out))
    throw store_error(code::invalid_argument, "event does not serialize");
}

std::string encode_event(const event& x) {
  std::string out;
  encode_event(x, out);
  return out;
}

event decode_event(std::string_view bytes) {
  v1::Event msg;
  if (!parse(msg, bytes))
    throw store_error(code::corrupt, "stored event does not decode");
  event x;
  x.session_id = msg.session_id();
  x.seq = msg.seq();
  x.type = msg.type();
  x.data = msg.data();
  x.ts = msg.ts();
  x.epoch = msg.epoch();
  x.idempotency_key = msg.idempotency_key();
  return x;
}

std::string encode_snapshot(const session_info& x) {
  check_utf8(x.id, "session id");
  check_utf8(x.type, "session type");
  check_utf8(x.role, "session role");
  check_utf8(x.peer, "session peer");
  // One message per thread, cleared and filled again for each snapshot: its
  // strings keep their capacity, so a burst of creates on the store's writer
  // encodes without allocating inside the message (a fresh message per
  // snapshot was ~2,500 instructions, most of them its allocations).
  thread_local v1::SessionSnapshot msg;
  msg.Clear();
  msg.set_id(x.id);
  msg.set_type(x.type);
  msg.set_role(x.role);
  auto& md = *msg.mutable_metadata();
  for (auto& [k, v] : x.metadata) {
    check_utf8(k, "metadata key");
    check_utf8(v, "metadata value");
    md[k] = v;
  }
  msg.set_state(to_proto(x.state));
  msg.set_created_at(x.created_at);
  msg.set_updated_at(x.updated_at);
  msg.set_last_heartbeat(x.last_heartbeat);
  msg.set_message_count(x.message_count);
  msg.set_reconnects(x.reconnects);
  msg.set_peer(x.peer);
  msg.set_peer_connected(x.peer_connected);
  msg.set_last_seq(x.last_seq);
  msg.set_epoch(x.epoch);
  // Sized once, written straight into the string (SerializeToString would
  // size it, then write through a stream).
  std::string out(msg.ByteSizeLong(), '\0');
  msg.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out.data()));
  return out;
}

session_info decode_snapshot(std::string_view bytes) {
  v1::SessionSnapshot msg;
  if (!parse(msg, bytes))
    throw store_error(code::corrupt, "stored snapshot does not decode");
  // The message is thrown away: its strings move out rather than copy. (An
  // empty field is protobuf's shared default: mutable_* would allocate.)
  auto take = [](const std::string& field, std::string* (v1::SessionSnapshot::*
                                                         mut)(),
                 v1::SessionSnapshot& m) {
    return field.empty() ? std::string{} : std::move(*(m.*mut)());
  };
  session_info x;
  x.id = take(msg.id(), &v1::SessionSnapshot::mutable_id, msg);
  x.type = take(msg.type(), &v1::SessionSnapshot::mutable_type, msg);
  x.role = take(msg.role(), &v1::SessionSnapshot::mutable_role, msg);
  for (auto& [k, v] : *msg.mutable_metadata())
    x.metadata.emplace(k, std::move(v));
  x.state = from_proto(msg.state());
  x.created_at = msg.created_at();
  x.updated_at = msg.updated_at();
  x.last_heartbeat = msg.last_heartbeat();
  x.message_count = msg.message_count();
  x.reconnects = msg.reconnects();
  x.peer = take(msg.peer(), &v1::SessionSnapshot::mutable_peer, msg);
  x.peer_connected = msg.peer_connected();
  x.last_seq = msg.last_seq();
  x.epoch = msg.epoch();
  x.loaded = false;
  return x;
}

} // namespace sessionhost
