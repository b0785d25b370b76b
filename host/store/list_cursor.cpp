#include "host/store/list_cursor.hpp"

#include <charconv>

#include "host/store/session_store.hpp"

namespace sessionhost {

namespace {

// Version tag: lets a later format be told apart from this one.
constexpr const char* prefix = "c1.";
constexpr const char* hex_digits = "0123456789abcdef";

[[noreturn]] void malformed() {
  throw store_error(store_error::code::invalid_argument, "malformed cursor");
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

} // namespace

// Hex keeps the token URL-safe whatever bytes the id holds.
std::string encode_list_cursor(const list_position& pos) {
  auto plain = std::to_string(pos.created_at) + ":" + pos.id;
  std::string out = prefix;
  out.reserve(out.size() + plain.size() * 2);
  for (unsigned char c : plain) {
    out += hex_digits[c >> 4];
    out += hex_digits[c & 0x0F];
  }
  return out;
}

list_position decode_list_cursor(const std::string& cursor) {
  const std::string p = prefix;
  if (cursor.compare(0, p.size(), p) != 0)
    malformed();
  auto hex = cursor.substr(p.size());
  if (hex.empty() || hex.size() % 2 != 0)
    malformed();
  std::string plain;
  plain.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = hex_value(hex[i]);
    int lo = hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0)
      malformed();
    plain += static_cast<char>(hi * 16 + lo);
  }
  auto colon = plain.find(':');
  if (colon == std::string::npos || colon == 0)
    malformed();
  list_position pos;
  auto first = plain.data();
  auto last = plain.data() + colon;
  auto [ptr, ec] = std::from_chars(first, last, pos.created_at);
  if (ec != std::errc{} || ptr != last)
    malformed();
  pos.id = plain.substr(colon + 1);
  return pos;
}

} // namespace sessionhost
