#pragma once
// JSON shapes of the public API (docs/PROTOCOL.md): sessions, events and
// error bodies, plus the small query-string helpers REST needs.
// Thread safety: pure functions.

#include <map>
#include <string>

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

/// {"error":{"code":…,"message":…}}.
std::string error_body(errc code, const std::string& message);

/// Splits "/a/b?x=1&y=%20" into path "/a/b" and decoded query parameters.
/// Returns false for a malformed percent escape.
bool split_target(const std::string& target, std::string& path,
                  std::map<std::string, std::string>& query);

/// Parses a non-negative decimal integer (no sign, no spaces, fits uint64).
bool parse_u64(const std::string& text, uint64_t& out);

} // namespace sessionhost::transport
