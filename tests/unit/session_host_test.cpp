// The session host's operations end to end on a real scheduler: create,
// locate, load/unload on demand, list/count, terminate, passivation, hooks
// that survive passivation, shutdown and a restart on the same store.
#include "real_system.hpp"

#include "held_type.hpp"
#include "test_support.hpp"

#include "host/session_host.hpp"
#include "host/session_type.hpp"

#include <spdlog/spdlog.h>

#include <set>

using namespace sessionhost;
using namespace std::chrono_literals;

namespace {

class host_test : public test::real_system {
protected:
  host_test() { start(); }

  session_info info_of(const std::string& id) {
    auto i = call<session_info>(session(id), info_atom::value);
    EXPECT_TRUE(i);
    return i ? *i : session_info{};
  }

  bool loaded(const std::string& id) {
    return call<bool>(host->host(), is_loaded_atom::value, id).value_or(false);
  }

  /// `n` echo sessions, each with one message handled (and so stored).
  std::vector<std::string> echo_sessions_with_a_message(int n) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      auto c = create("echo");
      if (!c) {
        ADD_FAILURE() << message_of(c.error());
        break;
      }
      EXPECT_TRUE(call<uint64_t>(session(c->id), message_atom::value,
                                 std::string{"{}"}));
      ids.push_back(c->id);
    }
    return ids;
  }

  session_page list(session_filter f, uint64_t limit = 100,
                    std::string cursor = "") {
    auto p = call<session_page>(host->host(), list_atom::value, f, cursor, limit);
    EXPECT_TRUE(p);
    return p ? *p : session_page{};
  }
};

} // namespace

TEST_F(host_test, create_then_locate_by_id_and_role) {
  auto created = create("agent", "auth", {{"user", "ada"}});
  ASSERT_TRUE(created) << message_of(created.error());
  EXPECT_EQ(created->state, session_state::created);
  EXPECT_TRUE(created->loaded);
  EXPECT_EQ(created->metadata.at("user"), "ada");
  EXPECT_EQ(info_of(created->id).role, "auth");
  auto by_role = call<session_actor>(host->host(), get_by_role_atom::value, "auth");
  ASSERT_TRUE(by_role);
  EXPECT_EQ(*by_role, session(created->id));
  auto ids = call<std::vector<std::string>>(host->host(), loaded_ids_atom::value);
  EXPECT_EQ(*ids, std::vector<std::string>{created->id});
  EXPECT_EQ(store->load(created->id)->type, "agent");
}

TEST_F(host_test, a_session_actor_that_dies_is_loaded_again_from_the_store) {
  auto created = create("agent", "", {{"user", "ada"}});
  ASSERT_TRUE(created) << message_of(created.error());
  auto first = session(created->id);
  caf::anon_send_exit(first, caf::exit_reason::kill);
  // The host forgets it once it sees the actor go (bounded: 200 x 50 ms).
  for (int i = 0; i < 200 && loaded(created->id); ++i)
    std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(loaded(created->id));
  auto again = session(created->id); // loads it on demand
  EXPECT_NE(again, first);
  EXPECT_EQ(info_of(created->id).metadata.at("user"), "ada");
  EXPECT_TRUE(loaded(created->id));
}

TEST_F(host_test, an_agent_create_is_answered_by_the_host_once_stored) {
  // agent's start is quiet: the host answers for the new session (its actor
  // runs only once something reaches it), with what the session then shows.
  auto created = create("agent", "", {{"user", "ada"}});
  ASSERT_TRUE(created) << message_of(created.error());
  auto stored = store->load(created->id);
  ASSERT_TRUE(stored) << "acknowledged only once stored";
  EXPECT_EQ(stored->state, session_state::created);
  EXPECT_EQ(*created, info_of(created->id)) << "the session agrees";
  // The outside agent drives it from there.
  auto spawning = call<session_info>(session(created->id), begin_spawn_atom::value);
  ASSERT_TRUE(spawning) << message_of(spawning.error());
  EXPECT_EQ(spawning->state, session_state::spawning);
  EXPECT_EQ(store->load(created->id)->state, session_state::spawning);
}

