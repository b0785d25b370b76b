// The session actor on CAF's deterministic test_coordinator: the output gate,
// sequence numbers, lifecycle, heartbeats and reconnects, hooks, and the
// bound on slow subscribers. Virtual time: a 30 s grace period costs nothing.
#include "test_support.hpp"

#include <nlohmann/json.hpp>

using namespace sessionhost;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

class session_test : public test::deterministic {
protected:
  session_test() {
    svc = make_services();
  }

  std::vector<std::string> names(const std::string& id) {
    return obs->names_for(id);
  }

  std::vector<std::string> stored_types(const std::string& id) {
    std::vector<std::string> out;
    for (auto& e : store->read_events(id, 0, 1000))
      out.push_back(e.type);
    return out;
  }

  json stored_data(const std::string& id, uint64_t seq) {
    auto evs = store->read_events(id, seq - 1, 1);
    return evs.empty() ? json{} : json::parse(evs.front().data);
  }

  // Registers a per-session hook the way embedded_host does: disabled in the
  // registry, enabled by the session (which fires an open-hook at once when
  // a peer is connected).
  hook_id add_hook(const session_actor& s, const std::string& id,
                   hook_kind kind, hook_fn fn) {
    auto hid = hooks->add(kind, id, std::move(fn), false);
    EXPECT_TRUE(ask<bool>(s, hook_added_atom::value, hid).value_or(false));
    return hid;
  }

  services_ptr svc;
};

} // namespace

TEST_F(session_test, events_reach_subscribers_only_once_durable) {
  auto s = new_session("s-1", svc);
  auto [sub, rec] = new_recorder();
  ASSERT_EQ(ask<uint64_t>(s, subscribe_atom::value, sub).value_or(99), 0u);
  store->fail_writes(true);
  auto pending = ask<uint64_t>(s, publish_atom::value, "log", R"({"message":"hi"})");
  EXPECT_FALSE(pending) << "no acknowledgement before the event is durable";
  EXPECT_EQ(rec->size(), 0u) << "no client sees a non-durable event";
  EXPECT_FALSE(obs->store_healthy.load());
  EXPECT_TRUE(store->read_events("s-1", 0, 10).empty());
  // The store comes back: the listener's retry writes, then releases.
  store->fail_writes(false);
  advance(2s);
  EXPECT_TRUE(obs->store_healthy.load());
  uint64_t acked = 0;
  self->receive([&](uint64_t seq) { acked = seq; },
                caf::after(std::chrono::seconds(0)) >> [] {});
  EXPECT_EQ(acked, 1u);
  // The published event, then the session's own report of the failure.
  EXPECT_EQ(rec->types(), (std::vector<std::string>{"log", "error"}));
  EXPECT_EQ(stored_types("s-1"), rec->types());
}

TEST_F(session_test, sequence_numbers_start_at_one_with_no_gaps) {
  auto s = new_session("s-1", svc);
  auto [sub, rec] = new_recorder();
  ask<uint64_t>(s, subscribe_atom::value, sub);
  for (uint64_t i = 1; i <= 5; ++i)
    EXPECT_EQ(ask<uint64_t>(s, publish_atom::value, "block:delta",
                            json{{"i", i}}.dump()).value_or(0), i);
  auto evs = rec->snapshot();
  ASSERT_EQ(evs.size(), 5u);
  for (uint64_t i = 0; i < 5; ++i) {
    EXPECT_EQ(evs[i].seq, i + 1);
    EXPECT_EQ(evs[i].session_id, "s-1");
    EXPECT_EQ(evs[i].epoch, 1u);
  }
  EXPECT_EQ(ask<session_info>(s, info_atom::value)->last_seq, 5u);
}

TEST_F(session_test, backlog_of_not_yet_durable_events_is_bounded) {
  config.max_backlog = 3;
  svc = make_services();
  auto s = new_session("s-1", svc);
  store->fail_writes(true);
  for (int i = 0; i < 3; ++i)
    self->send(s, publish_atom::value, std::string{"log"}, std::string{"{}"});
  sched.run();
  auto refused = ask<uint64_t>(s, publish_atom::value, "log", "{}");
  ASSERT_FALSE(refused);
  EXPECT_EQ(code_of(refused.error()), errc::overloaded);
  EXPECT_EQ(obs->counters.publishes_refused.load(), 1u);
  store->fail_writes(false);
  advance(2s);
  // Three publishes and the store-failure report; the refused one is absent.
  EXPECT_EQ(stored_types("s-1"),
            (std::vector<std::string>{"log", "log", "log", "error"}));
}

