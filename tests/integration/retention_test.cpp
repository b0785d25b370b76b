// The retention actor: its timer purges the store every interval (on CAF's
// deterministic test_coordinator with a manual clock, so ten minutes cost no
// real time), a large purge is cut into steps, the counters say what went,
// the config keys reach it, and an embedded_host runs it.

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "test_support.hpp"

#include "actors/retention_actor.hpp"
#include "host/embedded_host.hpp"
#include "host/store/open_store.hpp"

using namespace sessionhost;
using namespace std::chrono_literals;

namespace {

constexpr micros one_day = 86'400'000'000;

class retention_timer : public test::deterministic {
protected:
  /// A CLEANED session last updated `age` ago, with `events` events.
  void cleaned_session(const std::string& id, micros age, uint64_t events) {
    session_info info;
    info.id = id;
    info.type = "test";
    info.created_at = clock->now() - age;
    info.epoch = 1;
    store->create(info);
    append_batch b;
    b.session_id = id;
    b.epoch = 1;
    for (uint64_t s = 1; s <= events; ++s) {
      event e;
      e.session_id = id;
      e.seq = s;
      e.type = "log";
      e.ts = clock->now() - age;
      e.epoch = 1;
      b.events.push_back(e);
    }
    info.state = session_state::cleaned;
    info.updated_at = clock->now() - age;
    info.last_seq = events;
    b.snapshot = info;
    store->append({b});
  }

  retention_actor spawn(retention_options opts) {
    opts.detached = false;
    auto a = spawn_retention_actor(sys, store, clock, obs, opts);
    to_stop.push_back(caf::actor_cast<caf::actor>(a));
    sched.run();
    return a;
  }

  static retention_options weekly_grace() {
    retention_options o;
    o.policy.cleaned_grace = std::chrono::microseconds(7 * one_day);
    o.interval = 10min;
    return o;
  }

  /// Sends `purge` and runs everything; the (events, sessions) it reports.
  std::pair<uint64_t, uint64_t> purge_now(const retention_actor& a) {
    self->send(a, purge_atom::value);
    sched.run();
    std::pair<uint64_t, uint64_t> out{0, 0};
    self->receive([&](uint64_t e, uint64_t s) { out = {e, s}; },
                  [&](caf::error& err) { ADD_FAILURE() << message_of(err); },
                  caf::after(std::chrono::seconds(0)) >> [] { ADD_FAILURE() << "no reply"; });
    return out;
  }

  uint64_t sessions_purged() const { return obs->counters.sessions_purged.load(); }
  uint64_t events_purged() const { return obs->counters.events_purged.load(); }
};

} // namespace

TEST_F(retention_timer, purges_once_per_interval_and_counts_what_went) {
  cleaned_session("expired", 8 * one_day, 4);
  cleaned_session("recent", 6 * one_day, 2);
  spawn(weekly_grace());
  EXPECT_TRUE(store->load("expired")) << "nothing runs before the first interval";
  advance(9min);
  EXPECT_TRUE(store->load("expired"));
  EXPECT_EQ(sessions_purged(), 0u);
  advance(1min);
  EXPECT_FALSE(store->load("expired"));
  EXPECT_TRUE(store->load("recent"));
  EXPECT_EQ(sessions_purged(), 1u);
  EXPECT_EQ(events_purged(), 4u);
  // A day later "recent" has expired too; the next tick after that takes it.
  advance(std::chrono::hours(24));
  EXPECT_FALSE(store->load("recent"));
  EXPECT_EQ(sessions_purged(), 2u);
  EXPECT_EQ(events_purged(), 6u);
}

TEST_F(retention_timer, old_events_go_but_the_newest_stay) {
  // A live stream: ten events two days old; the snapshot covers them all.
  session_info info;
  info.id = "live";
  info.type = "test";
  info.epoch = 1;
  store->create(info);
  append_batch b;
  b.session_id = "live";
  b.epoch = 1;
  for (uint64_t s = 1; s <= 10; ++s) {
    event e;
    e.session_id = "live";
    e.seq = s;
    e.ts = clock->now() - 2 * one_day;
    e.epoch = 1;
    b.events.push_back(e);
  }
  info.last_seq = 10;
  info.state = session_state::active;
  b.snapshot = info;
  store->append({b});
  retention_options o;
  o.policy.max_event_age = std::chrono::microseconds(one_day);
  o.policy.keep_events = 4;
  o.interval = 1min;
  spawn(o);
  advance(1min);
  auto evs = store->read_events("live", 0, 100);
  ASSERT_EQ(evs.size(), 4u);
  EXPECT_EQ(evs.front().seq, 7u);
  EXPECT_EQ(events_purged(), 6u);
  EXPECT_EQ(store->load("live")->last_seq, 10u);
}