TEST_F(host_test, a_role_is_held_until_its_session_is_cleaned) {
  auto first = create("echo", "auth");
  ASSERT_TRUE(first);
  auto dup = create("echo", "auth");
  ASSERT_FALSE(dup);
  EXPECT_EQ(code_of(dup.error()), errc::conflict);
  // Unloaded, it still holds the role.
  ASSERT_TRUE(call<session_info>(host->host(), unload_atom::value, first->id));
  EXPECT_EQ(code_of(create("echo", "auth").error()), errc::conflict);
  EXPECT_EQ(call<uint64_t>(host->host(), count_atom::value, session_filter{}).value_or(0), 1u);
  auto done = call<session_info>(host->host(), terminate_atom::value, first->id,
                                 std::string{"finished"});
  ASSERT_TRUE(done) << message_of(done.error());
  EXPECT_EQ(done->state, session_state::cleaned);
  EXPECT_TRUE(create("echo", "auth"));
}

TEST_F(host_test, a_burst_of_creates_is_stored_together_and_a_role_goes_to_one) {
  // 200 creates in flight at once, 5 of them for the same role: they are
  // committed in bursts, each stored exactly once, one role holder.
  for (int i = 0; i < 200; ++i)
    self->send(host->host(), create_atom::value, std::string{"echo"},
               i % 40 == 0 ? std::string{"shared"} : "r" + std::to_string(i),
               metadata_map{});
  std::set<std::string> ids;
  int conflicts = 0;
  for (int i = 0; i < 200; ++i)
    self->receive(
      [&](session_info& info) {
        EXPECT_EQ(info.state, session_state::active);
        ids.insert(info.id);
      },
      [&](caf::error& err) {
        EXPECT_EQ(code_of(err), errc::conflict) << message_of(err);
        ++conflicts;
      },
      caf::after(std::chrono::seconds(30)) >> [&] { ADD_FAILURE() << "no reply"; });
  EXPECT_EQ(ids.size(), 196u);
  EXPECT_EQ(conflicts, 4);
  EXPECT_EQ(call<uint64_t>(host->host(), count_atom::value, session_filter{})
              .value_or(0),
            196u);
  session_filter shared;
  shared.role = "shared";
  EXPECT_EQ(list(shared).sessions.size(), 1u);
  for (auto& id : ids)
    EXPECT_EQ(store->load(id)->id, id);
}