TEST_F(session_test, bad_publish_input_is_refused_and_changes_nothing) {
  auto s = new_session("s-1", svc);
  for (auto [type, data] : std::vector<std::pair<std::string, std::string>>{
         {"log", "{not json"}, {"", "{}"}, {std::string(65, 't'), "{}"}}) {
    auto r = ask<uint64_t>(s, publish_atom::value, type, data);
    ASSERT_FALSE(r);
    EXPECT_EQ(code_of(r.error()), errc::bad_request);
  }
  EXPECT_TRUE(store->read_events("s-1", 0, 10).empty());
  EXPECT_EQ(ask<session_info>(s, info_atom::value)->last_seq, 0u);
}

TEST_F(session_test, data_checked_where_it_entered_is_taken_as_it_is) {
  auto s = new_session("s-1", svc);
  // A json_text was checked by whoever made it (a frame's parse, REST's
  // body parse): the session stores it as it came.
  auto data = json_text::check(R"({"k" : [1, 2]})");
  ASSERT_TRUE(data);
  auto seq = ask<uint64_t>(s, publish_atom::value, std::string{"log"}, *data);
  ASSERT_TRUE(seq);
  auto stored = store->read_events("s-1", 0, 10);
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored.front().data, R"({"k" : [1, 2]})");
  // Its other checks still apply, and a refusal stores nothing.
  auto empty_type = ask<uint64_t>(s, publish_atom::value, std::string{}, *data);
  ASSERT_FALSE(empty_type);
  EXPECT_EQ(code_of(empty_type.error()), errc::bad_request);
  auto message = ask<uint64_t>(s, message_atom::value, *data);
  ASSERT_TRUE(message);
  EXPECT_EQ(stored_types("s-1"),
            (std::vector<std::string>{"log", "session:start", "message"}));
}

TEST_F(session_test, a_connections_publishes_of_one_commit_get_one_ack_message) {
  auto s = new_session("s-1", svc);
  auto conn = caf::actor_cast<caf::actor>(self);
  ASSERT_TRUE(ask<session_info>(s, attach_atom::value, "peer-a", conn));
  auto data = *json_text::check(R"({"n":1})");
  auto publish = [&](const std::string& type, const caf::actor& from,
                     uint64_t ask) {
    self->send(s, publish_atom::value, type, data, std::string{}, from, ask);
  };
  // Three publishes in one burst: one commit, one message with every
  // (ask, seq) pair; the peer's session_open was seq 1.
  publish("log", conn, 7);
  publish("log", conn, 8);
  publish("log", conn, 9);
  sched.run();
  std::vector<std::vector<uint64_t>> acks;
  auto drain = [&] {
    bool more = true;
    while (more)
      self->receive(
        [&](publish_acks_atom, std::vector<uint64_t>& x) {
          acks.push_back(std::move(x));
        },
        caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
  };
  drain();
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0], (std::vector<uint64_t>{7, 2, 8, 3, 9, 4}));
  // Refusals come at once, one each, and store nothing.
  auto [other, rec] = new_recorder();
  publish("", conn, 10);
  publish("log", other, 11);
  sched.run();
  std::vector<std::pair<uint64_t, errc>> refused;
  bool more = true;
  while (more)
    self->receive(
      [&](publish_refused_atom, uint64_t ask, caf::error& err) {
        refused.emplace_back(ask, code_of(err));
      },
      caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
  EXPECT_EQ(refused, (std::vector<std::pair<uint64_t, errc>>{
                       {10, errc::bad_request}}));
  EXPECT_EQ(stored_types("s-1"), (std::vector<std::string>{
                                   "session_open", "log", "log", "log"}));
}

