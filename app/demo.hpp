#pragma once
// `sessionhost serve --demo`: a few `echo` sessions (roles demo-1 … demo-N)
// that receive a message every couple of seconds, so the dashboard has
// something live to show. Messages go through the normal session path
// (durable, broadcast to subscribers). A demo session is created only when
// no live session holds its role, so restarts reuse the same sessions (and
// one terminated from the dashboard comes back on the next tick).
//
// Thread safety: construct and stop from the main thread, outside actors.

#include <chrono>
#include <cstddef>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

namespace sessionhost {
class embedded_host;
}

namespace sessionhost::app {

class demo_sessions {
public:
  /// Spawns the actor that creates the sessions and, every `period`, sends
  /// the next one (round robin) a message.
  demo_sessions(caf::actor_system& sys, embedded_host& host, size_t count = 3,
                std::chrono::milliseconds period = std::chrono::milliseconds{700});
  /// Calls stop().
  ~demo_sessions();

  demo_sessions(const demo_sessions&) = delete;
  demo_sessions& operator=(const demo_sessions&) = delete;

  /// Stops the actor and waits until it is gone (call before the host
  /// stops, so no message reaches a session being unloaded). Idempotent.
  void stop();

private:
  caf::actor_system& sys_;
  caf::actor actor_;
};

} // namespace sessionhost::app
