// The output gate on the read side: info, sync and every state-changing
// reply show a session as of its last durable seq, never a change a crash
// could still roll back. The persistence listener here holds each batch
// until the test commits it (into a real memory_store, then reports it
// durable as the real listener does), so "emitted but not yet durable" is a
// state the test can look at. Deterministic: CAF's test_coordinator.
#include "test_support.hpp"

#include <deque>

#include <caf/typed_event_based_actor.hpp>

using namespace sessionhost;
using namespace std::chrono_literals;

namespace {

struct held_batches {
  std::deque<std::pair<session_actor, append_batch>> batches;
};

persistence_listener_actor::behavior_type
holding_listener(persistence_listener_actor::pointer,
                 std::shared_ptr<held_batches> held) {
  return {
    [held](persist_atom, session_actor who, append_batch& batch) {
      held->batches.emplace_back(std::move(who), std::move(batch));
    },
    [](commit_atom) {},
    [](sync_atom) { return true; },
  };
}

class durable_view_test : public test::deterministic {
protected:
  durable_view_test() {
    svc = std::make_shared<session_services>();
    svc->config = config;
    svc->clock = clock;
    svc->hooks = hooks;
    svc->obs = obs;
    svc->persistence = sys.spawn(holding_listener, held);
    to_stop.push_back(caf::actor_cast<caf::actor>(svc->persistence));
    sched.run();
  }

  /// Writes the oldest held batch to the store and reports it durable.
  void commit_next() {
    ASSERT_FALSE(held->batches.empty()) << "no batch waits";
    auto [who, batch] = std::move(held->batches.front());
    held->batches.pop_front();
    store->append({batch});
    uint64_t seq = batch.events.empty() ? batch.snapshot->last_seq
                                        : batch.events.back().seq;
    self->send(who, durable_atom::value, seq);
    sched.run();
  }

  /// What a reload after a crash now would give back, the way the host
  /// loads: the stored snapshot plus the stored events after it.
  session_info after_crash(const std::string& id) {
    auto snap = store->load(id);
    EXPECT_TRUE(snap);
    if (!snap)
      return {};
    replay_into(*snap, store->read_events(id, snap->last_seq, 1000));
    return *snap;
  }

  /// Fields a client reads, as "name=value" lines (a readable diff).
  static std::string shown(const session_info& x) {
    std::string md;
    for (auto& [k, v] : x.metadata)
      md += k + ":" + v + ",";
    return std::string{"state="} + to_string(x.state) + " peer=" + x.peer
           + " peer_connected=" + std::to_string(x.peer_connected)
           + " reconnects=" + std::to_string(x.reconnects)
           + " message_count=" + std::to_string(x.message_count)
           + " last_seq=" + std::to_string(x.last_seq) + " metadata=" + md;
  }

  session_info info(const session_actor& s) {
    auto r = ask<session_info>(s, info_atom::value);
    EXPECT_TRUE(r);
    return r ? *r : session_info{};
  }

  /// The reply waiting in our mailbox, if any (nothing is run).
  template <class T>
  std::optional<T> next_reply() {
    std::optional<T> out;
    self->receive([&](T& x) { out = std::move(x); },
                  [&](caf::error&) {},
                  caf::after(std::chrono::seconds(0)) >> [] {});
    return out;
  }

  std::shared_ptr<held_batches> held = std::make_shared<held_batches>();
  services_ptr svc;
};

} // namespace