TEST_F(session_test, type_code_and_hooks_publishing_text_that_is_not_json) {
  auto s = new_session("s-1", svc);
  // Hooks and session types cannot be refused: their text is checked in
  // the session, once, and published as a JSON string when it is not JSON.
  add_hook(s, "s-1", hook_kind::session_open, [](const hook_event& ev) {
    ev.control->publish("log", "{not json");
    ev.control->publish("log", R"({"fine":true})");
  });
  ask<session_info>(s, attach_atom::value, "peer-a", caf::actor{});
  EXPECT_EQ(stored_types("s-1"),
            (std::vector<std::string>{"session_open", "log", "log"}));
  EXPECT_EQ(stored_data("s-1", 2), json("{not json"));
  EXPECT_EQ(stored_data("s-1", 3), json::parse(R"({"fine":true})"));
}

TEST_F(session_test, lifecycle_runs_the_table_and_reports_status_changes) {
  auto s = new_session("s-1", svc);
  EXPECT_EQ(ask<session_info>(s, begin_spawn_atom::value)->state,
            session_state::spawning);
  auto active = ask<session_info>(s, activate_atom::value, "agent-7");
  ASSERT_TRUE(active);
  EXPECT_EQ(active->state, session_state::active);
  EXPECT_EQ(active->metadata.at("agent"), "agent-7");
  EXPECT_EQ(ask<session_info>(s, terminate_atom::value, "done")->state,
            session_state::terminating);
  EXPECT_EQ(ask<session_info>(s, cleanup_atom::value)->state,
            session_state::cleaned);
  // session:end comes before the state change it announces.
  EXPECT_EQ(stored_types("s-1"),
            (std::vector<std::string>{"status:changed", "status:changed",
                                      "session:end", "status:changed",
                                      "status:changed"}));
  auto change = stored_data("s-1", 4);
  EXPECT_EQ(change["state"], "TERMINATING");
  EXPECT_EQ(change["previous"], "ACTIVE");
  EXPECT_EQ(change["reason"], "done");
  EXPECT_EQ(stored_data("s-1", 3)["reason"], "done");
  EXPECT_EQ(store->load("s-1")->state, session_state::cleaned);
}

TEST_F(session_test, invalid_transitions_and_closed_sessions_change_nothing) {
  auto s = new_session("s-1", svc);
  auto bad = ask<session_info>(s, activate_atom::value, "a");
  ASSERT_FALSE(bad);
  EXPECT_EQ(code_of(bad.error()), errc::invalid_transition);
  EXPECT_EQ(message_of(bad.error()), "invalid transition: CREATED + ACTIVATE");
  EXPECT_FALSE(ask<session_info>(s, cleanup_atom::value));
  EXPECT_EQ(ask<session_info>(s, info_atom::value)->state, session_state::created);
  EXPECT_TRUE(store->read_events("s-1", 0, 10).empty());
  // Early cancel, then everything on a CLEANED session is refused.
  ask<session_info>(s, terminate_atom::value, "cancel");
  ask<session_info>(s, cleanup_atom::value);
  auto before = store->read_events("s-1", 0, 100).size();
  EXPECT_EQ(code_of(ask<session_info>(s, begin_spawn_atom::value).error()),
            errc::invalid_transition);
  EXPECT_EQ(code_of(ask<session_info>(s, terminate_atom::value, "x").error()),
            errc::invalid_transition);
  EXPECT_EQ(code_of(ask<uint64_t>(s, publish_atom::value, "log", "{}").error()),
            errc::conflict);
  EXPECT_EQ(code_of(ask<uint64_t>(s, message_atom::value, "{}").error()),
            errc::conflict);
  EXPECT_EQ(code_of(ask<session_info>(s, attach_atom::value, "p", caf::actor{})
                      .error()),
            errc::conflict);
  EXPECT_EQ(store->read_events("s-1", 0, 100).size(), before);
  EXPECT_EQ(ask<session_info>(s, info_atom::value)->state, session_state::cleaned);
}

TEST_F(session_test, terminating_twice_is_idempotent) {
  auto s = new_session("s-1", svc);
  ask<session_info>(s, terminate_atom::value, "one");
  auto n = store->read_events("s-1", 0, 100).size();
  EXPECT_EQ(ask<session_info>(s, terminate_atom::value, "two")->state,
            session_state::terminating);
  EXPECT_EQ(store->read_events("s-1", 0, 100).size(), n);
}

