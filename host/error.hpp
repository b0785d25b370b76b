#pragma once
// The error codes sessionhost reports, as a CAF error category ("shost"), so
// actors return them as `caf::error` and every edge (REST, WebSocket, C++)
// maps them the same way. The message travels in the error's context.

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace caf { class actor_system_config; }

namespace sessionhost {

/// One code per kind of refusal; REST maps each to one status.
enum class errc : uint8_t {
  bad_request = 1,     ///< 400 malformed input
  unauthorized,        ///< 401
  forbidden,           ///< 403
  not_found,           ///< 404 unknown (or malformed) session id
  conflict,            ///< 409 duplicate role, second peer, closed session
  too_large,           ///< 413
  invalid_transition,  ///< 409 a lifecycle pair the table does not allow
  overloaded,          ///< 503 not-yet-durable backlog full
  internal,            ///< 500
  stale_epoch,         ///< 409 a write from an activation that lost ownership
  unavailable,         ///< 503 shutting down / store down
};

/// The CAF error category of `errc`.
constexpr caf::atom_value error_category = caf::atom("shost");

/// "bad_request", "not_found", … (the REST error codes).
const char* to_string(errc x) noexcept;

/// HTTP status for a code (400, 404, …).
int http_status(errc x) noexcept;

/// An error of our category with a human-readable message.
caf::error make_error(errc code, std::string message);

/// Returns the `errc` of `err`, or `errc::internal` for foreign errors.
errc code_of(const caf::error& err) noexcept;

/// The message we attached, or CAF's rendering for foreign errors.
std::string message_of(const caf::error& err);

/// Lets `actor_system::render` print our errors.
void register_error_category(caf::actor_system_config& cfg);

} // namespace sessionhost