TEST_F(host_test, a_batch_create_makes_every_session_or_none) {
  auto count = [&] {
    return call<uint64_t>(host->host(), count_atom::value, session_filter{})
      .value_or(999);
  };
  using specs = std::vector<session_spec>;
  auto made = call<std::vector<session_info>>(
    host->host(), create_atom::value,
    specs{{"echo", "b1", {{"k", "v"}}}, {"agent", "", {}}, {"echo", "b2", {}}});
  ASSERT_TRUE(made) << message_of(made.error());
  ASSERT_EQ(made->size(), 3u);
  EXPECT_EQ((*made)[0].role, "b1");
  EXPECT_EQ((*made)[0].metadata.at("k"), "v");
  EXPECT_EQ((*made)[0].state, session_state::active);
  EXPECT_EQ((*made)[1].type, "agent");
  EXPECT_EQ((*made)[1].state, session_state::created);
  EXPECT_EQ((*made)[2].role, "b2");
  for (auto& info : *made) {
    EXPECT_TRUE(info.loaded);
    EXPECT_EQ(store->load(info.id)->state, info.state) << "durable";
    EXPECT_EQ(info_of(info.id), info);
  }
  EXPECT_EQ(count(), 3u);
  // Each of these is refused as a whole, and nothing of it is stored.
  auto refused = [&](specs batch, errc expected) {
    auto r = call<std::vector<session_info>>(host->host(), create_atom::value,
                                             batch);
    ASSERT_FALSE(r);
    EXPECT_EQ(code_of(r.error()), expected) << message_of(r.error());
  };
  refused({{"echo", "", {}}, {"has space", "", {}}}, errc::bad_request);
  refused({{"echo", "dup", {}}, {"echo", "dup", {}}}, errc::conflict);
  refused({{"echo", "", {}}, {"echo", "b1", {}}}, errc::conflict);
  refused({}, errc::bad_request);
  refused(specs(10'001, session_spec{"echo", "", {}}), errc::bad_request);
  EXPECT_EQ(count(), 3u);
}

TEST_F(host_test, a_burst_of_loads_activates_each_session_once) {
  auto ids = echo_sessions_with_a_message(50);
  ASSERT_EQ(ids.size(), 50u);
  for (auto& id : ids)
    ASSERT_TRUE(call<session_info>(host->host(), unload_atom::value, id));
  // Every id asked for twice at once, plus an unknown one: one activation
  // each (epoch 2), the unknown one not found, nothing else touched.
  for (int round = 0; round < 2; ++round)
    for (auto& id : ids)
      self->send(host->host(), load_atom::value, id);
  self->send(host->host(), load_atom::value, std::string{"ghost"});
  int loaded_ok = 0, not_found = 0;
  for (size_t i = 0; i < 2 * ids.size() + 1; ++i)
    self->receive(
      [&](session_info& info) {
        EXPECT_EQ(info.message_count, 1u);
        EXPECT_EQ(info.epoch, 2u) << "activated once";
        ++loaded_ok;
      },
      [&](caf::error& err) {
        EXPECT_EQ(code_of(err), errc::not_found) << message_of(err);
        ++not_found;
      },
      caf::after(std::chrono::seconds(30)) >> [&] { ADD_FAILURE() << "no reply"; });
  EXPECT_EQ(loaded_ok, 100);
  EXPECT_EQ(not_found, 1);
  for (auto& id : ids)
    EXPECT_EQ(store->load(id)->epoch, 2u);
  auto loaded_ids = call<std::vector<std::string>>(host->host(), loaded_ids_atom::value);
  EXPECT_EQ(loaded_ids->size(), ids.size());
}

TEST_F(host_test, loads_of_one_quiet_start_session_at_once_all_get_its_info) {
  // agent starts quietly: the host answers its loads with the session as
  // loaded; three loads gathered together each get all of it.
  auto c = create("agent", "", {{"user", "ada"}});
  ASSERT_TRUE(c);
  ASSERT_TRUE(call<session_info>(host->host(), unload_atom::value, c->id));
  for (int i = 0; i < 3; ++i)
    self->send(host->host(), load_atom::value, c->id);
  int answered = 0;
  for (int i = 0; i < 3; ++i)
    self->receive(
      [&](session_info& info) {
        EXPECT_EQ(info.id, c->id);
        EXPECT_TRUE(info.loaded);
        EXPECT_EQ(info.epoch, 2u) << "activated once";
        EXPECT_EQ(info.metadata.at("user"), "ada");
        ++answered;
      },
      [&](caf::error& err) { ADD_FAILURE() << message_of(err); },
      caf::after(std::chrono::seconds(30)) >> [&] { ADD_FAILURE() << "no reply"; });
  EXPECT_EQ(answered, 3);
}

TEST_F(host_test, loads_racing_unloads_wait_for_them_and_activate_once) {
  auto ids = echo_sessions_with_a_message(30);
  ASSERT_EQ(ids.size(), 30u);
  // Each session unloaded and, before that is done, loaded again: the load
  // waits for the unload, then activates the session once (epoch 2) with
  // what the unload stored.
  for (auto& id : ids) {
    self->send(host->host(), unload_atom::value, id);
    self->send(host->host(), load_atom::value, id);
  }
  int loaded_ok = 0, unloaded = 0;
  for (size_t i = 0; i < 2 * ids.size(); ++i)
    self->receive(
      [&](session_info& info) {
        EXPECT_EQ(info.message_count, 1u) << info.id;
        if (info.loaded) {
          EXPECT_EQ(info.epoch, 2u) << "activated once: " << info.id;
          ++loaded_ok;
        } else {
          ++unloaded;
        }
      },
      [&](caf::error& err) { ADD_FAILURE() << message_of(err); },
      caf::after(std::chrono::seconds(30)) >> [&] { ADD_FAILURE() << "no reply"; });
  EXPECT_EQ(loaded_ok, 30);
  EXPECT_EQ(unloaded, 30);
  for (auto& id : ids) {
    EXPECT_TRUE(loaded(id)) << id;
    EXPECT_EQ(store->load(id)->epoch, 2u) << id;
  }
}

TEST_F(host_test, a_batch_load_racing_unloads_waits_for_them_and_activates_once) {
  // echo sessions do not start quietly: each batch answer is the session's
  // own info once loaded. Each is being unloaded when the batch asks for it.
  auto ids = echo_sessions_with_a_message(30);
  ASSERT_EQ(ids.size(), 30u);
  for (auto& id : ids)
    self->send(host->host(), unload_atom::value, id);
  auto asked = ids;
  asked.push_back("ghost");
  asked.push_back(ids.front()); // twice
  self->send(host->host(), load_atom::value, asked);
  int unloaded = 0;
  std::vector<load_result> got;
  for (size_t i = 0; i < ids.size() + 1; ++i)
    self->receive(
      [&](session_info& info) {
        EXPECT_FALSE(info.loaded) << info.id;
        ++unloaded;
      },
      [&](std::vector<load_result>& x) { got = std::move(x); },
      [&](caf::error& err) { ADD_FAILURE() << message_of(err); },
      caf::after(std::chrono::seconds(30)) >> [&] { ADD_FAILURE() << "no reply"; });
  EXPECT_EQ(unloaded, 30);
  ASSERT_EQ(got.size(), asked.size());
  for (size_t i = 0; i < asked.size(); ++i) {
    EXPECT_EQ(got[i].id, asked[i]);
    if (asked[i] == "ghost") {
      EXPECT_EQ(code_of(got[i].error), errc::not_found);
      continue;
    }
    ASSERT_FALSE(got[i].error) << message_of(got[i].error);
    EXPECT_TRUE(got[i].info.loaded) << asked[i];
    EXPECT_EQ(got[i].info.message_count, 1u) << asked[i];
    EXPECT_EQ(got[i].info.epoch, 2u) << "activated once: " << asked[i];
    EXPECT_EQ(store->load(asked[i])->epoch, 2u) << asked[i];
  }
}

TEST_F(host_test, unknown_and_malformed_ids_are_not_found_and_change_nothing) {
  ASSERT_TRUE(create("echo"));
  for (std::string id : std::vector<std::string>{"nope", "bad id with spaces", "",
                                                std::string(200, 'x'),
                                                "../../etc/passwd"}) {
    EXPECT_EQ(code_of(call<session_actor>(host->host(), get_session_atom::value, id).error()),
              errc::not_found) << id;
    EXPECT_EQ(code_of(call<session_info>(host->host(), load_atom::value, id).error()),
              errc::not_found) << id;
    EXPECT_EQ(code_of(call<session_info>(host->host(), unload_atom::value, id).error()),
              errc::not_found) << id;
    EXPECT_EQ(code_of(call<session_info>(host->host(), terminate_atom::value, id,
                                         std::string{"x"}).error()),
              errc::not_found) << id;
  }
  EXPECT_EQ(code_of(call<session_actor>(host->host(), get_by_role_atom::value,
                                        "nobody").error()),
            errc::not_found);
  EXPECT_EQ(call<uint64_t>(host->host(), count_atom::value, session_filter{}).value_or(0), 1u);
}

TEST_F(host_test, bad_create_input_is_refused) {
  EXPECT_EQ(code_of(create("").error()), errc::bad_request);
  EXPECT_EQ(code_of(create("has space").error()), errc::bad_request);
  EXPECT_EQ(code_of(create("echo", "bad role!").error()), errc::bad_request);
  metadata_map big;
  for (int i = 0; i < 65; ++i)
    big["k" + std::to_string(i)] = "v";
  EXPECT_EQ(code_of(create("echo", "", big).error()), errc::bad_request);
  EXPECT_EQ(code_of(create("echo", "", {{"", "v"}}).error()), errc::bad_request);
  EXPECT_EQ(call<uint64_t>(host->host(), count_atom::value, session_filter{}).value_or(9), 0u);
}

TEST_F(host_test, unload_then_any_operation_loads_it_again_exactly) {
  auto c = create("agent", "r1", {{"k", "v"}});
  auto s = session(c->id);
  ASSERT_TRUE(call<session_info>(s, begin_spawn_atom::value));
  ASSERT_TRUE(call<session_info>(s, activate_atom::value, "agent"));
  ASSERT_TRUE(call<uint64_t>(s, message_atom::value, "{}"));
  ASSERT_TRUE(call<uint64_t>(s, message_atom::value, "{}"));
  auto before = info_of(c->id);
  auto unloaded = call<session_info>(host->host(), unload_atom::value, c->id);
  ASSERT_TRUE(unloaded);
  EXPECT_FALSE(unloaded->loaded);
  EXPECT_FALSE(loaded(c->id));
  // Activation on demand: get_session loads it.
  auto after = info_of(c->id);
  EXPECT_TRUE(loaded(c->id));
  EXPECT_EQ(after.state, session_state::active);
  EXPECT_EQ(after.message_count, 2u);
  EXPECT_EQ(after.metadata, before.metadata);
  EXPECT_EQ(after.last_seq, before.last_seq);
  EXPECT_EQ(after.created_at, before.created_at);
  EXPECT_EQ(after.epoch, before.epoch + 1) << "a new activation";
  // load is for warming: on a loaded session it reports it.
  EXPECT_EQ(call<session_info>(host->host(), load_atom::value, c->id)->last_seq,
            before.last_seq);
}

TEST_F(host_test, list_and_count_cover_loaded_and_unloaded_sessions) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(create("agent", "role-" + std::to_string(i))->id);
  for (int i = 0; i < 2; ++i) {
    auto s = session(ids[i]);
    call<session_info>(s, begin_spawn_atom::value);
    call<session_info>(s, activate_atom::value, "");
  }
  call<session_info>(host->host(), unload_atom::value, ids[0]);
  auto active = list(session_filter{session_state::active, "", ""});
  ASSERT_EQ(active.sessions.size(), 2u);
  EXPECT_EQ(active.next_cursor, "");
  for (auto& s : active.sessions)
    EXPECT_EQ(s.loaded, s.id != ids[0]) << s.id;
  EXPECT_EQ(list(session_filter{std::nullopt, "role-3", ""}).sessions.at(0).id, ids[3]);
  EXPECT_EQ(call<uint64_t>(host->host(), count_atom::value,
                           session_filter{session_state::created, "", ""}).value_or(0), 3u);
  EXPECT_EQ(code_of(create("no-such-type").error()), errc::bad_request);
  // Pages of two, in creation order, nothing lost or repeated.
  std::vector<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 5; ++page) {
    auto p = list(session_filter{}, 2, cursor);
    for (auto& s : p.sessions)
      seen.push_back(s.id);
    cursor = p.next_cursor;
    if (cursor.empty())
      break;
  }
  EXPECT_EQ(seen, ids);
  EXPECT_EQ(code_of(call<session_page>(host->host(), list_atom::value,
                                       session_filter{}, std::string{"junk"},
                                       uint64_t{2}).error()),
            errc::bad_request);
  EXPECT_EQ(code_of(call<session_page>(host->host(), list_atom::value,
                                       session_filter{}, std::string{},
                                       uint64_t{0}).error()),
            errc::bad_request);
}