TEST_F(session_test, first_message_of_a_new_session_emits_session_start) {
  auto s = new_session("s-1", svc);
  EXPECT_EQ(ask<uint64_t>(s, message_atom::value, R"({"text":"a"})").value_or(0), 1u);
  EXPECT_EQ(ask<uint64_t>(s, message_atom::value, R"({"text":"b"})").value_or(0), 3u);
  EXPECT_EQ(stored_types("s-1"),
            (std::vector<std::string>{"session:start", "message", "message"}));
  EXPECT_EQ(ask<session_info>(s, info_atom::value)->message_count, 2u);
  EXPECT_EQ(names("s-1"), (std::vector<std::string>{"session:start"}));
}

TEST_F(session_test, missed_heartbeat_emits_timeout_then_close) {
  auto s = new_session("s-1", svc);
  std::vector<std::string> calls;
  add_hook(s, "s-1", hook_kind::heartbeat_timeout,
           [&](const hook_event&) { calls.push_back("heartbeat_timeout"); });
  add_hook(s, "s-1", hook_kind::session_close, [&](const hook_event& ev) {
    calls.push_back("session_close:" + ev.metadata.at("reason"));
  });
  ASSERT_TRUE(ask<session_info>(s, attach_atom::value, "peer-a", caf::actor{}));
  advance(9s);
  EXPECT_TRUE(calls.empty());
  advance(1s);
  EXPECT_EQ(calls, (std::vector<std::string>{"heartbeat_timeout",
                                             "session_close:heartbeat_timeout"}));
  EXPECT_EQ(names("s-1"), (std::vector<std::string>{"session_open",
                                                    "heartbeat_timeout",
                                                    "session_close"}));
  EXPECT_EQ(obs->records_for("s-1").back().metadata.at("reason"),
            "heartbeat_timeout");
  EXPECT_EQ(stored_types("s-1"),
            (std::vector<std::string>{"session_open", "heartbeat_timeout",
                                      "session_close"}));
  auto info = ask<session_info>(s, info_atom::value);
  EXPECT_FALSE(info->peer_connected);
  EXPECT_EQ(info->state, session_state::created) << "peers never change state";
}

TEST_F(session_test, heartbeats_keep_the_peer_and_each_session_times_out_alone) {
  auto a = new_session("s-a", svc);
  auto b = new_session("s-b", svc);
  ask<session_info>(a, attach_atom::value, "peer-a", caf::actor{});
  ask<session_info>(b, attach_atom::value, "peer-b", caf::actor{});
  for (int i = 0; i < 4; ++i) {
    advance(4s);
    ASSERT_TRUE(ask<micros>(a, heartbeat_atom::value)); // only a beats
  }
  EXPECT_TRUE(ask<session_info>(a, info_atom::value)->peer_connected);
  EXPECT_FALSE(ask<session_info>(b, info_atom::value)->peer_connected);
  EXPECT_EQ(names("s-a"), (std::vector<std::string>{"session_open"}));
  EXPECT_EQ(names("s-b"), (std::vector<std::string>{"session_open",
                                                    "heartbeat_timeout",
                                                    "session_close"}));
  // a stops beating too: now it times out, 10 s after its last beat.
  advance(9s);
  EXPECT_TRUE(ask<session_info>(a, info_atom::value)->peer_connected);
  advance(1s);
  EXPECT_FALSE(ask<session_info>(a, info_atom::value)->peer_connected);
}

TEST_F(session_test, lost_connection_reconnects_within_grace) {
  auto s = new_session("s-1", svc);
  auto conn = sys.spawn([]() -> caf::behavior { return {[](int) {}}; });
  ask<session_info>(s, attach_atom::value, "peer-a", conn);
  caf::anon_send_exit(conn, caf::exit_reason::kill); // the socket drops
  sched.run();
  auto info = ask<session_info>(s, info_atom::value);
  EXPECT_FALSE(info->peer_connected);
  EXPECT_EQ(obs->records_for("s-1").back().metadata.at("reason"),
            "connection_lost");
  // Another identity may not take the session during the grace period.
  auto other = ask<session_info>(s, attach_atom::value, "peer-b", caf::actor{});
  ASSERT_FALSE(other);
  EXPECT_EQ(code_of(other.error()), errc::conflict);
  advance(20s);
  auto back = ask<session_info>(s, attach_atom::value, "peer-a", caf::actor{});
  ASSERT_TRUE(back);
  EXPECT_EQ(back->reconnects, 1u);
  auto open = obs->records_for("s-1").back();
  EXPECT_EQ(open.name, "session_open");
  EXPECT_EQ(open.metadata.at("reconnects"), "1");
  advance(15s); // the old grace timer must not fire on the new connection
  EXPECT_EQ(ask<session_info>(s, info_atom::value)->peer, "peer-a");
}

