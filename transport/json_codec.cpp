// JSON shapes of the public API; see json_codec.hpp.
#include "transport/json_codec.hpp"

#include <cctype>

#include "host/clock.hpp"

namespace sessionhost::transport {

using nlohmann::json;

json to_json(const session_info& x) {
  json md = json::object();
  for (auto& [k, v] : x.metadata)
    md[k] = v;
  return json{{"id", x.id},
              {"type", x.type},
              {"role", x.role},
              {"state", to_string(x.state)},
              {"metadata", std::move(md)},
              {"message_count", x.message_count},
              {"reconnects", x.reconnects},
              {"peer", x.peer.empty() ? json(nullptr) : json(x.peer)},
              {"peer_connected", x.peer_connected},
              {"last_seq", x.last_seq},
              {"loaded", x.loaded},
              {"created_at", format_rfc3339(x.created_at)},
              {"updated_at", format_rfc3339(x.updated_at)}};
}

json parse_or_string(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded())
    return json(text);
  return j;
}

json to_json(const event& x) {
  return json{{"session", x.session_id},
              {"seq", x.seq},
              {"type", x.type},
              {"data", parse_or_string(x.data)},
              {"ts", x.ts}};
}

std::string error_body(errc code, const std::string& message) {
  return json{{"error", {{"code", to_string(code)}, {"message", message}}}}
    .dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

int hex(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

bool decode(const std::string& in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out += ' ';
    } else if (in[i] == '%') {
      if (i + 2 >= in.size())
        return false;
      int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0)
        return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += in[i];
    }
  }
  return true;
}

} // namespace

bool split_target(const std::string& target, std::string& path,
                  std::map<std::string, std::string>& query) {
  auto q = target.find('?');
  if (!decode(target.substr(0, q), path))
    return false;
  if (q == std::string::npos)
    return true;
  auto rest = target.substr(q + 1);
  size_t pos = 0;
  while (pos <= rest.size()) {
    auto amp = rest.find('&', pos);
    auto part = rest.substr(pos, amp == std::string::npos ? std::string::npos
                                                          : amp - pos);
    if (!part.empty()) {
      auto eq = part.find('=');
      std::string k, v;
      if (!decode(part.substr(0, eq), k)
          || !decode(eq == std::string::npos ? "" : part.substr(eq + 1), v))
        return false;
      query[k] = v;
    }
    if (amp == std::string::npos)
      break;
    pos = amp + 1;
  }
  return true;
}

bool parse_u64(const std::string& text, uint64_t& out) {
  if (text.empty() || text.size() > 19)
    return false;
  uint64_t v = 0;
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c)))
      return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  out = v;
  return true;
}

} // namespace sessionhost::transport
