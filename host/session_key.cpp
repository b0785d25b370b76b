#include "host/session_key.hpp"

namespace sessionhost {

namespace {

// The value of each lower-case hex digit; -1 for every other byte (upper
// case too: it would not print back the same). A table, not branches: the
// host parses the id of every session it creates or loads.
struct hex_table {
  int8_t value[256];
  constexpr hex_table() : value() {
    for (int c = 0; c < 256; ++c)
      value[c] = c >= '0' && c <= '9'   ? static_cast<int8_t>(c - '0')
                 : c >= 'a' && c <= 'f' ? static_cast<int8_t>(c - 'a' + 10)
                                        : int8_t{-1};
  }
};
constexpr hex_table hex{};

// Parses `n` hex digits at `p` into `out` (shifted in); false on a non-digit.
bool parse_hex(const char* p, int n, uint64_t& out) {
  int bad = 0;
  for (int i = 0; i < n; ++i) {
    int v = hex.value[static_cast<unsigned char>(p[i])];
    bad |= v;
    out = (out << 4) | static_cast<uint64_t>(v & 0xf);
  }
  return bad >= 0;
}

// Parses xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (lower-case hex).
bool parse_uuid(const std::string& s, uint64_t& hi, uint64_t& lo) {
  if (s.size() != 36)
    return false;
  auto p = s.data();
  if (p[8] != '-' || p[13] != '-' || p[18] != '-' || p[23] != '-')
    return false;
  uint64_t h = 0, l = 0;
  if (!(parse_hex(p, 8, h) && parse_hex(p + 9, 4, h) && parse_hex(p + 14, 4, h)
        && parse_hex(p + 19, 4, l) && parse_hex(p + 24, 12, l)))
    return false;
  hi = h;
  lo = l;
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