TEST_F(durable_view_test, info_shows_only_what_a_crash_cannot_roll_back) {
  auto s = new_session("s-1", svc);
  auto before = info(s);
  self->send(s, attach_atom::value, std::string{"peer-a"}, caf::actor{});
  sched.run();
  ASSERT_EQ(held->batches.size(), 1u);
  EXPECT_FALSE(next_reply<session_info>()) << "no reply before durable";
  // session_open is emitted, not durable: info still shows no peer.
  EXPECT_EQ(shown(info(s)), shown(before));
  EXPECT_EQ(shown(info(s)), shown(after_crash("s-1")));

  self->send(s, message_atom::value, std::string{R"({"text":"hi"})"});
  sched.run();
  ASSERT_EQ(held->batches.size(), 2u);
  EXPECT_EQ(info(s).message_count, 0u);
  EXPECT_EQ(shown(info(s)), shown(after_crash("s-1")));

  // The attach is durable; the message is not. The attach's reply shows its
  // own change and nothing later.
  commit_next();
  auto attached = next_reply<session_info>();
  ASSERT_TRUE(attached);
  EXPECT_EQ(attached->peer, "peer-a");
  EXPECT_TRUE(attached->peer_connected);
  EXPECT_EQ(attached->last_seq, 1u);
  EXPECT_EQ(attached->message_count, 0u) << "a later, non-durable change";
  EXPECT_EQ(shown(info(s)), shown(*attached));
  EXPECT_EQ(shown(info(s)), shown(after_crash("s-1")));

  // sync waits for everything emitted so far.
  self->send(s, sync_atom::value);
  sched.run();
  EXPECT_FALSE(next_reply<uint64_t>()) << "the message is not durable yet";
  commit_next();
  auto first = next_reply<uint64_t>();
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, 2u); // session:start, then the message
  auto synced = next_reply<session_info>();
  ASSERT_TRUE(synced);
  EXPECT_EQ(synced->message_count, 1u);
  EXPECT_EQ(synced->last_seq, 3u);
  EXPECT_EQ(shown(info(s)), shown(*synced));
  EXPECT_EQ(shown(info(s)), shown(after_crash("s-1")));
}

TEST_F(durable_view_test, lifecycle_changes_show_once_durable_with_their_metadata) {
  auto s = new_session("s-1", svc);
  self->send(s, begin_spawn_atom::value);
  sched.run();
  EXPECT_EQ(info(s).state, session_state::created);
  commit_next();
  EXPECT_EQ(next_reply<session_info>()->state, session_state::spawning);
  self->send(s, activate_atom::value, std::string{"agent-7"});
  sched.run();
  auto during = info(s);
  EXPECT_EQ(during.state, session_state::spawning);
  EXPECT_EQ(during.metadata.count("agent"), 0u);
  EXPECT_EQ(shown(during), shown(after_crash("s-1")));
  commit_next();
  auto active = next_reply<session_info>();
  ASSERT_TRUE(active);
  EXPECT_EQ(active->state, session_state::active);
  EXPECT_EQ(active->metadata.at("agent"), "agent-7");
  EXPECT_EQ(shown(info(s)), shown(after_crash("s-1")));
  // Terminate: session:end, TERMINATING; the reply only once durable.
  self->send(s, terminate_atom::value, std::string{"done"});
  sched.run();
  EXPECT_FALSE(next_reply<session_info>());
  EXPECT_EQ(info(s).state, session_state::active);
  commit_next();
  EXPECT_EQ(next_reply<session_info>()->state, session_state::terminating);
  EXPECT_EQ(info(s).state, session_state::terminating);
}

TEST_F(durable_view_test, a_peer_forgotten_after_its_grace_is_written_before_it_shows) {
  auto s = new_session("s-1", svc);
  self->send(s, attach_atom::value, std::string{"peer-a"}, caf::actor{});
  sched.run();
  commit_next();
  ASSERT_TRUE(next_reply<session_info>());
  self->send(s, detach_atom::value, std::string{"connection_lost"});
  sched.run();
  commit_next();
  ASSERT_TRUE(next_reply<session_info>());
  advance(30s); // the grace ends: the peer is forgotten, with no event
  ASSERT_EQ(held->batches.size(), 1u) << "a snapshot-only batch";
  EXPECT_TRUE(held->batches.front().second.events.empty());
  EXPECT_EQ(info(s).peer, "peer-a");
  EXPECT_EQ(shown(info(s)), shown(after_crash("s-1")));
  commit_next();
  EXPECT_EQ(info(s).peer, "");
  EXPECT_EQ(shown(info(s)), shown(after_crash("s-1")));
}

TEST_F(durable_view_test, an_unload_answers_the_durable_final_state) {
  auto s = new_session("s-1", svc);
  self->send(s, message_atom::value, std::string{"{}"});
  sched.run();
  self->send(s, unload_atom::value);
  sched.run();
  EXPECT_FALSE(next_reply<uint64_t>());
  commit_next();
  EXPECT_TRUE(next_reply<uint64_t>());
  auto out = next_reply<session_info>();
  ASSERT_TRUE(out);
  EXPECT_EQ(out->message_count, 1u);
  EXPECT_FALSE(out->loaded);
  EXPECT_EQ(shown(*out), shown(after_crash("s-1")));
}