TEST_F(host_test, operations_on_a_cleaned_session_are_refused) {
  auto c = create("echo", "r");
  auto done = call<session_info>(host->host(), terminate_atom::value, c->id,
                                 std::string{"bye"});
  ASSERT_TRUE(done);
  auto s = session(c->id);
  EXPECT_EQ(code_of(call<uint64_t>(s, publish_atom::value, "log", "{}").error()),
            errc::conflict);
  EXPECT_EQ(code_of(call<session_info>(host->host(), terminate_atom::value,
                                       c->id, std::string{"again"}).error()),
            errc::invalid_transition);
  EXPECT_EQ(info_of(c->id).state, session_state::cleaned);
}

TEST_F(host_test, peers_are_located_by_identity_and_stay_independent) {
  auto a = create("echo")->id;
  auto b = create("echo")->id;
  auto c = create("echo")->id;
  call<session_info>(session(a), attach_atom::value, "device-1", caf::actor{});
  call<session_info>(session(b), attach_atom::value, "device-1", caf::actor{});
  call<session_info>(session(c), attach_atom::value, "device-2", caf::actor{});
  auto found = [&](const std::string& peer) {
    auto ids = call<std::vector<std::string>>(host->host(), find_by_peer_atom::value, peer)
                 .value_or(std::vector<std::string>{});
    std::sort(ids.begin(), ids.end());
    return ids;
  };
  std::vector<std::string> both{a, b};
  std::sort(both.begin(), both.end());
  EXPECT_TRUE(eventually([&] { return found("device-1") == both; }));
  call<session_info>(session(a), detach_atom::value, "manual");
  EXPECT_TRUE(info_of(b).peer_connected);
  EXPECT_TRUE(info_of(c).peer_connected);
  EXPECT_FALSE(info_of(a).peer_connected);
}

