// Server-to-client WebSocket frames (RFC 6455 section 5.2), built once and
// shared: no masking, no extensions, one frame per message.
#include "transport/backend.hpp"

namespace sessionhost::transport {

wire_frame make_wire_frame(std::string_view payload, bool binary) {
  auto out = std::make_shared<std::string>();
  auto n = payload.size();
  out->reserve(n + 10);
  out->push_back(static_cast<char>(binary ? 0x82 : 0x81)); // FIN + opcode
  if (n < 126) {
    out->push_back(static_cast<char>(n));
  } else if (n <= 0xFFFF) {
    out->push_back(static_cast<char>(126));
    out->push_back(static_cast<char>(n >> 8));
    out->push_back(static_cast<char>(n & 0xFF));
  } else {
    out->push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8)
      out->push_back(static_cast<char>((static_cast<uint64_t>(n) >> shift) & 0xFF));
  }
  out->append(payload.data(), n);
  return out;
}

} // namespace sessionhost::transport
