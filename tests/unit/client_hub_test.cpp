// The client hub and its broadcast listener: fan-out to subscribed clients,
// isolation between sessions, client counts, dead and slow clients, and
// clients of an unloaded session told so (not lagged).
#include "real_system.hpp"
#include "test_support.hpp"

using namespace sessionhost;
using namespace std::chrono_literals;

namespace {

class hub_test : public test::real_system {
protected:
  std::pair<caf::actor, std::shared_ptr<test::recording>> client(bool stall = false) {
    auto rec = std::make_shared<test::recording>();
    auto a = sys.spawn(test::recorder, rec, stall);
    clients.push_back(a);
    return {a, rec};
  }

  uint64_t count(const std::string& id) {
    return call<uint64_t>(host->hub(), client_count_atom::value, id).value_or(999);
  }

  void publish(const session_actor& s, int n) {
    for (int i = 0; i < n; ++i)
      ASSERT_TRUE(call<uint64_t>(s, publish_atom::value, "block:delta",
                                 "{\"i\":" + std::to_string(i) + "}"));
  }

  ~hub_test() override {
    for (auto& c : clients)
      caf::anon_send_exit(c, caf::exit_reason::user_shutdown);
  }

  std::vector<caf::actor> clients;
};

std::vector<uint64_t> seqs(const test::recording& r) {
  std::vector<uint64_t> out;
  for (auto& e : r.snapshot())
    out.push_back(e.seq);
  return out;
}

} // namespace

TEST_F(hub_test, clients_of_a_session_get_its_events_in_order_and_only_its) {
  start();
  auto a = create("agent")->id;
  auto b = create("agent")->id;
  auto [c1, r1] = client();
  auto [c2, r2] = client();
  auto [c3, r3] = client();
  ASSERT_EQ(call<uint64_t>(host->hub(), hub_subscribe_atom::value, c1, a).value_or(9), 0u);
  ASSERT_TRUE(call<uint64_t>(host->hub(), hub_subscribe_atom::value, c2, a));
  ASSERT_TRUE(call<uint64_t>(host->hub(), hub_subscribe_atom::value, c3, b));
  EXPECT_EQ(count(a), 2u);
  EXPECT_EQ(count(b), 1u);
  publish(session(a), 50);
  publish(session(b), 3);
  ASSERT_TRUE(eventually([&] { return r1->size() == 50 && r2->size() == 50; }));
  std::vector<uint64_t> expected(50);
  for (uint64_t i = 0; i < 50; ++i)
    expected[i] = i + 1;
  EXPECT_EQ(seqs(*r1), expected);
  EXPECT_EQ(seqs(*r2), expected);
  ASSERT_TRUE(eventually([&] { return r3->size() == 3; }));
  for (auto& e : r3->snapshot())
    EXPECT_EQ(e.session_id, b);
  // Subscribing later: only what comes after the returned seq.
  auto [c4, r4] = client();
  EXPECT_EQ(call<uint64_t>(host->hub(), hub_subscribe_atom::value, c4, a).value_or(0), 50u);
  publish(session(a), 1);
  ASSERT_TRUE(eventually([&] { return r4->size() == 1; }));
  EXPECT_EQ(r4->snapshot()[0].seq, 51u);
}

TEST_F(hub_test, client_count_follows_unsubscribes_and_dead_clients) {
  start();
  auto a = create("agent")->id;
  auto [c1, r1] = client();
  auto [c2, r2] = client();
  call<uint64_t>(host->hub(), hub_subscribe_atom::value, c1, a);
  call<uint64_t>(host->hub(), hub_subscribe_atom::value, c2, a);
  EXPECT_EQ(count(a), 2u);
  EXPECT_TRUE(call<bool>(host->hub(), hub_unsubscribe_atom::value, c1, a).value_or(false));
  EXPECT_FALSE(call<bool>(host->hub(), hub_unsubscribe_atom::value, c1, a).value_or(true));
  EXPECT_EQ(count(a), 1u);
  caf::anon_send_exit(c2, caf::exit_reason::kill);
  EXPECT_TRUE(eventually([&] { return count(a) == 0; }));
  EXPECT_EQ(code_of(call<uint64_t>(host->hub(), hub_subscribe_atom::value, c1,
                                   std::string{"no-such"}).error()),
            errc::not_found);
  EXPECT_EQ(count("no-such"), 0u);
}

