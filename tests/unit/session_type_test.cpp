// User-defined session types through the C++ API: a type registered by name
// in host_options::types is created with create_atom to the host, runs its
// on_start / on_message / on_timer / on_stop inside the session, moves its
// lifecycle with transition, sets timers, and everything it publishes is in
// the session's event stream (live to a subscriber, and in the store).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "real_system.hpp"
#include "test_support.hpp"

#include "host/event.hpp"
#include "host/session_type.hpp"

using namespace std::chrono_literals;
using json = nlohmann::json;

namespace sessionhost {
namespace {

/// A counter with a warm-up: on_start moves CREATED → SPAWNING and sets a
/// timer; the timer moves SPAWNING → ACTIVE and starts `ticks` periodic
/// ticks. Each message publishes the count (from the session's own
/// message_count, so it survives unload/load); {"op":"stop"} terminates the
/// session from inside; on_stop publishes the final count.
class counter_type final : public session_type {
public:
  static constexpr uint64_t warmup_timer = 1;
  static constexpr uint64_t tick_timer = 2;

  explicit counter_type(std::shared_ptr<std::atomic<int>> starts)
    : starts_(std::move(starts)) {}

  void on_start(session_context& ctx) override {
    ++*starts_;
    auto state = ctx.info().state;
    if (state == session_state::created) {
      if (auto err = ctx.transition(lifecycle_event::spawn, "warming up"))
        throw std::runtime_error(message_of(err));
      ctx.set_timer(20ms, warmup_timer);
    } else if (state == session_state::spawning) {
      ctx.set_timer(20ms, warmup_timer); // unloaded during its warm-up
    }
  }

  void on_message(session_context& ctx, const std::string& data) override {
    auto msg = json::parse(data, nullptr, false);
    if (msg.is_object() && msg.value("op", "") == "stop") {
      if (auto err = ctx.transition(lifecycle_event::terminate, "stopped by user"))
        throw std::runtime_error(message_of(err));
      return;
    }
    ctx.publish("counter:value",
                json{{"count", ctx.info().message_count}}.dump());
  }

  void on_timer(session_context& ctx, uint64_t id) override {
    if (id == warmup_timer) {
      if (ctx.info().state == session_state::spawning)
        ctx.transition(lifecycle_event::activate, "warm");
      ctx.set_timer(10ms, tick_timer);
      return;
    }
    ctx.publish("counter:tick", json{{"tick", ++ticks_}}.dump());
    if (ticks_ < 3)
      ctx.set_timer(10ms, tick_timer);
  }

  void on_stop(session_context& ctx, const std::string& reason) override {
    ctx.publish("counter:stopped",
                json{{"reason", reason}, {"count", ctx.info().message_count}}
                  .dump());
  }

private:
  std::shared_ptr<std::atomic<int>> starts_;
  int ticks_ = 0;
};

/// A type whose on_message throws: reported as an `error` event, not fatal.
class faulty_type final : public session_type {
public:
  bool spawns_nothing() const override { return true; }
  void on_message(session_context&, const std::string&) override {
    throw std::runtime_error("boom");
  }
};

class session_type_test : public test::real_system {
protected:
  session_type_test() {
    auto types = session_type_registry::with_builtins();
    types->add("counter",
               [s = starts] { return std::make_unique<counter_type>(s); });
    types->add("faulty", [] { return std::make_unique<faulty_type>(); });
    opts.types = types;
    start();
  }

  ~session_type_test() override {
    for (auto& a : to_stop)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }

  std::pair<caf::actor, std::shared_ptr<test::recording>> new_recorder() {
    auto rec = std::make_shared<test::recording>();
    auto a = sys.spawn(test::recorder, rec, false);
    to_stop.push_back(a);
    return {a, rec};
  }

  std::vector<std::string> stored_types(const std::string& id) {
    std::vector<std::string> out;
    for (auto& e : store->read_events(id, 0, 1000))
      out.push_back(e.type);
    return out;
  }