TEST_F(retention_timer, a_large_purge_is_cut_into_steps_that_let_messages_in) {
  for (int i = 0; i < 5; ++i)
    cleaned_session("c" + std::to_string(i), 8 * one_day, 3);
  auto o = weekly_grace();
  o.step_rows = 2;
  o.policy.chunk_rows = 2;
  auto a = spawn(o);
  sched.advance_time(10min); // fire the timer, then run one message at a time
  clock->advance(std::chrono::duration_cast<std::chrono::microseconds>(10min).count());
  ASSERT_TRUE(sched.try_run_once());
  EXPECT_GT(events_purged() + sessions_purged(), 0u);
  EXPECT_LT(sessions_purged(), 5u) << "one step does not do it all";
  // A request in between is answered between two steps; it purges the rest.
  // (The step queued before the request runs first, then the request.)
  auto [events, sessions] = purge_now(a);
  EXPECT_GT(events + sessions, 0u) << "the request did the rest";
  EXPECT_EQ(sessions_purged(), 5u);
  EXPECT_EQ(events_purged(), 15u);
  EXPECT_EQ(store->count({}), 0u);
}

TEST_F(retention_timer, an_explicit_purge_reports_what_it_deleted) {
  cleaned_session("expired", 8 * one_day, 3);
  retention_options o = weekly_grace();
  o.interval = 0ms; // no timer at all
  auto a = spawn(o);
  advance(std::chrono::hours(48));
  EXPECT_TRUE(store->load("expired")) << "no timer, no purge";
  auto [events, sessions] = purge_now(a);
  EXPECT_EQ(events, 3u);
  EXPECT_EQ(sessions, 1u);
  EXPECT_FALSE(store->load("expired"));
}

TEST_F(retention_timer, a_failing_store_is_retried_at_the_next_interval) {
  cleaned_session("expired", 8 * one_day, 1);
  spawn(weekly_grace());
  store->fail_writes(true);
  advance(10min);
  EXPECT_TRUE(store->load("expired"));
  store->fail_writes(false);
  advance(10min);
  EXPECT_FALSE(store->load("expired"));
  EXPECT_EQ(sessions_purged(), 1u);
}

TEST(retention_config, keys_and_defaults) {
  sessionhost_config defaults;
  auto d = host_config::from(defaults);
  EXPECT_EQ(d.retention_max_age, 0ms);
  EXPECT_EQ(d.retention_keep_events, 0u);
  EXPECT_EQ(d.cleaned_grace, std::chrono::hours(24 * 7));
  EXPECT_EQ(d.retention_interval, 10min);
  auto o = retention_options_of(d);
  EXPECT_TRUE(o.policy.enabled()) << "the cleaned rule is on by default";
  EXPECT_EQ(o.policy.max_event_age.count(), 0);

  sessionhost_config cfg;
  const char* argv[] = {"test", "--sessionhost.retention-max-age=36h",
                        "--sessionhost.retention-keep-events=100",
                        "--sessionhost.cleaned-grace=0s",
                        "--sessionhost.retention-interval=30s"};
  ASSERT_FALSE(cfg.parse(5, const_cast<char**>(argv)));
  auto c = host_config::from(cfg);
  EXPECT_EQ(c.retention_max_age, std::chrono::hours(36));
  EXPECT_EQ(c.retention_keep_events, 100u);
  EXPECT_EQ(c.cleaned_grace, 0ms);
  EXPECT_EQ(c.retention_interval, 30s);
  auto p = retention_options_of(c).policy;
  EXPECT_EQ(p.max_event_age, std::chrono::hours(36));
  EXPECT_EQ(p.keep_events, 100u);
  EXPECT_EQ(p.cleaned_grace.count(), 0);
}

// The host runs retention by itself: a terminated, unloaded session is gone
// from the store once its grace period is over.
TEST(retention_in_host, an_embedded_host_purges_expired_sessions) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto store = std::make_shared<memory_store>();
  host_options opts;
  opts.store = store;
  opts.config.idle_timeout = 0ms;
  opts.config.cleaned_grace = 1ms;
  opts.config.retention_interval = 20ms;
  embedded_host host{sys, opts};
  std::string id;
  self->request(host.host(), 10s, create_atom::value, std::string{"echo"},
                std::string{}, metadata_map{})
    .receive([&](session_info& i) { id = i.id; },
             [](caf::error& e) { ADD_FAILURE() << message_of(e); });
  ASSERT_FALSE(id.empty());
  self->request(host.host(), 10s, terminate_atom::value, id, std::string{"done"})
    .receive([](session_info& i) { EXPECT_EQ(i.state, session_state::cleaned); },
             [](caf::error& e) { ADD_FAILURE() << message_of(e); });
  self->request(host.host(), 10s, unload_atom::value, id)
    .receive([](session_info&) {}, [](caf::error& e) { ADD_FAILURE() << message_of(e); });
  // The retention actor counts a purge after the store call returns, so the
  // row can be gone a moment before the counter moves: wait for both.
  auto& counters = host.observability().counters;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((store->load(id) || counters.sessions_purged.load() == 0)
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(store->load(id));
  EXPECT_EQ(counters.sessions_purged.load(), 1u);
  EXPECT_GT(counters.events_purged.load(), 0u);
}
