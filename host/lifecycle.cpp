#include "host/lifecycle.hpp"

namespace sessionhost {

transition next_state(session_state state, lifecycle_event event) noexcept {
  using s = session_state;
  using e = lifecycle_event;
  transition result{state, event, std::nullopt};
  switch (state) {
    case s::created:
      if (event == e::spawn)
        result.to = s::spawning;
      else if (event == e::terminate)
        result.to = s::terminating; // early cancel
      break;
    case s::spawning:
      if (event == e::activate)
        result.to = s::active;
      else if (event == e::terminate)
        result.to = s::terminating; // spawn failure
      break;
    case s::active:
      if (event == e::terminate)
        result.to = s::terminating;
      break;
    case s::terminating:
      if (event == e::terminate)
        result.to = s::terminating; // idempotent
      else if (event == e::clean)
        result.to = s::cleaned;
      break;
    case s::cleaned:
      break;
  }
  return result;
}

const char* to_string(session_state x) noexcept {
  switch (x) {
    case session_state::created: return "CREATED";
    case session_state::spawning: return "SPAWNING";
    case session_state::active: return "ACTIVE";
    case session_state::terminating: return "TERMINATING";
    case session_state::cleaned: return "CLEANED";
  }
  return "UNKNOWN";
}

const char* to_string(lifecycle_event x) noexcept {
  switch (x) {
    case lifecycle_event::spawn: return "SPAWN";
    case lifecycle_event::activate: return "ACTIVATE";
    case lifecycle_event::terminate: return "TERMINATE";
    case lifecycle_event::clean: return "CLEAN";
  }
  return "UNKNOWN";
}

std::optional<session_state> parse_session_state(std::string_view name) noexcept {
  for (auto s : {session_state::created, session_state::spawning,
                 session_state::active, session_state::terminating,
                 session_state::cleaned})
    if (name == to_string(s))
      return s;
  return std::nullopt;
}

std::string transition_error::message() const {
  return std::string{"invalid transition: "} + to_string(from) + " + "
         + to_string(event);
}

} // namespace sessionhost