TEST_F(host_test, shutdown_ends_every_session_and_a_restart_finds_them) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto id = create("echo", "r" + std::to_string(i))->id;
    ids.push_back(id);
    auto s = session(id);
    call<session_info>(s, attach_atom::value, "peer-" + std::to_string(i), caf::actor{});
    call<uint64_t>(s, message_atom::value, "{}");
  }
  std::vector<std::string> closed;
  std::mutex mtx;
  host->register_on_session_close([&](const hook_event& ev) {
    std::lock_guard<std::mutex> guard{mtx};
    closed.push_back(ev.session_id);
  });
  auto n = call<uint64_t>(host->host(), shutdown_atom::value);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 3u);
  EXPECT_EQ(closed.size(), 3u) << "every peer told, no per-peer calls";
  EXPECT_TRUE(call<std::vector<std::string>>(host->host(), loaded_ids_atom::value)->empty());
  EXPECT_FALSE(call<bool>(host->host(), healthy_atom::value).value_or(true));
  EXPECT_EQ(code_of(create("echo").error()), errc::unavailable);
  // A new host on the same store: the "process restart".
  host.reset();
  start();
  EXPECT_TRUE(call<bool>(host->host(), healthy_atom::value).value_or(false));
  auto all = list(session_filter{});
  ASSERT_EQ(all.sessions.size(), 3u);
  for (auto& s : all.sessions)
    EXPECT_FALSE(s.loaded);
  auto info = info_of(ids[1]);
  EXPECT_EQ(info.message_count, 1u);
  EXPECT_EQ(info.peer, "peer-1");
  EXPECT_FALSE(info.peer_connected);
  EXPECT_EQ(store->read_events(ids[1], 0, 100).back().type, "session_close");
}

