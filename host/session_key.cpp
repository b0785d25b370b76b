#include "host/session_key.hpp"

#include <cstdio>

namespace sessionhost {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1; // upper case too: it would not print back the same
}

// Parses xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (lower-case hex).
bool parse_uuid(const std::string& s, uint64_t& hi, uint64_t& lo) {
  if (s.size() != 36)
    return false;
  uint64_t parts[2] = {0, 0};
  int nibble = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-')
        return false;
      continue;
    }
    auto v = hex_value(s[i]);
    if (v < 0)
      return false;
    auto& part = parts[nibble / 16];
    part = (part << 4) | static_cast<uint64_t>(v);
    ++nibble;
  }
  hi = parts[0];
  lo = parts[1];
  return true;
}

} // namespace

session_key::session_key(const std::string& id) {
  if (!parse_uuid(id, hi_, lo_))
    other_ = std::make_unique<std::string>(id);
}

std::string format_uuid(uint64_t hi, uint64_t lo) {
  char buf[37];
  std::snprintf(buf, sizeof(buf), "%08x-%04x-%04x-%04x-%012llx",
                static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff),
                static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buf;
}

std::string session_key::str() const {
  return other_ ? *other_ : format_uuid(hi_, lo_);
}

bool session_key::operator==(const session_key& x) const noexcept {
  if (other_ || x.other_)
    return other_ && x.other_ && *other_ == *x.other_;
  return hi_ == x.hi_ && lo_ == x.lo_;
}

size_t session_key::hash() const noexcept {
  if (other_)
    return std::hash<std::string>{}(*other_);
  // UUIDv7: the low word is random, the high one mostly a timestamp.
  return static_cast<size_t>(lo_ ^ (hi_ * 0x9e3779b97f4a7c15ULL));
}

} // namespace sessionhost
