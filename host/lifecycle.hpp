#pragma once
// The session lifecycle of seed 001 as a pure function.
//
//   CREATED → SPAWNING → ACTIVE → TERMINATING → CLEANED
//
// `next_state` has no side effects and depends on nothing but its arguments;
// every pair the table does not list is a TransitionError that changes
// nothing. Thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sessionhost {

/// Where a session is in its life.
enum class session_state : uint8_t { created, spawning, active, terminating, cleaned };

/// What happens to a session.
enum class lifecycle_event : uint8_t { spawn, activate, terminate, clean };

/// A pair the transition table does not allow: (from, event).
struct transition_error {
  session_state from;     ///< the state it was in
  lifecycle_event event;  ///< what was asked
  /// "invalid transition: ACTIVE + SPAWN"
  std::string message() const;
};

/// The outcome of `next_state`: the new state, or the TransitionError.
struct transition {
  session_state from;     ///< the state it was in
  lifecycle_event event;  ///< what happened
  std::optional<session_state> to; ///< empty: TransitionError

  /// Whether the pair is in the table.
  bool ok() const noexcept { return to.has_value(); }
  /// The TransitionError (meaningful when !ok()).
  transition_error error() const noexcept { return {from, event}; }
};

/// The lifecycle table of DESIGN.md, and nothing else.
transition next_state(session_state state, lifecycle_event event) noexcept;

/// "CREATED", "SPAWNING", … (the names the API and the store use).
const char* to_string(session_state x) noexcept;
/// "SPAWN", "ACTIVATE", "TERMINATE", "CLEAN".
const char* to_string(lifecycle_event x) noexcept;

/// Parses "ACTIVE" (case-sensitive, as printed by `to_string`).
std::optional<session_state> parse_session_state(std::string_view name) noexcept;

} // namespace sessionhost