TEST(host_passivation, idle_sessions_unload_and_busy_ones_stay) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  host_options opts;
  opts.config.idle_timeout = 200ms;
  embedded_host host{sys, opts};
  auto make = [&] {
    session_info out;
    self->request(host.host(), 10s, create_atom::value, std::string{"echo"},
                  std::string{}, metadata_map{})
      .receive([&](session_info& i) { out = i; }, [](caf::error&) {});
    return out.id;
  };
  auto is_loaded = [&](const std::string& id) {
    bool out = false;
    self->request(host.host(), 10s, is_loaded_atom::value, id)
      .receive([&](bool b) { out = b; }, [](caf::error&) {});
    return out;
  };
  auto idle = make();
  auto watched = make();
  auto rec = std::make_shared<test::recording>();
  auto sub = sys.spawn(test::recorder, rec, false);
  session_actor s;
  self->request(host.host(), 10s, get_session_atom::value, watched)
    .receive([&](session_actor& h) { s = h; }, [](caf::error&) {});
  self->request(s, 10s, subscribe_atom::value, sub)
    .receive([](uint64_t) {}, [](caf::error&) {});
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (is_loaded(idle) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(is_loaded(idle)) << "an idle session is passivated";
  EXPECT_TRUE(is_loaded(watched)) << "a session with a subscriber is not";
  // Any operation brings the passivated one back.
  session_actor again;
  self->request(host.host(), 10s, get_session_atom::value, idle)
    .receive([&](session_actor& h) { again = h; }, [](caf::error&) {});
  EXPECT_TRUE(again);
  caf::anon_send_exit(sub, caf::exit_reason::user_shutdown);
}

TEST_F(host_test, per_session_hooks_survive_passivation) {
  auto id = create("echo")->id;
  std::atomic<int> opened{0};
  host->register_on_session_open(id, [&](const hook_event&) { ++opened; });
  ASSERT_TRUE(call<session_info>(host->host(), unload_atom::value, id));
  // Registered while unloaded: kept by the host, attached on load.
  std::atomic<int> closed{0};
  host->register_on_session_close(id, [&](const hook_event&) { ++closed; });
  auto s = session(id);
  ASSERT_TRUE(call<session_info>(s, attach_atom::value, "p", caf::actor{}));
  ASSERT_TRUE(call<session_info>(s, detach_atom::value, "manual"));
  EXPECT_EQ(opened.load(), 1);
  EXPECT_EQ(closed.load(), 1);
  // Smart hook through the host: fires at once on a connected session.
  ASSERT_TRUE(call<session_info>(s, attach_atom::value, "p", caf::actor{}));
  std::atomic<int> late{0};
  host->register_on_session_open(id, [&](const hook_event&) { ++late; });
  EXPECT_EQ(late.load(), 1);
  EXPECT_EQ(host->clear_session_hooks(id), 3u);
}