TEST_F(session_test, grace_expiry_keeps_the_session_without_a_peer_by_default) {
  auto s = new_session("s-1", svc);
  ask<session_info>(s, attach_atom::value, "peer-a", caf::actor{});
  ask<session_info>(s, detach_atom::value, "connection_lost");
  advance(30s);
  auto info = ask<session_info>(s, info_atom::value);
  EXPECT_EQ(info->peer, "");
  EXPECT_EQ(info->state, session_state::created);
  // With no peer left anyone may attach; it is not a reconnect.
  auto fresh = ask<session_info>(s, attach_atom::value, "peer-b", caf::actor{});
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->reconnects, 0u);
}

TEST_F(session_test, grace_expiry_terminates_when_configured) {
  config.on_grace_expired = grace_policy::terminate;
  svc = make_services();
  auto s = new_session("s-1", svc);
  ask<session_info>(s, begin_spawn_atom::value);
  ask<session_info>(s, activate_atom::value, "");
  ask<session_info>(s, attach_atom::value, "peer-a", caf::actor{});
  ask<session_info>(s, detach_atom::value, "connection_lost");
  advance(30s);
  EXPECT_EQ(ask<session_info>(s, info_atom::value)->state, session_state::cleaned);
  auto types = stored_types("s-1");
  ASSERT_GE(types.size(), 3u);
  EXPECT_EQ(types[types.size() - 3], "session:end");
  auto last = store->read_events("s-1", 0, 100);
  EXPECT_EQ(json::parse(last[last.size() - 2].data)["reason"],
            "reconnect_grace_expired");
}

TEST_F(session_test, heartbeat_timeout_terminates_when_configured) {
  config.on_heartbeat_timeout = heartbeat_policy::terminate;
  svc = make_services();
  auto s = new_session("s-1", svc);
  ask<session_info>(s, attach_atom::value, "peer-a", caf::actor{});
  advance(10s);
  EXPECT_EQ(ask<session_info>(s, info_atom::value)->state, session_state::cleaned);
  EXPECT_EQ(names("s-1"),
            (std::vector<std::string>{"session_open", "heartbeat_timeout",
                                      "session_close", "session:end",
                                      "status:changed", "status:changed"}));
}

TEST_F(session_test, detach_reasons_and_bad_input) {
  auto s = new_session("s-1", svc);
  EXPECT_EQ(code_of(ask<session_info>(s, detach_atom::value, "manual").error()),
            errc::conflict) << "no peer to detach";
  EXPECT_EQ(code_of(ask<session_info>(s, attach_atom::value, "", caf::actor{})
                      .error()),
            errc::bad_request);
  ask<session_info>(s, attach_atom::value, "peer-a", caf::actor{});
  EXPECT_EQ(code_of(ask<session_info>(s, detach_atom::value, "bored").error()),
            errc::bad_request);
  EXPECT_TRUE(ask<session_info>(s, info_atom::value)->peer_connected);
  EXPECT_EQ(code_of(ask<session_info>(s, attach_atom::value, "peer-b",
                                      caf::actor{}).error()),
            errc::conflict) << "only one peer per session";
  ASSERT_TRUE(ask<session_info>(s, detach_atom::value, "manual"));
  EXPECT_EQ(obs->records_for("s-1").back().metadata.at("reason"), "manual");
  advance(60s); // no grace period after a manual detach: nothing happens
  EXPECT_EQ(ask<session_info>(s, info_atom::value)->peer, "peer-a");
}

