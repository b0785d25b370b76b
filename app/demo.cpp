// The demo actor: ensure each demo session exists (by role), then one message
// per tick, round robin. Failures are logged and retried on the next tick.
#include "app/demo.hpp"

#include <set>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/spdlog.h>

#include "host/embedded_host.hpp"
#include "host/error.hpp"

namespace sessionhost::app {

namespace {

using demo_tick_atom = caf::atom_constant<caf::atom("demo_tick")>;

constexpr std::chrono::seconds request_timeout{10};

struct demo_state {
  session_host_actor host;
  std::vector<std::string> roles;
  std::set<std::string> creating; // roles whose create is in flight
  std::chrono::milliseconds period{700};
  size_t next = 0;
  uint64_t ticks = 0;
  static inline const char* name = "demo_sessions";
};

using demo_self = caf::stateful_actor<demo_state>*;

/// Runs `f(session)` on the live session holding `role`, creating it first
/// when there is none.
template <class F>
void with_demo_session(demo_self self, const std::string& role, F f) {
  if (self->state.creating.count(role) > 0)
    return; // a slow create: skip this tick rather than create twice
  auto host = self->state.host;
  self->request(host, request_timeout, get_by_role_atom::value, role)
    .then([f](session_actor& s) mutable { f(s); },
          [self, host, role, f](caf::error& err) mutable {
            if (code_of(err) != errc::not_found) {
              spdlog::warn("demo: {}: {}", role, message_of(err));
              return;
            }
            if (!self->state.creating.insert(role).second)
              return; // another lookup got here first
            metadata_map md{{"demo", "true"}};
            self
              ->request(host, request_timeout, create_atom::value,
                        std::string{"echo"}, role, md)
              .then(
                [self, role, f](session_info& info) mutable {
                  self->state.creating.erase(role);
                  spdlog::info("demo: created {} ({})", role, info.id);
                  self
                    ->request(self->state.host, request_timeout,
                              get_session_atom::value, info.id)
                    .then([f](session_actor& s) mutable { f(s); },
                          [](caf::error&) {});
                },
                [self, role](caf::error& e) {
                  self->state.creating.erase(role);
                  // e.g. a conflict with a session created meanwhile.
                  spdlog::warn("demo: cannot create {}: {}", role,
                               message_of(e));
                });
          });
}

caf::behavior demo_actor(demo_self self, session_host_actor host,
                         size_t count, std::chrono::milliseconds period) {
  self->state.host = std::move(host);
  self->state.period = period;
  for (size_t i = 1; i <= count; ++i)
    self->state.roles.push_back("demo-" + std::to_string(i));
  // Create them all at once so the dashboard lists them from the start.
  for (auto& role : self->state.roles)
    with_demo_session(self, role, [](session_actor&) {});
  self->delayed_send(self, period, demo_tick_atom::value);
  return {
    [self](demo_tick_atom) {
      auto& st = self->state;
      auto role = st.roles[st.next++ % st.roles.size()];
      auto n = ++st.ticks;
      with_demo_session(self, role, [self, role, n](session_actor& s) {
        // A JSON string: the echo type streams it back in a few deltas.
        auto text = "\"" + role + " says hello (" + std::to_string(n) + ")\"";
        self->request(s, request_timeout, message_atom::value, text)
          .then([](uint64_t) {},
                [role](caf::error& err) {
                  spdlog::debug("demo: message to {}: {}", role,
                                message_of(err));
                });
      });
      self->delayed_send(self, st.period, demo_tick_atom::value);
    },
  };
}

} // namespace

demo_sessions::demo_sessions(caf::actor_system& sys, embedded_host& host,
                             size_t count, std::chrono::milliseconds period)
  : sys_(sys) {
  actor_ = sys.spawn(demo_actor, host.host(), count, period);
}

demo_sessions::~demo_sessions() { stop(); }

void demo_sessions::stop() {
  if (!actor_)
    return;
  caf::scoped_actor self{sys_};
  self->send_exit(actor_, caf::exit_reason::user_shutdown);
  self->wait_for(actor_);
  actor_ = nullptr;
}

} // namespace sessionhost::app