TEST_F(host_test, echo_sessions_are_active_at_once_and_answer_in_blocks) {
  auto c = create("echo");
  ASSERT_TRUE(c) << message_of(c.error());
  EXPECT_EQ(c->state, session_state::active);
  EXPECT_EQ(store->load(c->id)->state, session_state::active) << "durable";
  // Its first steps are in its stream, durable before the create answered.
  EXPECT_EQ(c->last_seq, 2u);
  auto steps = store->read_events(c->id, 0, 10);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].type, "status:changed");
  EXPECT_EQ(steps[0].data, R"({"previous":"CREATED","state":"SPAWNING"})");
  EXPECT_EQ(steps[1].data, R"({"previous":"SPAWNING","state":"ACTIVE"})");
  EXPECT_EQ(info_of(c->id), *c);
  auto first = call<uint64_t>(session(c->id), message_atom::value, R"("hello world")");
  ASSERT_TRUE(first);
  auto evs = store->read_events(c->id, *first - 1, 100);
  std::vector<std::string> types;
  for (auto& e : evs)
    types.push_back(e.type);
  ASSERT_GE(types.size(), 6u);
  EXPECT_EQ(types[0], "session:start");
  EXPECT_EQ(types[1], "message");
  EXPECT_EQ(types[2], "block:start");
  EXPECT_EQ(types[3], "block:delta");
  EXPECT_EQ(types[types.size() - 2], "block:complete");
  EXPECT_EQ(types.back(), "status:changed");
  EXPECT_NE(evs[evs.size() - 2].data.find("hello world"), std::string::npos);
}

// Passivation and shutdown timing on virtual time: exact, with no real
// waiting.
namespace {

class host_virtual_time : public test::deterministic {
protected:
  host_virtual_time() {
    config.idle_timeout = std::chrono::seconds(60);
    config.shutdown_timeout = std::chrono::seconds(10);
    auto svc = make_services();
    svc->types = session_type_registry::with_builtins();
    svc->types->add("held", [r = releases] { return std::make_unique<test::held_type>(r); });
    // The writer and loader scheduled: the test scheduler runs them.
    host = spawn_session_host(sys, host_args{svc, store,
                                             std::make_shared<sequential_id_generator>(),
                                             false});
    to_stop.push_back(caf::actor_cast<caf::actor>(host));
    sched.run();
  }

  bool loaded(const std::string& id) {
    return ask<bool>(host, is_loaded_atom::value, id).value_or(false);
  }

  session_host_actor host;
  std::shared_ptr<test::held_releases> releases =
    std::make_shared<test::held_releases>();
};

} // namespace

TEST_F(host_virtual_time, a_session_idle_for_idle_timeout_is_unloaded_then_reloads) {
  auto a = ask<session_info>(host, create_atom::value, std::string{"agent"},
                             std::string{}, metadata_map{});
  ASSERT_TRUE(a);
  EXPECT_EQ(a->id, "s-1") << "ids come from the injected generator";
  advance(59s);
  EXPECT_TRUE(loaded("s-1"));
  advance(1s);
  EXPECT_FALSE(loaded("s-1"));
  // Activity postpones passivation; a subscriber or a peer prevents it.
  auto s = ask<session_actor>(host, get_session_atom::value, std::string{"s-1"});
  ASSERT_TRUE(s);
  EXPECT_TRUE(loaded("s-1"));
  advance(30s);
  ask<uint64_t>(*s, message_atom::value, std::string{"{}"});
  advance(45s);
  EXPECT_TRUE(loaded("s-1")) << "45 s after the last activity";
  auto [sub, rec] = new_recorder();
  ask<uint64_t>(*s, subscribe_atom::value, sub);
  advance(600s);
  EXPECT_TRUE(loaded("s-1")) << "a subscriber keeps it";
  ask<bool>(*s, unsubscribe_atom::value, sub);
  ask<session_info>(*s, attach_atom::value, std::string{"p"}, caf::actor{});
  config.heartbeat_timeout = std::chrono::hours(1);
  ask<micros>(*s, heartbeat_atom::value);
  advance(5s);
  EXPECT_TRUE(loaded("s-1"));
}