// Seed 000's usage scenario, end to end.
TEST_F(session_test, seed_000_hook_scenario) {
  auto s = new_session("s-42", svc);
  std::vector<std::string> calls;
  auto on_open = [&](const hook_event& ev) {
    calls.push_back("open " + ev.session_id
                    + (ev.metadata.count("reconnects")
                         ? " reconnects=" + ev.metadata.at("reconnects")
                         : ""));
  };
  auto on_close = [&](const hook_event& ev) {
    calls.push_back("close " + ev.metadata.at("reason"));
  };
  auto on_timeout = [&](const hook_event&) { calls.push_back("timeout"); };
  add_hook(s, "s-42", hook_kind::session_open, on_open);
  auto close_id = add_hook(s, "s-42", hook_kind::session_close, on_close);
  add_hook(s, "s-42", hook_kind::heartbeat_timeout, on_timeout);
  EXPECT_TRUE(hooks->remove(hook_kind::session_close, close_id));
  add_hook(s, "s-42", hook_kind::session_close, on_close);
  ask<session_info>(s, attach_atom::value, "client", caf::actor{});
  ask<session_info>(s, detach_atom::value, "manual");   // session.disconnect()
  ask<session_info>(s, attach_atom::value, "client", caf::actor{}); // reconnect()
  EXPECT_EQ(calls, (std::vector<std::string>{"open s-42", "close manual",
                                             "open s-42 reconnects=1"}));
  EXPECT_EQ(hooks->clear("s-42"), 3u); // clear_session_hooks()
  ask<session_info>(s, detach_atom::value, "manual");
  advance(60s);
  EXPECT_EQ(calls.size(), 3u) << "no hook fires after clear_session_hooks";
  EXPECT_EQ(names("s-42"),
            (std::vector<std::string>{"session_open", "session_close",
                                      "session_open", "session_close"}));
}

TEST_F(session_test, open_hook_on_a_connected_session_fires_at_once) {
  auto s = new_session("s-1", svc);
  ask<session_info>(s, attach_atom::value, "peer-a", caf::actor{});
  int fired = 0;
  std::string peer;
  add_hook(s, "s-1", hook_kind::session_open, [&](const hook_event& ev) {
    ++fired;
    peer = ev.metadata.at("peer");
  });
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(peer, "peer-a");
  // A close-hook registered now does not fire: nothing closed.
  int closes = 0;
  add_hook(s, "s-1", hook_kind::session_close, [&](const hook_event&) { ++closes; });
  EXPECT_EQ(closes, 0);
}

TEST_F(session_test, a_hook_that_causes_an_emission_does_not_recurse) {
  auto s = new_session("s-1", svc);
  int opens = 0, closes = 0;
  add_hook(s, "s-1", hook_kind::session_open, [&](const hook_event& ev) {
    ++opens;
    ev.control->detach_peer("manual"); // emits session_close from inside
  });
  add_hook(s, "s-1", hook_kind::session_close, [&](const hook_event&) { ++closes; });
  ask<session_info>(s, attach_atom::value, "peer-a", caf::actor{});
  EXPECT_EQ(opens, 1);
  EXPECT_EQ(closes, 0) << "the guard keeps hooks from re-entering";
  EXPECT_EQ(names("s-1"), (std::vector<std::string>{"session_open",
                                                    "session_close"}));
  EXPECT_FALSE(ask<session_info>(s, info_atom::value)->peer_connected);
  // Outside a hook, close-hooks fire as usual.
  add_hook(s, "s-1", hook_kind::session_open, [](const hook_event&) {});
  hooks->clear("s-1");
  add_hook(s, "s-1", hook_kind::session_close, [&](const hook_event&) { ++closes; });
  ask<session_info>(s, attach_atom::value, "peer-a", caf::actor{});
  ask<session_info>(s, detach_atom::value, "manual");
  EXPECT_EQ(closes, 1);
}

TEST_F(session_test, a_throwing_hook_is_logged_and_the_session_goes_on) {
  auto s = new_session("s-1", svc);
  int later = 0;
  add_hook(s, "s-1", hook_kind::session_open,
           [](const hook_event&) { throw std::runtime_error("boom"); });
  add_hook(s, "s-1", hook_kind::session_open, [&](const hook_event&) { ++later; });
  ASSERT_TRUE(ask<session_info>(s, attach_atom::value, "peer-a", caf::actor{}));
  EXPECT_EQ(later, 1);
  EXPECT_EQ(obs->counters.hook_failures.load(), 1u);
  EXPECT_TRUE(ask<uint64_t>(s, publish_atom::value, "log", "{}"));
}