  session_state state_of(const std::string& id) {
    auto i = call<session_info>(session(id), info_atom::value);
    return i ? i->state : session_state::cleaned;
  }

  std::shared_ptr<std::atomic<int>> starts = std::make_shared<std::atomic<int>>(0);
  std::vector<caf::actor> to_stop;
};

std::vector<std::string> only(const std::vector<std::string>& xs,
                              const std::string& prefix) {
  std::vector<std::string> out;
  for (auto& x : xs)
    if (x.rfind(prefix, 0) == 0)
      out.push_back(x);
  return out;
}

} // namespace

TEST_F(session_type_test, the_registry_knows_custom_types_next_to_the_builtins) {
  auto names = host->types().names();
  EXPECT_EQ(names, (std::vector<std::string>{"agent", "counter", "echo", "faulty"}));
  EXPECT_TRUE(host->types().contains("counter"));
  EXPECT_EQ(host->types().make("nope"), nullptr);
}

TEST_F(session_type_test, an_unknown_type_is_refused_and_creates_nothing) {
  auto c = create("dice");
  ASSERT_FALSE(c);
  EXPECT_EQ(code_of(c.error()), errc::bad_request);
  EXPECT_EQ(store->count(session_filter{}), 0u);
}

TEST_F(session_type_test, a_custom_type_moves_its_lifecycle_with_transition_and_timers) {
  auto c = create("counter", "", {{"owner", "test"}});
  ASSERT_TRUE(c) << message_of(c.error());
  EXPECT_EQ(c->type, "counter");
  EXPECT_EQ(starts->load(), 1) << "on_start ran once, on creation";
  // The warm-up timer activates it.
  ASSERT_TRUE(eventually([&] { return state_of(c->id) == session_state::active; }));
  ASSERT_TRUE(eventually([&] {
    return only(stored_types(c->id), "counter:tick").size() == 3;
  })) << "three ticks, then the type stops re-arming";
  auto types = stored_types(c->id);
  ASSERT_GE(types.size(), 2u);
  EXPECT_EQ(types[0], "status:changed");
  EXPECT_EQ(types[1], "status:changed");
  auto evs = store->read_events(c->id, 0, 2);
  EXPECT_EQ(json::parse(evs[0].data)["state"], "SPAWNING");
  EXPECT_EQ(json::parse(evs[0].data)["reason"], "warming up");
  EXPECT_EQ(json::parse(evs[1].data)["state"], "ACTIVE");
  EXPECT_EQ(json::parse(evs[1].data)["previous"], "SPAWNING");
}

TEST_F(session_type_test, messages_reach_on_message_and_its_events_reach_subscribers) {
  auto c = create("counter");
  ASSERT_TRUE(c);
  auto [sub, rec] = new_recorder();
  // The embedder's path: subscribe through the client hub.
  auto after = call<uint64_t>(host->hub(), hub_subscribe_atom::value, sub, c->id);
  ASSERT_TRUE(after) << message_of(after.error());
  auto s = session(c->id);
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(call<uint64_t>(s, message_atom::value, std::string{R"({"n":1})"}));
  ASSERT_TRUE(eventually([&] {
    return only(rec->types(), "counter:value").size() == 3;
  }));
  std::vector<int64_t> counts;
  uint64_t prev = *after;
  for (auto& e : rec->snapshot()) {
    EXPECT_EQ(e.session_id, c->id);
    EXPECT_EQ(e.seq, prev + 1) << "in order, no gaps";
    prev = e.seq;
    if (e.type == "counter:value")
      counts.push_back(json::parse(e.data)["count"].get<int64_t>());
  }
  EXPECT_EQ(counts, (std::vector<int64_t>{1, 2, 3}));
  auto types = rec->types();
  EXPECT_EQ(only(types, "session:start").size(), 1u) << "first message";
  EXPECT_EQ(only(types, "message").size(), 3u);
}

TEST_F(session_type_test, a_type_keeps_its_state_across_unload_and_load) {
  auto c = create("counter");
  ASSERT_TRUE(c);
  ASSERT_TRUE(eventually([&] { return state_of(c->id) == session_state::active; }));
  ASSERT_TRUE(call<uint64_t>(session(c->id), message_atom::value, std::string{"{}"}));
  ASSERT_TRUE(call<session_info>(host->host(), unload_atom::value, c->id));
  // Any operation loads it again: a new instance, on_start again, same state.
  auto first = call<uint64_t>(session(c->id), message_atom::value, std::string{"{}"});
  ASSERT_TRUE(first);
  EXPECT_EQ(starts->load(), 2);
  EXPECT_EQ(state_of(c->id), session_state::active);
  auto evs = store->read_events(c->id, *first, 10);
  ASSERT_FALSE(evs.empty());
  EXPECT_EQ(evs[0].type, "counter:value");
  EXPECT_EQ(json::parse(evs[0].data)["count"], 2) << "message_count came back";
}

TEST_F(session_type_test, a_type_terminates_its_session_and_on_stop_runs_first_to_last) {
  auto c = create("counter");
  ASSERT_TRUE(c);
  ASSERT_TRUE(eventually([&] { return state_of(c->id) == session_state::active; }));
  auto s = session(c->id);
  ASSERT_TRUE(call<uint64_t>(s, message_atom::value, std::string{"{}"}));
  ASSERT_TRUE(call<uint64_t>(s, message_atom::value, std::string{R"({"op":"stop"})"}));
  EXPECT_EQ(state_of(c->id), session_state::terminating);
  auto types = stored_types(c->id);
  auto end = std::find(types.begin(), types.end(), "session:end");
  ASSERT_NE(end, types.end());
  auto stopped = std::find(types.begin(), types.end(), "counter:stopped");
  ASSERT_NE(stopped, types.end());
  EXPECT_LT(end, stopped) << "session:end, then TERMINATING, then on_stop";
  // Further input is refused; the host finishes the cleanup.
  auto refused = call<uint64_t>(s, message_atom::value, std::string{"{}"});
  ASSERT_FALSE(refused);
  EXPECT_EQ(code_of(refused.error()), errc::conflict);
  auto done = call<session_info>(host->host(), terminate_atom::value, c->id,
                                 std::string{"done"});
  ASSERT_TRUE(done) << message_of(done.error());
  EXPECT_EQ(done->state, session_state::cleaned);
  EXPECT_EQ(only(stored_types(c->id), "counter:stopped").size(), 1u)
    << "on_stop runs once";
}

TEST_F(session_type_test, host_hooks_fire_for_custom_types_and_may_publish) {
  host->register_on_session_open([](const hook_event& ev) {
    ev.control->publish("log", json{{"greeting", "hello " + ev.metadata.at("peer")}}.dump());
  });
  auto c = create("counter");
  ASSERT_TRUE(c);
  ASSERT_TRUE(call<session_info>(session(c->id), attach_atom::value,
                                 std::string{"player-1"}, caf::actor{}));
  ASSERT_TRUE(call<session_info>(session(c->id), sync_atom::value));
  auto evs = store->read_events(c->id, 0, 100);
  auto i = std::find_if(evs.begin(), evs.end(),
                        [](const event& e) { return e.type == "log"; });
  ASSERT_NE(i, evs.end());
  EXPECT_EQ(json::parse(i->data)["greeting"], "hello player-1");
}

TEST_F(session_type_test, a_type_that_throws_is_reported_and_the_session_goes_on) {
  auto c = create("faulty");
  ASSERT_TRUE(c);
  auto s = session(c->id);
  ASSERT_TRUE(call<uint64_t>(s, message_atom::value, std::string{"{}"}));
  ASSERT_TRUE(call<uint64_t>(s, message_atom::value, std::string{"{}"}));
  auto types = stored_types(c->id);
  EXPECT_EQ(only(types, "error").size(), 2u);
  EXPECT_EQ(only(types, "message").size(), 2u);
  EXPECT_EQ(state_of(c->id), session_state::active);
}

} // namespace sessionhost
