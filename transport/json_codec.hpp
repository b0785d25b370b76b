#pragma once
// JSON shapes of the public API (docs/PROTOCOL.md): sessions, events and
// error bodies, plus the small query-string helpers REST needs.
// Thread safety: pure functions.

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/fwd.hpp>
#include <nlohmann/json.hpp>

#include "host/error.hpp"
#include "host/event.hpp"
#include "host/session_info.hpp"

namespace sessionhost::transport {

/// id, type, role, state, metadata, message_count, reconnects, peer (string
/// or null), last_seq, loaded, created_at, updated_at (RFC 3339 UTC).
nlohmann::json to_json(const session_info& x);

/// {"session", "seq", "type", "data" (parsed JSON), "ts" (micros)}.
nlohmann::json to_json(const event& x);

/// A JSON text as a value; text that does not parse becomes a string.
nlohmann::json parse_or_string(const std::string& text);

/// One member of a JSON object as slices of its text: the key between its
/// quotes (escapes left as they are) and the value's text.
struct json_member {
  std::string_view key;
  std::string_view value;
};

/// The top-level members of `text`, in order, without building a DOM (the
/// publish path keeps `data` as the text it came in). `text` must be valid
/// JSON (`nlohmann::json::accept`). Returns false when it is not an object.
bool json_object_members(std::string_view text, std::vector<json_member>& out);

/// The content of a JSON string token (`"…"`) without escapes; false for any
/// other token and for a string with escapes.
bool json_plain_string(std::string_view token, std::string_view& out);

/// `token` (valid JSON) as `nlohmann::json::dump` writes it: as it is when
/// that is the same text (an escape-free string, a short unsigned integer,
/// true, false, null), else parsed and dumped.
std::string json_compact(std::string_view token);

/// `s` as a JSON string token.
std::string json_quote(std::string_view s);

/// {"error":{"code":…,"message":…}}.
std::string error_body(errc code, const std::string& message);

/// Splits "/a/b?x=1&y=%20" into path "/a/b" and decoded query parameters.
/// Returns false for a malformed percent escape.
bool split_target(const std::string& target, std::string& path,
                  std::map<std::string, std::string>& query);

/// Parses a non-negative decimal integer (no sign, no spaces, fits uint64).
bool parse_u64(const std::string& text, uint64_t& out);

} // namespace sessionhost::transport
