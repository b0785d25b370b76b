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

namespace {

// The protobuf wire format, written by hand for SessionSnapshot: building
// the generated message (a copy of every string, a map, then serializing
// and freeing it all) was ~2,700 instructions per create on the store's
// writer thread; this is a few hundred. The bytes are what protobuf's
// deterministic serialization gives (fields in number order, proto3
// defaults left out, map entries sorted by key with key and value always
// written); decoding stays with protobuf.
namespace wire {

enum : uint32_t { varint_type = 0, length_type = 2 };

size_t varint_size(uint64_t v) noexcept {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Writers into a buffer sized beforehand; each returns the end of what it
// wrote.
char* put_varint(char* p, uint64_t v) noexcept {
  while (v >= 0x80) {
    *p++ = static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

char* put_tag(char* p, uint32_t field, uint32_t type) noexcept {
  return put_varint(p, (field << 3) | type);
}

// A varint field; proto3 leaves out zero. int64 fields take the two's
// complement (a negative time is ten bytes, as protobuf writes it).
char* put_number(char* p, uint32_t field, uint64_t v) noexcept {
  if (v == 0)
    return p;
  return put_varint(put_tag(p, field, varint_type), v);
}

char* put_bytes(char* p, uint32_t field, std::string_view s) noexcept {
  p = put_varint(put_tag(p, field, length_type), s.size());
  if (!s.empty())
    std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

// A string field; proto3 leaves out the empty string.
char* put_string(char* p, uint32_t field, std::string_view s) noexcept {
  return s.empty() ? p : put_bytes(p, field, s);
}

size_t bytes_size(uint32_t field, std::string_view s) noexcept {
  return varint_size(field << 3) + varint_size(s.size()) + s.size();
}

} // namespace wire

} // namespace

std::string encode_snapshot(const session_info& x) {
  check_utf8(x.id, "session id");
  check_utf8(x.type, "session type");
  check_utf8(x.role, "session role");
  check_utf8(x.peer, "session peer");
  size_t md_size = 0;
  for (auto& [k, v] : x.metadata) {
    check_utf8(k, "metadata key");
    check_utf8(v, "metadata value");
    auto entry = wire::bytes_size(1, k) + wire::bytes_size(2, v);
    md_size += 1 + wire::varint_size(entry) + entry;
  }
  // At most: each string with a one-byte tag and a 10-byte length, each
  // number with a one-byte tag and a 10-byte varint.
  std::string out;
  out.resize(x.id.size() + x.type.size() + x.role.size() + x.peer.size()
             + md_size + 14 * 11);
  char* p = out.data();
  p = wire::put_string(p, 1, x.id);
  p = wire::put_string(p, 2, x.type);
  p = wire::put_string(p, 3, x.role);
  for (auto& [k, v] : x.metadata) {
    p = wire::put_tag(p, 4, wire::length_type);
    p = wire::put_varint(p, wire::bytes_size(1, k) + wire::bytes_size(2, v));
    p = wire::put_bytes(p, 1, k);
    p = wire::put_bytes(p, 2, v);
  }
  p = wire::put_number(p, 5, static_cast<uint64_t>(to_proto(x.state)));
  p = wire::put_number(p, 6, static_cast<uint64_t>(x.created_at));
  p = wire::put_number(p, 7, static_cast<uint64_t>(x.updated_at));
  p = wire::put_number(p, 8, static_cast<uint64_t>(x.last_heartbeat));
  p = wire::put_number(p, 9, x.message_count);
  p = wire::put_number(p, 10, x.reconnects);
  p = wire::put_string(p, 11, x.peer);
  p = wire::put_number(p, 12, x.peer_connected ? 1 : 0);
  p = wire::put_number(p, 13, x.last_seq);
  p = wire::put_number(p, 14, x.epoch);
  out.resize(static_cast<size_t>(p - out.data()));
  return out;
}

session_info decode_snapshot(std::string_view bytes) {
  v1::SessionSnapshot msg;
  if (!parse(msg, bytes))
    throw store_error(code::corrupt, "stored snapshot does not decode");
  session_info x;
  x.id = msg.id();
  x.type = msg.type();
  x.role = msg.role();
  for (auto& [k, v] : msg.metadata())
    x.metadata.emplace(k, v);
  x.state = from_proto(msg.state());
  x.created_at = msg.created_at();
  x.updated_at = msg.updated_at();
  x.last_heartbeat = msg.last_heartbeat();
  x.message_count = msg.message_count();
  x.reconnects = msg.reconnects();
  x.peer = msg.peer();
  x.peer_connected = msg.peer_connected();
  x.last_seq = msg.last_seq();
  x.epoch = msg.epoch();
  x.loaded = false;
  return x;
}

} // namespace sessionhost
