// Embedding: sessionhost runs inside the caller's own caf::actor_system, next
// to the caller's own actors, and embedded_host::stop() takes down only what
// the host spawned. The caller's actors keep working, a second host can start
// in the same system (and, on the same store, finds the first one's
// sessions), and the system still destructs promptly. Every wait is bounded.

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <gtest/gtest.h>

#include "call.hpp"
#include "held_type.hpp"
#include "reply.hpp"
#include "test_support.hpp"

#include <sessionhost/sessionhost.hpp>

using namespace std::chrono_literals;

namespace sessionhost {
namespace {

/// The caller's own actor: adds what it is sent, answers the running total.
struct adder_state {
  int total = 0;
};

caf::behavior adder(caf::stateful_actor<adder_state>* self) {
  return {
    [self](int x) { return self->state.total += x; },
  };
}

/// A request with a bounded wait: the reply or the error.
template <class T, class Handle, class... Ts>
test::reply<T> ask(caf::scoped_actor& self, const Handle& h, Ts&&... xs) {
  return test::call<T>(self, h, std::forward<Ts>(xs)...);
}

/// Destroys `sys` here, with a watchdog that ends the test binary (exit 3,
/// so the test fails) if that takes longer than `limit`: ~actor_system waits
/// for every actor, so an actor the host left behind would hang it. (Not on
/// another thread: CAF 0.17's ~actor_system hangs when it runs on a thread
/// other than the one that constructed the system, even with no actors.)
bool destructs_within(std::unique_ptr<caf::actor_system> sys,
                      std::chrono::seconds limit) {
  std::mutex mtx;
  std::condition_variable cv;
  bool done = false;
  std::thread watchdog{[&] {
    std::unique_lock<std::mutex> lock{mtx};
    if (!cv.wait_for(lock, limit, [&] { return done; })) {
      std::fprintf(stderr, "~actor_system hung for %lld s: the host left an "
                           "actor running\n",
                   static_cast<long long>(limit.count()));
      std::_Exit(3);
    }
  }};
  sys.reset();
  {
    std::lock_guard<std::mutex> guard{mtx};
    done = true;
  }
  cv.notify_all();
  watchdog.join();
  return true;
}

/// The embedder's own configuration: sessionhost's options and types
/// registered on it, a small scheduler.
std::unique_ptr<caf::actor_system> make_system(sessionhost_config& cfg) {
  cfg.set("scheduler.max-threads", 2);
  return std::make_unique<caf::actor_system>(cfg);
}

host_options memory_opts(std::shared_ptr<memory_store> store) {
  host_options opts;
  opts.store = std::move(store);
  opts.config.idle_timeout = 0ms;
  return opts;
}

} // namespace

TEST(embedding, stopping_the_host_leaves_the_callers_system_and_actors_running) {
  sessionhost_config cfg;
  auto sys = make_system(cfg);
  auto store = std::make_shared<memory_store>();
  {
    caf::scoped_actor self{*sys};
    auto mine = sys->spawn(adder);
    EXPECT_EQ(ask<int>(self, mine, 2).value_or(-1), 2);

    // Even when an assertion returns early, the caller's actor must end, or
    // ~actor_system would wait for it.
    std::shared_ptr<void> stop_mine{nullptr, [&](void*) {
      caf::anon_send_exit(mine, caf::exit_reason::user_shutdown);
    }};
    std::string id;
    uint64_t first_epoch = 0;
    {
      embedded_host host{*sys, memory_opts(store)};
      auto c = ask<session_info>(self, host.host(), create_atom::value,
                                 std::string{"echo"}, std::string{},
                                 metadata_map{});
      ASSERT_TRUE(c) << message_of(c.error());
      id = c->id;
      auto s = ask<session_actor>(self, host.host(), get_session_atom::value, id);
      ASSERT_TRUE(s);
      ASSERT_TRUE(ask<uint64_t>(self, *s, message_atom::value,
                                std::string{R"("hi")"}));
      EXPECT_EQ(ask<int>(self, mine, 3).value_or(-1), 5) << "side by side";

      host.stop();
      host.stop(); // idempotent

      // The caller's actor goes on; the host's actors are gone and say so
      // (an error, not a hang).
      EXPECT_EQ(ask<int>(self, mine, 4).value_or(-1), 9);
      auto gone = ask<uint64_t>(self, host.host(), count_atom::value,
                                session_filter{});
      EXPECT_FALSE(gone);
      auto hub_gone = ask<uint64_t>(self, host.hub(), client_count_atom::value, id);
      EXPECT_FALSE(hub_gone);
      // Everything was flushed and unloaded before the actors stopped.
      auto stored = store->load(id);
      ASSERT_TRUE(stored);
      EXPECT_EQ(stored->message_count, 1u);
      EXPECT_FALSE(stored->loaded);
      first_epoch = stored->epoch;
    } // ~embedded_host after stop(): nothing more to do

    // A second host in the same system, on the same store, finds the first
    // one's session and loads it on demand.
    {
      embedded_host again{*sys, memory_opts(store)};
      auto n = ask<uint64_t>(self, again.host(), count_atom::value, session_filter{});
      EXPECT_EQ(n.value_or(0), 1u);
      auto s = ask<session_actor>(self, again.host(), get_session_atom::value, id);
      ASSERT_TRUE(s) << message_of(s.error());
      auto info = ask<session_info>(self, *s, info_atom::value);
      ASSERT_TRUE(info);
      EXPECT_EQ(info->message_count, 1u);
      EXPECT_GT(info->epoch, first_epoch) << "a new activation";
      EXPECT_EQ(ask<int>(self, mine, 1).value_or(-1), 10);
      // No stop(): the destructor stops it.
    }
    EXPECT_EQ(ask<int>(self, mine, 1).value_or(-1), 11);
  }
  EXPECT_TRUE(destructs_within(std::move(sys), 30s))
    << "~actor_system hung: the host left an actor running";
}

TEST(embedding, a_callers_actor_subscribed_through_the_hub_survives_the_host) {
  sessionhost_config cfg;
  auto sys = make_system(cfg);
  {
    caf::scoped_actor self{*sys};
    auto rec = std::make_shared<test::recording>();
    auto sub = sys->spawn(test::recorder, rec, false);
    std::shared_ptr<void> stop_sub{nullptr, [&](void*) {
      caf::anon_send_exit(sub, caf::exit_reason::user_shutdown);
    }};
    {
      embedded_host host{*sys, memory_opts(std::make_shared<memory_store>())};
      auto c = ask<session_info>(self, host.host(), create_atom::value,
                                 std::string{"echo"}, std::string{},
                                 metadata_map{});
      ASSERT_TRUE(c);
      ASSERT_TRUE(ask<uint64_t>(self, host.hub(), hub_subscribe_atom::value,
                                sub, c->id));
      auto s = ask<session_actor>(self, host.host(), get_session_atom::value,
                                  c->id);
      ASSERT_TRUE(s);
      ASSERT_TRUE(ask<uint64_t>(self, *s, message_atom::value,
                                std::string{R"("abc")"}));
      auto deadline = std::chrono::steady_clock::now() + 10s;
      while (rec->size() < 6 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
      EXPECT_GE(rec->size(), 6u) << "session:start, message, block:*";
      host.stop();
    }
    // The subscriber is the caller's: still alive after the host went.
    auto probe = sys->spawn([](caf::event_based_actor*) -> caf::behavior {
      return {[](int x) { return x; }};
    });
    EXPECT_EQ(ask<int>(self, probe, 7).value_or(-1), 7);
    self->monitor(sub);
    bool down = false;
    self->receive([&](caf::down_msg&) { down = true; },
                  caf::after(std::chrono::milliseconds(50)) >> [] {});
    EXPECT_FALSE(down) << "the host must not take the caller's actors along";
    caf::anon_send_exit(probe, caf::exit_reason::user_shutdown);
  }
  EXPECT_TRUE(destructs_within(std::move(sys), 30s));
}

TEST(embedding, two_hosts_run_side_by_side_in_one_system) {
  sessionhost_config cfg;
  auto sys = make_system(cfg);
  {
    caf::scoped_actor self{*sys};
    auto a = std::make_unique<embedded_host>(*sys, memory_opts(std::make_shared<memory_store>()));
    auto b = std::make_unique<embedded_host>(*sys, memory_opts(std::make_shared<memory_store>()));
    auto ca = ask<session_info>(self, a->host(), create_atom::value,
                                std::string{"echo"}, std::string{}, metadata_map{});
    auto cb = ask<session_info>(self, b->host(), create_atom::value,
                                std::string{"echo"}, std::string{}, metadata_map{});
    ASSERT_TRUE(ca && cb);
    a.reset(); // stops only a's actors
    auto still = ask<session_actor>(self, b->host(), get_session_atom::value, cb->id);
    ASSERT_TRUE(still) << message_of(still.error());
    EXPECT_TRUE(ask<uint64_t>(self, *still, message_atom::value, std::string{"1"}));
    auto other = ask<session_actor>(self, b->host(), get_session_atom::value, ca->id);
    EXPECT_FALSE(other) << "separate stores, separate sessions";
    b.reset();
  }
  EXPECT_TRUE(destructs_within(std::move(sys), 30s));
}

TEST(embedding, a_stop_that_gives_up_still_lets_the_system_end) {
  // A session whose resource never lets go holds the shutdown: stop() gives
  // up after shutdown_timeout and stops the rest without their final
  // snapshot. Nothing a killed session held (its services with the
  // persistence listener's handle, its own pending replies) may keep an
  // actor alive, or ~actor_system waits forever.
  sessionhost_config cfg;
  auto sys = make_system(cfg);
  auto store = std::make_shared<memory_store>();
  std::vector<std::string> echoes;
  std::string stuck;
  {
    host_options opts = memory_opts(store);
    opts.config.shutdown_timeout = 300ms;
    opts.types = session_type_registry::with_builtins();
    opts.types->add("held", [] {
      return std::make_unique<test::held_type>(
        std::make_shared<test::held_releases>());
    });
    embedded_host host{*sys, opts};
    caf::scoped_actor self{*sys};
    auto create = [&](const std::string& type) {
      auto c = ask<session_info>(self, host.host(), create_atom::value, type,
                                 std::string{}, metadata_map{});
      EXPECT_TRUE(c) << message_of(c.error());
      return c ? c->id : std::string{};
    };
    for (int i = 0; i < 20; ++i)
      echoes.push_back(create("echo"));
    stuck = create("held");
    host.stop(); // gives up 300-600 ms after the echoes went
    EXPECT_FALSE(ask<uint64_t>(self, host.host(), count_atom::value,
                               session_filter{}))
      << "the host is gone";
  }
  EXPECT_TRUE(destructs_within(std::move(sys), 30s))
    << "~actor_system hung: a killed session kept an actor alive";
  for (auto& id : echoes) {
    auto stored = store->load(id);
    ASSERT_TRUE(stored) << id;
    EXPECT_FALSE(stored->loaded) << "unloaded as usual";
  }
  auto held = store->load(stuck);
  ASSERT_TRUE(held);
  EXPECT_EQ(held->state, session_state::terminating)
    << "its stop began; its resource never let go";
}

TEST(embedding, a_stop_returns_when_the_host_ends_before_answering) {
  // The host is killed while its shutdown waits for a session whose
  // resource never lets go (and shutdown_timeout is an hour): stop() must
  // not wait for an answer that cannot come.
  sessionhost_config cfg;
  auto sys = make_system(cfg);
  auto releases = std::make_shared<test::held_releases>();
  {
    host_options opts = memory_opts(std::make_shared<memory_store>());
    opts.config.shutdown_timeout = std::chrono::hours(1);
    opts.types = session_type_registry::with_builtins();
    opts.types->add("held", [releases] {
      return std::make_unique<test::held_type>(releases);
    });
    embedded_host host{*sys, opts};
    caf::scoped_actor self{*sys};
    auto held = ask<session_info>(self, host.host(), create_atom::value,
                                  std::string{"held"}, std::string{},
                                  metadata_map{});
    ASSERT_TRUE(held) << message_of(held.error());
    std::promise<void> stopped;
    auto returned = stopped.get_future();
    std::thread stopper{[&] {
      host.stop();
      stopped.set_value();
    }};
    auto told_to_stop = [&] {
      std::lock_guard<std::mutex> guard{releases->mtx};
      return releases->by_id.count(held->id) > 0;
    };
    for (int i = 0; i < 1000 && !told_to_stop(); ++i) // bounded: 10 s
      std::this_thread::sleep_for(10ms);
    EXPECT_TRUE(told_to_stop()) << "the shutdown reached the session";
    caf::anon_send_exit(host.host(), caf::exit_reason::kill);
    if (returned.wait_for(30s) != std::future_status::ready) {
      std::fprintf(stderr, "stop() still waits for a host that is gone\n");
      std::_Exit(3); // the stopper can never be joined
    }
    stopper.join();
  }
  EXPECT_TRUE(destructs_within(std::move(sys), 30s));
}

} // namespace sessionhost
