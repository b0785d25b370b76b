#pragma once
// Shared pieces of the core tests: a subscriber actor that records what it
// receives, and a fixture that runs CAF's deterministic test_coordinator with
// a manual clock, so timers cost no real time.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <gtest/gtest.h>

#include "reply.hpp"

#include "actors/actors.hpp"
#include "actors/persistence_listener.hpp"
#include "actors/session_actor.hpp"
#include "host/config.hpp"
#include "host/error.hpp"
#include "host/store/memory_store.hpp"

namespace sessionhost::test {

/// What a recording subscriber saw. Thread-safe.
struct recording {
  mutable std::mutex mtx;
  std::vector<event> events;
  std::vector<std::pair<std::string, uint64_t>> lagged;   // session, seq
  std::vector<std::pair<std::string, uint64_t>> unloaded; // session, seq

  std::vector<event> snapshot() const {
    std::lock_guard<std::mutex> guard{mtx};
    return events;
  }
  std::vector<std::string> types() const {
    std::vector<std::string> out;
    for (auto& e : snapshot())
      out.push_back(e.type);
    return out;
  }
  size_t size() const {
    std::lock_guard<std::mutex> guard{mtx};
    return events.size();
  }
};

/// A subscriber that records every event. With `stall` it never confirms a
/// batch: a subscriber that cannot keep up.
inline caf::behavior recorder(caf::stateful_actor<std::vector<caf::response_promise>>* self,
                              std::shared_ptr<recording> rec, bool stall) {
  return {
    [=](events_atom, const std::string&,
        const std::vector<event>& evs) -> caf::result<void> {
      {
        std::lock_guard<std::mutex> guard{rec->mtx};
        rec->events.insert(rec->events.end(), evs.begin(), evs.end());
      }
      if (stall) {
        self->state.push_back(self->make_response_promise());
        return caf::delegated<void>{};
      }
      return caf::unit;
    },
    [=](lagged_atom, const std::string& id, uint64_t seq) {
      std::lock_guard<std::mutex> guard{rec->mtx};
      rec->lagged.emplace_back(id, seq);
    },
    [=](unloaded_atom, const std::string& id, uint64_t seq) {
      std::lock_guard<std::mutex> guard{rec->mtx};
      rec->unloaded.emplace_back(id, seq);
    },
  };
}

/// Deterministic actor system: nothing runs until the test says so.
class deterministic : public ::testing::Test {
protected:
  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.file-verbosity", caf::atom("quiet"));
    return cfg;
  }

  deterministic() {
    config.heartbeat_timeout = std::chrono::seconds(10);
    config.reconnect_grace = std::chrono::seconds(30);
    config.idle_timeout = std::chrono::milliseconds(0);
  }

  ~deterministic() override {
    for (auto& a : to_stop)
      caf::anon_send_exit(a, caf::exit_reason::kill);
    sched.run();
  }

  /// The services every session of these tests shares.
  services_ptr make_services() {
    auto svc = std::make_shared<session_services>();
    svc->config = config;
    svc->clock = clock;
    svc->hooks = hooks;
    svc->obs = obs;
    svc->persistence = spawn_persistence_listener(
      sys, store, obs, persistence_options{config.commit_batch_limit, false});
    to_stop.push_back(caf::actor_cast<caf::actor>(svc->persistence));
    sched.run();
    return svc;
  }

  session_actor new_session(const std::string& id, services_ptr svc) {
    session_info info;
    info.id = id;
    info.type = "test";
    info.created_at = info.updated_at = clock->now();
    info.epoch = 1;
    store->create(info);
    auto h = spawn_session(sys, session_start{info, {}, svc, {}});
    to_stop.push_back(caf::actor_cast<caf::actor>(h));
    sched.run();
    return h;
  }

  std::pair<caf::actor, std::shared_ptr<recording>> new_recorder(bool stall = false) {
    auto rec = std::make_shared<recording>();
    auto a = sys.spawn(recorder, rec, stall);
    to_stop.push_back(a);
    sched.run();
    return {a, rec};
  }

  /// Sends a request-like message and runs everything it causes; returns the
  /// reply (or the error).
  template <class T, class Handle, class... Ts>
  reply<T> ask(const Handle& h, Ts&&... xs) {
    self->send(h, std::forward<Ts>(xs)...);
    sched.run();
    reply<T> result{make_error(errc::internal, "no reply")};
    self->receive([&](T& x) { result = std::move(x); },
                  [&](caf::error& e) { result = std::move(e); },
                  caf::after(std::chrono::seconds(0)) >> [] {});
    return result;
  }

  /// Moves the manual clock and CAF's virtual clock together, then runs.
  void advance(std::chrono::milliseconds d) {
    clock->advance(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
    sched.advance_time(d);
    sched.run();
  }

  caf::actor_system_config cfg;
  caf::actor_system sys{init(cfg)};
  caf::scheduler::test_coordinator& sched{
    dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())};
  caf::scoped_actor self{sys};
  host_config config;
  std::shared_ptr<manual_clock> clock = std::make_shared<manual_clock>();
  std::shared_ptr<hook_registry> hooks = std::make_shared<hook_registry>();
  std::shared_ptr<observability_hub> obs = std::make_shared<observability_hub>();
  std::shared_ptr<memory_store> store = std::make_shared<memory_store>();
  std::vector<caf::actor> to_stop;
};

} // namespace sessionhost::test
