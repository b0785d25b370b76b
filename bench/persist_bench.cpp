// End-to-end cost of the output gate: publish → durable acknowledgement
// through an embedded_host on SQLite (a file in a temporary directory,
// synchronous=FULL), i.e. session actor → persistence listener (group
// commit) → fsync → durable → reply.
//
//   persist/sessions:<s>/window:<w>   s echo sessions, each with w publishes
//                                     in flight (a producer that pipelines);
//                                     window 1 is a producer that waits for
//                                     each acknowledgement before the next.
//
// "events/s" is the figure to read: acknowledged (durable) events per second
// of wall time. Each publish carries a ~200-byte JSON payload like
// store_bench's, so the two can be compared.

#include <benchmark/benchmark.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/event_based_actor.hpp>

#include "host/embedded_host.hpp"
#include "host/error.hpp"
#include "host/store/open_store.hpp"
#include "tests/support/temp_dir.hpp"

using namespace sessionhost;
using namespace std::chrono_literals;

namespace {

const std::string payload = "{\"text\":\"" + std::string(180, 'x') + "\"}";

/// Keeps `window` publishes in flight on every session until `total` are
/// acknowledged; replies with how many were refused.
struct driver_state {
  std::vector<session_actor> sessions;
  uint64_t total = 0, sent = 0, acked = 0, refused = 0;
  caf::response_promise done;
};

void publish_next(caf::stateful_actor<driver_state>* self, size_t i) {
  auto& st = self->state;
  if (st.sent == st.total)
    return;
  ++st.sent;
  auto on_reply = [self, i](bool ok) {
    auto& st = self->state;
    ++st.acked;
    st.refused += ok ? 0 : 1;
    if (st.acked == st.total)
      st.done.deliver(st.refused);
    else
      publish_next(self, i);
  };
  self->request(st.sessions[i], caf::infinite, publish_atom::value,
                std::string{"log"}, payload)
    .then([on_reply](uint64_t) { on_reply(true); },
          [on_reply](caf::error&) { on_reply(false); });
}

caf::behavior driver(caf::stateful_actor<driver_state>* self,
                     std::vector<session_actor> sessions) {
  self->state.sessions = std::move(sessions);
  return {
    [self](uint64_t total, uint64_t window) {
      auto& st = self->state;
      st.total = total;
      st.sent = st.acked = st.refused = 0;
      st.done = self->make_response_promise();
      for (uint64_t w = 0; w < window; ++w)
        for (size_t i = 0; i < st.sessions.size(); ++i)
          publish_next(self, i);
      return st.done;
    },
  };
}

void bm_persist(benchmark::State& state) {
  auto n_sessions = static_cast<size_t>(state.range(0));
  auto window = static_cast<uint64_t>(state.range(1));
  // Enough events per round that group commit reaches steady state, few
  // enough that the one-in-flight case ends in about a second.
  uint64_t per_round = window == 1 ? 200 * n_sessions : 20'000;
  testing::temp_dir dir{"sessionhost-persist-bench"};
  caf::actor_system_config cfg;
  cfg.set("logger.file-verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};
  {
    caf::scoped_actor self{sys};
    host_options opts;
    opts.store = open_store("sqlite:" + dir.path + "/bench.db", "");
    opts.config.idle_timeout = 0ms;
    embedded_host host{sys, opts};
    std::vector<session_actor> sessions;
    for (size_t i = 0; i < n_sessions; ++i) {
      self->request(host.host(), 10s, create_atom::value, std::string{"echo"},
                    std::string{}, metadata_map{})
        .receive([&](session_info& info) {
                   self->request(host.host(), 10s, get_session_atom::value, info.id)
                     .receive([&](session_actor& s) { sessions.push_back(s); },
                              [](caf::error&) {});
                 },
                 [](caf::error&) {});
    }
    if (sessions.size() != n_sessions) {
      state.SkipWithError("cannot create sessions");
      return;
    }
    auto drv = sys.spawn(driver, sessions);
    uint64_t events = 0, refused = 0;
    for (auto _ : state) {
      self->request(drv, caf::infinite, per_round, window)
        .receive([&](uint64_t r) { refused += r; },
                 [&](caf::error& e) { state.SkipWithError(message_of(e).c_str()); });
      events += per_round;
    }
    state.counters["events/s"] = benchmark::Counter(
      static_cast<double>(events - refused), benchmark::Counter::kIsRate);
    state.counters["refused"] = static_cast<double>(refused);
    self->send_exit(drv, caf::exit_reason::user_shutdown);
    host.stop();
  }
}

} // namespace

BENCHMARK(bm_persist)
  ->Name("persist")
  ->ArgNames({"sessions", "window"})
  ->Args({1, 1})
  ->Args({1, 1024})
  ->Args({100, 1})
  ->Args({100, 32})
  ->UseRealTime()
  ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
