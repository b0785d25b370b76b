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

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

size_t skip_ws(std::string_view s, size_t i) {
  while (i < s.size() && is_ws(s[i]))
    ++i;
  return i;
}

// From the opening quote to just past the closing one.
size_t skip_string(std::string_view s, size_t i) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\')
      ++i;
    else if (s[i] == '"')
      return i + 1;
  }
  return s.size();
}

// Valid JSON assumed: brackets balance outside strings.
size_t skip_value(std::string_view s, size_t i) {
  if (i >= s.size())
    return i;
  if (s[i] == '"')
    return skip_string(s, i);
  if (s[i] == '{' || s[i] == '[') {
    size_t depth = 0;
    while (i < s.size()) {
      char c = s[i];
      if (c == '"') {
        i = skip_string(s, i);
        continue;
      }
      if (c == '{' || c == '[')
        ++depth;
      else if ((c == '}' || c == ']') && --depth == 0)
        return i + 1;
      ++i;
    }
    return i;
  }
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']'
         && !is_ws(s[i]))
    ++i;
  return i;
}

} // namespace

bool json_object_members(std::string_view text, std::vector<json_member>& out) {
  out.clear();
  auto i = skip_ws(text, 0);
  if (i >= text.size() || text[i] != '{')
    return false;
  i = skip_ws(text, i + 1);
  while (i < text.size() && text[i] == '"') {
    auto k = i;
    i = skip_string(text, i);
    auto key = text.substr(k + 1, i - k - 2);
    i = skip_ws(text, skip_ws(text, i) + 1); // past the ':'
    auto v = i;
    i = skip_value(text, i);
    out.push_back({key, text.substr(v, i - v)});
    i = skip_ws(text, i);
    if (i >= text.size() || text[i] != ',')
      break;
    i = skip_ws(text, i + 1);
  }
  return true;
}

bool json_plain_string(std::string_view token, std::string_view& out) {
  if (token.size() < 2 || token.front() != '"' || token.back() != '"')
    return false;
  auto inner = token.substr(1, token.size() - 2);
  if (inner.find('\\') != std::string_view::npos)
    return false;
  out = inner;
  return true;
}

std::string json_compact(std::string_view token) {
  std::string_view plain;
  if (json_plain_string(token, plain) || token == "null" || token == "true"
      || token == "false")
    return std::string{token};
  // Digits only, no leading zero, within uint64: dump writes them back.
  bool digits = !token.empty() && token.size() <= 19
                && (token[0] != '0' || token.size() == 1);
  for (char c : token)
    digits = digits && c >= '0' && c <= '9';
  if (digits)
    return std::string{token};
  return json::parse(token).dump(-1, ' ', false,
                                 json::error_handler_t::replace);
}

std::string json_quote(std::string_view s) {
  bool plain = true;
  for (char c : s)
    plain = plain && c != '"' && c != '\\'
            && static_cast<unsigned char>(c) >= 0x20;
  if (!plain)
    return json(std::string{s}).dump(-1, ' ', false,
                                     json::error_handler_t::replace);
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  out += s;
  out += '"';
  return out;
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