TEST_F(hub_test, a_slow_client_is_dropped_while_a_fast_one_gets_everything) {
  // Big enough that a client answering at once never fills it, small enough
  // that one that never answers does.
  opts.client_window = 32;
  start();
  auto a = create("agent")->id;
  auto [fast, rf] = client();
  auto [slow, rs] = client(true);
  call<uint64_t>(host->hub(), hub_subscribe_atom::value, fast, a);
  call<uint64_t>(host->hub(), hub_subscribe_atom::value, slow, a);
  // In steps the fast one keeps up with: under load the publisher could
  // otherwise run a window ahead of the hub's credits.
  for (size_t step = 1; step <= 10; ++step) {
    publish(session(a), 10);
    ASSERT_TRUE(eventually([&] { return rf->size() == 10 * step; }))
      << "fast got " << rf->size() << ", lagged " << rf->lagged.size();
  }
  EXPECT_TRUE(rf->lagged.empty());
  ASSERT_TRUE(eventually([&] {
    std::lock_guard<std::mutex> guard{rs->mtx};
    return !rs->lagged.empty();
  })) << "slow got " << rs->size() << " events";
  EXPECT_EQ(rs->lagged.size(), 1u);
  EXPECT_LT(rs->size(), 100u);
  EXPECT_EQ(rs->lagged[0].second, rs->snapshot().back().seq)
    << "told exactly where to resume";
  EXPECT_EQ(count(a), 1u);
}

// A client subscribed with credits (as every WebSocket connection is) gets
// plain messages and confirms them itself; one that never does is dropped.
caf::behavior crediting_recorder(caf::event_based_actor* self,
                                 std::shared_ptr<test::recording> rec,
                                 client_hub_actor hub, bool stall) {
  return {
    [=](events_atom, const std::string& id, const std::vector<event>& evs) {
      {
        std::lock_guard<std::mutex> guard{rec->mtx};
        rec->events.insert(rec->events.end(), evs.begin(), evs.end());
      }
      if (!stall)
        caf::anon_send(hub, hub_credit_atom::value, caf::actor{self}, id,
                       static_cast<uint64_t>(evs.size()));
    },
    [=](lagged_atom, const std::string& id, uint64_t seq) {
      std::lock_guard<std::mutex> guard{rec->mtx};
      rec->lagged.emplace_back(id, seq);
    },
  };
}

TEST_F(hub_test, clients_that_credit_themselves_keep_up_and_silent_ones_lag) {
  opts.client_window = 32;
  start();
  auto a = create("agent")->id;
  auto rf = std::make_shared<test::recording>();
  auto rs = std::make_shared<test::recording>();
  auto fast = sys.spawn(crediting_recorder, rf, host->hub(), false);
  auto slow = sys.spawn(crediting_recorder, rs, host->hub(), true);
  clients.push_back(fast);
  clients.push_back(slow);
  ASSERT_EQ(call<uint64_t>(host->hub(), hub_subscribe_atom::value, fast, a,
                           true).value_or(9), 0u);
  ASSERT_TRUE(call<uint64_t>(host->hub(), hub_subscribe_atom::value, slow, a,
                             true));
  // In steps the fast one keeps up with: under load the publisher could
  // otherwise run a window ahead of the hub's credits.
  for (size_t step = 1; step <= 10; ++step) {
    publish(session(a), 10);
    ASSERT_TRUE(eventually([&] { return rf->size() == 10 * step; }))
      << "fast got " << rf->size() << ", lagged " << rf->lagged.size();
  }
  std::vector<uint64_t> expected(100);
  for (uint64_t i = 0; i < 100; ++i)
    expected[i] = i + 1;
  EXPECT_EQ(seqs(*rf), expected);
  EXPECT_TRUE(rf->lagged.empty()) << "its credits reached the hub";
  ASSERT_TRUE(eventually([&] {
    std::lock_guard<std::mutex> guard{rs->mtx};
    return !rs->lagged.empty();
  })) << "slow got " << rs->size() << " events";
  EXPECT_LT(rs->size(), 100u);
  EXPECT_EQ(rs->lagged[0].second, rs->snapshot().back().seq);
  EXPECT_EQ(count(a), 1u);
}

TEST_F(hub_test, clients_of_an_unloaded_session_are_told_and_may_reload_it) {
  start();
  auto a = create("agent")->id;
  auto [c, r] = client();
  call<uint64_t>(host->hub(), hub_subscribe_atom::value, c, a);
  publish(session(a), 2);
  ASSERT_TRUE(eventually([&] { return r->size() == 2; }));
  ASSERT_TRUE(call<session_info>(host->host(), unload_atom::value, a));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard<std::mutex> guard{r->mtx};
    return r->unloaded.size() == 1;
  }));
  EXPECT_EQ(r->unloaded[0].second, 2u);
  EXPECT_TRUE(r->lagged.empty()) << "an unload is not a lag";
  EXPECT_TRUE(eventually([&] { return count(a) == 0; }));
  // Resubscribing loads the session again; nothing is missed.
  EXPECT_EQ(call<uint64_t>(host->hub(), hub_subscribe_atom::value, c, a).value_or(0), 2u);
  publish(session(a), 1);
  ASSERT_TRUE(eventually([&] { return r->size() == 3; }));
  EXPECT_EQ(seqs(*r), (std::vector<uint64_t>{1, 2, 3}));
}