TEST_F(session_test, host_wide_hooks_apply_to_every_session) {
  std::vector<std::string> opened;
  hooks->add(hook_kind::session_open, "",
             [&](const hook_event& ev) { opened.push_back(ev.session_id); });
  auto a = new_session("s-a", svc);
  auto b = new_session("s-b", svc);
  ask<session_info>(a, attach_atom::value, "p1", caf::actor{});
  ask<session_info>(b, attach_atom::value, "p2", caf::actor{});
  EXPECT_EQ(opened, (std::vector<std::string>{"s-a", "s-b"}));
}

TEST_F(session_test, a_slow_subscriber_is_dropped_and_never_stalls_the_session) {
  config.subscriber_window = 3;
  svc = make_services();
  auto s = new_session("s-1", svc);
  auto [fast, fast_rec] = new_recorder();
  auto [slow, slow_rec] = new_recorder(true); // never confirms
  ask<uint64_t>(s, subscribe_atom::value, fast);
  ask<uint64_t>(s, subscribe_atom::value, slow);
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 2; ++i)
      self->send(s, publish_atom::value, std::string{"block:delta"},
                 std::string{"{}"});
    sched.run();
  }
  int acks = 0;
  for (int i = 0; i < 20; ++i)
    self->receive([&](uint64_t) { ++acks; }, caf::after(0s) >> [] {});
  EXPECT_EQ(acks, 10) << "every publish acknowledged";
  EXPECT_EQ(fast_rec->size(), 10u);
  EXPECT_EQ(slow_rec->size(), 2u);
  ASSERT_EQ(slow_rec->lagged.size(), 1u);
  EXPECT_EQ(slow_rec->lagged[0], (std::pair<std::string, uint64_t>{"s-1", 2}));
  EXPECT_EQ(obs->counters.subscribers_dropped.load(), 1u);
}

TEST_F(session_test, a_crediting_subscriber_stays_while_it_confirms_and_lags_when_not) {
  // Subscribed with credits, events come as plain messages: neither
  // recorder ever replies. One confirms by credit_atom, the other never.
  config.subscriber_window = 3;
  svc = make_services();
  auto s = new_session("s-1", svc);
  auto [confirms, confirms_rec] = new_recorder(true);
  auto [silent, silent_rec] = new_recorder(true);
  ASSERT_TRUE(ask<uint64_t>(s, subscribe_atom::value, confirms, true));
  ASSERT_TRUE(ask<uint64_t>(s, subscribe_atom::value, silent, true));
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 2; ++i)
      self->send(s, publish_atom::value, std::string{"block:delta"},
                 std::string{"{}"});
    sched.run();
    self->send(s, credit_atom::value, confirms, uint64_t{2});
    sched.run();
  }
  int acks = 0;
  for (int i = 0; i < 20; ++i)
    self->receive([&](uint64_t) { ++acks; }, caf::after(0s) >> [] {});
  EXPECT_EQ(acks, 10) << "every publish acknowledged";
  EXPECT_EQ(confirms_rec->size(), 10u);
  EXPECT_TRUE(confirms_rec->lagged.empty());
  EXPECT_EQ(silent_rec->size(), 2u);
  ASSERT_EQ(silent_rec->lagged.size(), 1u);
  EXPECT_EQ(silent_rec->lagged[0], (std::pair<std::string, uint64_t>{"s-1", 2}));
  // A credit from an actor that is not subscribed changes nothing.
  self->send(s, credit_atom::value, silent, uint64_t{100});
  self->send(s, credit_atom::value, caf::actor{}, uint64_t{100});
  sched.run();
  EXPECT_TRUE(ask<uint64_t>(s, publish_atom::value, "log", "{}"));
  EXPECT_EQ(confirms_rec->size(), 11u);
  EXPECT_EQ(silent_rec->size(), 2u);
}

