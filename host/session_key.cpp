#include "host/session_key.hpp"

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
  // By hand: snprintf cost about a tenth of a create's instructions.
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(36, '-');
  size_t pos = 35;
  auto put = [&](uint64_t word, int nibbles) {
    for (int i = 0; i < nibbles; ++i, word >>= 4) {
      if (pos == 8 || pos == 13 || pos == 18 || pos == 23)
        --pos; // a dash, already there
      out[pos--] = digits[word & 0xf];
    }
  };
  put(lo, 16);
  put(hi, 16);
  return out;
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