TEST_F(host_virtual_time, a_shutdown_waits_while_sessions_unload_and_gives_up_once_none_does) {
  // shutdown_timeout is 10 s. `quick` unloads at once, `slow` 15 s into the
  // shutdown (its resource lets go then), `stuck` never.
  auto make = [&](const std::string& type, metadata_map md) {
    auto r = ask<session_info>(host, create_atom::value, type, std::string{},
                               std::move(md));
    EXPECT_TRUE(r) << message_of(r.error());
    return r ? r->id : std::string{};
  };
  auto quick = make("echo", {});
  auto slow = make("held", {});
  auto stuck = make("held", {});
  self->send(host, shutdown_atom::value);
  sched.run();
  auto answer = [&] {
    test::reply<uint64_t> r{make_error(errc::internal, "no answer yet")};
    self->receive([&](uint64_t n) { r = n; },
                  [&](caf::error& e) { r = std::move(e); },
                  caf::after(std::chrono::seconds(0)) >> [] {});
    return r;
  };
  auto not_yet = [&](const char* when) {
    auto r = answer();
    ASSERT_FALSE(r) << when << ": answered " << *r;
    EXPECT_EQ(code_of(r.error()), errc::internal) << when;
  };
  EXPECT_FALSE(loaded(quick));
  // The watchdog looks every 10 s: at 10 s it sees `quick` gone.
  advance(10s);
  not_yet("10 s into it");
  advance(5s);
  ASSERT_TRUE(releases->release(slow));
  sched.run();
  EXPECT_FALSE(loaded(slow));
  EXPECT_EQ(store->load(slow)->state, session_state::cleaned);
  advance(5s); // at 20 s it sees `slow` gone
  advance(9'999ms);
  not_yet("just before 30 s");
  advance(1ms); // at 30 s: nothing unloaded for a whole 10 s
  auto r = answer();
  ASSERT_FALSE(r) << "answered " << *r;
  EXPECT_EQ(code_of(r.error()), errc::unavailable);
  EXPECT_NE(message_of(r.error()).find("1 still loaded"), std::string::npos)
    << message_of(r.error());
  EXPECT_TRUE(loaded(stuck)) << "nothing is dropped behind the host's back";
  advance(60s);
  EXPECT_FALSE(answer()) << "answered once";
}

TEST_F(host_virtual_time, a_shutdown_that_keeps_moving_is_answered_with_its_count) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto r = ask<session_info>(host, create_atom::value, std::string{"held"},
                               std::string{}, metadata_map{});
    ASSERT_TRUE(r);
    ids.push_back(r->id);
  }
  self->send(host, shutdown_atom::value);
  sched.run();
  for (auto& id : ids) { // 24 s in all, never 10 s without an unload
    advance(8s);
    ASSERT_TRUE(releases->release(id));
    sched.run();
  }
  test::reply<uint64_t> r{make_error(errc::internal, "no answer")};
  self->receive([&](uint64_t n) { r = n; },
                [&](caf::error& e) { r = std::move(e); },
                caf::after(std::chrono::seconds(0)) >> [] {});
  ASSERT_TRUE(r) << message_of(r.error());
  EXPECT_EQ(*r, 3u);
}

TEST(host_config, options_come_from_cafs_config_and_set_the_log_level) {
  sessionhost_config cfg;
  const char* argv[] = {"test", "--sessionhost.heartbeat-timeout=5s",
                        "--sessionhost.heartbeat-policy=terminate",
                        "--sessionhost.idle-timeout=0s",
                        "--sessionhost.shutdown-timeout=5min",
                        "--sessionhost.log-level=warn"};
  ASSERT_FALSE(cfg.parse(6, const_cast<char**>(argv)));
  auto hc = host_config::from(cfg);
  EXPECT_EQ(hc.heartbeat_timeout, std::chrono::seconds(5));
  EXPECT_EQ(hc.shutdown_timeout, std::chrono::minutes(5));
  EXPECT_EQ(host_config{}.shutdown_timeout, std::chrono::seconds(60));
  EXPECT_EQ(hc.on_heartbeat_timeout, heartbeat_policy::terminate);
  EXPECT_EQ(hc.idle_timeout.count(), 0);
  auto before = spdlog::get_level();
  {
    caf::actor_system sys{cfg};
    host_options opts;
    opts.config = hc;
    embedded_host host{sys, opts};
    EXPECT_EQ(spdlog::get_level(), spdlog::level::warn);
  }
  spdlog::set_level(before);
  sessionhost_config bad;
  const char* bad_argv[] = {"test", "--sessionhost.heartbeat-policy=sometimes"};
  ASSERT_FALSE(bad.parse(2, const_cast<char**>(bad_argv)));
  EXPECT_THROW(host_config::from(bad), std::invalid_argument);
  sessionhost_config never;
  const char* never_argv[] = {"test", "--sessionhost.shutdown-timeout=0s"};
  ASSERT_FALSE(never.parse(2, const_cast<char**>(never_argv)));
  EXPECT_THROW(host_config::from(never), std::invalid_argument);
}