TEST_F(session_test, unload_flushes_and_the_snapshot_restores_the_session) {
  auto s = new_session("s-1", svc);
  auto [sub, rec] = new_recorder();
  ask<uint64_t>(s, subscribe_atom::value, sub);
  ask<session_info>(s, begin_spawn_atom::value);
  ask<session_info>(s, activate_atom::value, "agent");
  ask<uint64_t>(s, message_atom::value, "{}");
  ask<session_info>(s, attach_atom::value, "peer-a", caf::actor{});
  auto before = ask<session_info>(s, info_atom::value);
  auto out = ask<session_info>(s, unload_atom::value);
  ASSERT_TRUE(out);
  EXPECT_FALSE(out->loaded);
  EXPECT_EQ(rec->unloaded.size(), 1u);
  // Loading again: snapshot plus the events after it.
  auto snap = store->load("s-1");
  ASSERT_TRUE(snap);
  auto again = spawn_session(sys, session_start{*snap,
                                                store->read_events("s-1", snap->last_seq, 100),
                                                svc, {}});
  to_stop.push_back(caf::actor_cast<caf::actor>(again));
  sched.run();
  auto after = ask<session_info>(again, info_atom::value);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->state, session_state::active);
  EXPECT_EQ(after->message_count, before->message_count);
  EXPECT_EQ(after->metadata, before->metadata);
  EXPECT_EQ(after->last_seq, out->last_seq);
  EXPECT_EQ(after->peer, "peer-a");
  EXPECT_FALSE(after->peer_connected) << "the connection did not survive";
  // The same peer coming back is a reconnect.
  EXPECT_EQ(ask<session_info>(again, attach_atom::value, "peer-a", caf::actor{})
              ->reconnects, 1u);
}

TEST(replay, events_after_a_snapshot_are_folded_into_it) {
  session_info snap;
  snap.id = "s-1";
  snap.state = session_state::spawning;
  snap.last_seq = 2;
  snap.message_count = 1;
  std::vector<event> evs = {
    {"s-1", 2, "message", "{}", 10, 1, ""}, // already in the snapshot
    {"s-1", 3, "status:changed", R"({"state":"ACTIVE","previous":"SPAWNING"})", 11, 1, ""},
    {"s-1", 4, "message", "{}", 12, 1, ""},
    {"s-1", 5, "session_open", R"({"peer":"p","reconnects":"2"})", 13, 1, ""},
  };
  replay_into(snap, evs);
  EXPECT_EQ(snap.state, session_state::active);
  EXPECT_EQ(snap.message_count, 2u);
  EXPECT_EQ(snap.last_seq, 5u);
  EXPECT_EQ(snap.peer, "p");
  EXPECT_EQ(snap.reconnects, 2u);
  EXPECT_EQ(snap.updated_at, 13);
}

TEST_F(session_test, only_the_peer_connection_acts_as_the_peer) {
  auto s = new_session("s-1", svc);
  auto [old_conn, r1] = new_recorder();
  auto [new_conn, r2] = new_recorder();
  ASSERT_TRUE(ask<session_info>(s, attach_atom::value, "peer-a", old_conn));
  // The same peer attaches again on another connection (a reconnect); the
  // old one is still open but no longer the peer's.
  auto back = ask<session_info>(s, attach_atom::value, "peer-a", new_conn);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->reconnects, 1u);
  auto before = stored_types("s-1");
  EXPECT_EQ(code_of(ask<micros>(s, heartbeat_atom::value, old_conn).error()),
            errc::forbidden);
  EXPECT_EQ(code_of(ask<uint64_t>(s, publish_atom::value, "log", "{}", "",
                                  old_conn).error()),
            errc::forbidden);
  EXPECT_EQ(code_of(ask<uint64_t>(s, publish_atom::value, "log", "{}", "k-1",
                                  old_conn).error()),
            errc::forbidden);
  EXPECT_EQ(code_of(ask<session_info>(s, detach_atom::value, "manual",
                                      old_conn).error()),
            errc::forbidden);
  EXPECT_EQ(stored_types("s-1"), before) << "a refusal changes nothing";
  auto now = ask<session_info>(s, info_atom::value);
  EXPECT_TRUE(now->peer_connected);
  EXPECT_EQ(now->reconnects, 1u);
  // The current connection acts as the peer.
  EXPECT_TRUE(ask<micros>(s, heartbeat_atom::value, new_conn));
  EXPECT_EQ(ask<uint64_t>(s, publish_atom::value, "log", "{}", "",
                          new_conn).value_or(0),
            before.size() + 1);
  auto gone = ask<session_info>(s, detach_atom::value, "manual", new_conn);
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->peer_connected);
  // No peer now: a publish from a connection is refused, a heartbeat too.
  EXPECT_EQ(code_of(ask<uint64_t>(s, publish_atom::value, "log", "{}", "",
                                  new_conn).error()),
            errc::forbidden);
  EXPECT_EQ(code_of(ask<micros>(s, heartbeat_atom::value, new_conn).error()),
            errc::conflict);
}
