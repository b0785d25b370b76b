// The host on real stores, as a user sees it: what an embedded_host wrote to
// SQLite or PostgreSQL is all there after the host AND its actor system are
// gone (a process restart); a corrupted snapshot fails only its own session,
// with a clear error; and of two hosts that loaded one session, only the
// newer activation can still write, with no gap and no duplicate in the
// stored stream. Every wait is bounded.

#include <gtest/gtest.h>

#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include "call.hpp"
#include "reply.hpp"

#include "host/embedded_host.hpp"
#include "host/error.hpp"
#include "host/store/open_store.hpp"
#include "tests/support/postgres_fixture.hpp"
#include "tests/support/temp_dir.hpp"

using namespace sessionhost;
using namespace std::chrono_literals;

namespace {

namespace fs = std::filesystem;
using sessionhost::testing::temp_dir;

/// One "process": an actor system with an embedded host on the store `url`
/// names. Members are destroyed in reverse: host, self, system, config.
struct process {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  store_ptr store;
  std::unique_ptr<embedded_host> host;

  static caf::actor_system_config& init(caf::actor_system_config& c) {
    c.set("scheduler.max-threads", 4);
    c.set("logger.file-verbosity", caf::atom("quiet"));
    return c;
  }

  explicit process(const std::string& url) : process(open_store(url, "")) {}

  // On a store shared with another process (a memory store: two hosts of
  // one process on one store).
  explicit process(store_ptr shared) : sys(init(cfg)), self(sys) {
    store = std::move(shared);
    host_options opts;
    opts.store = store;
    opts.config.idle_timeout = 0ms; // nothing unloads behind the test's back
    host = std::make_unique<embedded_host>(sys, opts);
  }

  template <class T, class Handle, class... Ts>
  test::reply<T> call(const Handle& h, Ts&&... xs) {
    return test::call<T>(self, h, std::forward<Ts>(xs)...);
  }

  session_info create(const std::string& type, metadata_map md = {},
                      const std::string& role = "") {
    auto r = call<session_info>(host->host(), create_atom::value, type, role, md);
    EXPECT_TRUE(r) << (r ? "" : message_of(r.error()));
    return r ? *r : session_info{};
  }

  test::reply<session_actor> get(const std::string& id) {
    return call<session_actor>(host->host(), get_session_atom::value, id);
  }

  session_info info(const std::string& id) {
    auto s = get(id);
    EXPECT_TRUE(s) << (s ? "" : message_of(s.error()));
    if (!s)
      return {};
    auto i = call<session_info>(*s, info_atom::value);
    EXPECT_TRUE(i);
    return i ? *i : session_info{};
  }

  test::reply<uint64_t> publish(const std::string& id, const std::string& data) {
    auto s = get(id);
    if (!s)
      return s.error();
    return call<uint64_t>(*s, publish_atom::value, std::string{"log"}, data);
  }

  bool loaded(const std::string& id) {
    return call<bool>(host->host(), is_loaded_atom::value, id).value_or(false);
  }
};

/// Every stored event of `id`, in pages.
std::vector<event> all_events(session_store& store, const std::string& id) {
  std::vector<event> out;
  for (int guard = 0; guard < 10'000; ++guard) {
    auto page = store.read_events(id, out.empty() ? 0 : out.back().seq, 500);
    if (page.empty())
      break;
    out.insert(out.end(), page.begin(), page.end());
  }
  return out;
}

std::vector<uint64_t> seqs_of(const std::vector<event>& evs) {
  std::vector<uint64_t> out;
  for (auto& e : evs)
    out.push_back(e.seq);
  return out;
}

std::vector<uint64_t> one_to(uint64_t n) {
  std::vector<uint64_t> out;
  for (uint64_t s = 1; s <= n; ++s)
    out.push_back(s);
  return out;
}

/// A fresh database of the kind the test runs on.
class host_store : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    if (GetParam() == "sqlite")
      url_ = "sqlite:" + dir_.path + "/sessionhost.db";
    else
      url_ = sessionhost::testing::fresh_postgres_database();
  }

  temp_dir dir_;
  std::string url_;
};

// What a user checks after a restart: every session is listed, and each loads
// with the state, counters, metadata, peer and events it had.
TEST_P(host_store, everything_survives_a_process_restart) {
  std::map<std::string, session_info> before; // while the first process ran
  std::map<std::string, std::vector<event>> stored; // once it had stopped
  std::string echo_id, agent_id, idle_id;
  {
    process p{url_};
    echo_id = p.create("echo", {{"user", "ada"}}).id;
    auto echo = *p.get(echo_id);
    ASSERT_TRUE(p.call<uint64_t>(echo, message_atom::value, R"("hello")"));
    ASSERT_TRUE(p.publish(echo_id, R"({"n":1})"));
    ASSERT_TRUE(p.call<session_info>(echo, attach_atom::value, "device-1",
                                     caf::actor{}));

    agent_id = p.create("agent", {{"model", "m1"}}, "agent-a").id;
    auto agent = *p.get(agent_id);
    ASSERT_TRUE(p.call<session_info>(agent, begin_spawn_atom::value));
    ASSERT_TRUE(p.call<session_info>(agent, activate_atom::value, "agent-7"));
    ASSERT_TRUE(p.call<uint64_t>(agent, message_atom::value, R"({"q":"why"})"));
    ASSERT_TRUE(p.call<uint64_t>(agent, message_atom::value, R"({"q":"how"})"));
    ASSERT_TRUE(p.publish(agent_id, R"({"step":2})"));

    // One session is unloaded before the "crash": it lives only in the store.
    idle_id = p.create("agent").id;
    ASSERT_TRUE(p.publish(idle_id, R"({"x":true})"));
    before[echo_id] = p.info(echo_id);
    before[agent_id] = p.info(agent_id);
    before[idle_id] = p.info(idle_id);
    ASSERT_TRUE(p.call<session_info>(p.host->host(), unload_atom::value, idle_id));
    EXPECT_FALSE(p.loaded(idle_id));

    p.host->stop(); // flushes and unloads (the peer is closed: one more event)
    for (auto& [id, info] : before) {
      stored[id] = all_events(*p.store, id);
      ASSERT_GE(stored[id].size(), info.last_seq) << id;
      // Everything acknowledged before the stop is among them, unchanged.
      auto head = std::vector<event>(stored[id].begin(),
                                     stored[id].begin()
                                       + static_cast<ptrdiff_t>(info.last_seq));
      EXPECT_EQ(seqs_of(head), one_to(info.last_seq)) << id;
    }
  } // host, actor system and store handle are gone

  process p{url_};
  auto page = p.call<session_page>(p.host->host(), list_atom::value,
                                   session_filter{}, std::string{}, uint64_t{100});
  ASSERT_TRUE(page);
  std::set<std::string> listed;
  for (auto& s : page->sessions) {
    listed.insert(s.id);
    EXPECT_FALSE(s.loaded);
  }
  EXPECT_EQ(listed, (std::set<std::string>{echo_id, agent_id, idle_id}));
  for (auto& [id, was] : before) {
    SCOPED_TRACE(id);
    EXPECT_EQ(all_events(*p.store, id), stored[id]) << "same events, bytes and all";
    auto now = p.info(id); // loads it
    EXPECT_TRUE(now.loaded);
    EXPECT_EQ(now.type, was.type);
    EXPECT_EQ(now.role, was.role);
    EXPECT_EQ(now.state, was.state);
    EXPECT_EQ(now.message_count, was.message_count);
    EXPECT_EQ(now.reconnects, was.reconnects);
    EXPECT_EQ(now.metadata, was.metadata);
    EXPECT_EQ(now.peer, was.peer);
    EXPECT_FALSE(now.peer_connected) << "the old connection is gone";
    EXPECT_EQ(now.created_at, was.created_at);
    EXPECT_EQ(now.last_seq, stored[id].back().seq);
    EXPECT_GT(now.epoch, was.epoch) << "a new activation";
  }
  EXPECT_EQ(before[echo_id].peer, "device-1");
  EXPECT_EQ(before[agent_id].state, session_state::active);
  EXPECT_EQ(before[agent_id].message_count, 2u);
  // And they work: the stream goes on without a gap.
  auto next = p.publish(agent_id, R"({"after":"restart"})");
  ASSERT_TRUE(next) << message_of(next.error());
  EXPECT_EQ(*next, stored[agent_id].back().seq + 1);
  EXPECT_EQ(seqs_of(all_events(*p.store, agent_id)), one_to(*next));
}

/// The seq a SQLite session row's snapshot covers, and the stored tail.
std::pair<int64_t, int64_t> sqlite_snapshot_seq(const std::string& path,
                                                const std::string& id) {
  sqlite3* db = nullptr;
  std::pair<int64_t, int64_t> out{-1, -1};
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
    return out;
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT snapshot_seq, last_seq FROM sessions WHERE id = ?1",
                     -1, &st, nullptr);
  sqlite3_bind_text(st, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st) == SQLITE_ROW)
    out = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1)};
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

// A batch carries the session's snapshot only when its info changes, every
// `snapshot_every` events and at unload; loading folds the events after the
// snapshot back in. What a crash would leave (the store as it is while the
// session runs) and an unload + load both give back the session exactly.
TEST_P(host_store, a_session_reloads_exactly_from_an_older_snapshot) {
  process p{url_};
  auto id = p.create("echo").id;
  auto s = *p.get(id);
  ASSERT_TRUE(p.call<uint64_t>(s, message_atom::value, R"("hi")"));
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(p.publish(id, R"({"n":1})"));
  auto was = p.info(id);
  ASSERT_GE(was.last_seq, 21u);
  EXPECT_EQ(was.message_count, 1u);
  auto expected = was;
  expected.loaded = false;
  if (GetParam() == "sqlite") {
    auto [covered, tail] = sqlite_snapshot_seq(dir_.path + "/sessionhost.db", id);
    EXPECT_EQ(tail, static_cast<int64_t>(was.last_seq));
    EXPECT_LT(covered, tail) << "the publishes did not rewrite the snapshot";
  }

  // kill -9 now: a restart loads what is stored.
  auto stored = p.store->load(id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(*stored, expected);
  EXPECT_EQ(stored->updated_at, was.updated_at) << "the last event's time";

  // An unload writes the snapshot; loading again gives the same session.
  ASSERT_TRUE(p.call<session_info>(p.host->host(), unload_atom::value, id));
  if (GetParam() == "sqlite") {
    auto [covered, tail] = sqlite_snapshot_seq(dir_.path + "/sessionhost.db", id);
    EXPECT_EQ(covered, tail) << "unload leaves a current snapshot";
  }
  stored = p.store->load(id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(*stored, expected);
  auto now = p.info(id); // loads it
  EXPECT_TRUE(now.loaded);
  EXPECT_EQ(now.last_seq, was.last_seq);
  EXPECT_EQ(now.updated_at, was.updated_at);
  EXPECT_EQ(now.message_count, was.message_count);
  EXPECT_EQ(now.state, was.state);
  EXPECT_GT(now.epoch, was.epoch);
  auto next = p.publish(id, R"({"after":"load"})");
  ASSERT_TRUE(next) << message_of(next.error());
  EXPECT_EQ(*next, was.last_seq + 1);
}

// Creates keep arriving while earlier bursts are being stored (the host's
// create writer): every acknowledged create is stored once, with its first
// events, and one role still goes to exactly one of the creates asking for it.
TEST_P(host_store, creates_across_bursts_are_stored_once_and_a_role_goes_to_one) {
  std::set<std::string> ids;
  int conflicts = 0;
  {
    process p{url_};
    const int n = 1500;
    for (int i = 0; i < n; ++i)
      p.self->send(p.host->host(), create_atom::value,
                   std::string{i % 2 ? "echo" : "agent"},
                   i % 100 == 7 ? std::string{"shared"} : std::string{},
                   metadata_map{});
    for (int i = 0; i < n; ++i)
      p.self->receive(
        [&](session_info& info) { EXPECT_TRUE(ids.insert(info.id).second); },
        [&](caf::error& err) {
          EXPECT_EQ(code_of(err), errc::conflict) << message_of(err);
          ++conflicts;
        },
        caf::after(30s) >> [&] { ADD_FAILURE() << "no reply"; });
    EXPECT_EQ(conflicts, 14); // 15 asked for "shared"
    EXPECT_EQ(ids.size(), 1486u);
  }
  auto store = open_store(url_, "");
  EXPECT_EQ(store->count({}), 1486u);
  session_filter shared;
  shared.role = "shared";
  EXPECT_EQ(store->count(shared), 1u);
  for (auto& id : ids) {
    auto info = store->load(id);
    ASSERT_TRUE(info) << id;
    if (info->type == "echo") {
      EXPECT_EQ(info->state, session_state::active) << id;
      EXPECT_EQ(seqs_of(all_events(*store, id)), one_to(2)) << id;
    }
  }
}

// A burst of loads with everything mixed in: sessions only in the store
// (some ACTIVE, some with messages), sessions this host
// has loaded already, sessions another host has active (claimed from it),
// unknown and malformed ids, and each asked for twice. Every answer is what
// the session itself says once loaded; each stored session is claimed once
// here; the unknown ones fail with not_found and nothing of them is stored.
TEST_P(host_store, a_burst_of_loads_with_unknown_loaded_and_foreign_ids_mixed_in) {
  process a{url_};
  std::vector<std::string> stored_only, elsewhere;
  std::map<std::string, session_info> before; // as stored (or active on a)
  for (int i = 0; i < 12; ++i) {
    auto id = a.create("agent").id;
    auto h = a.get(id);
    ASSERT_TRUE(h);
    if (i % 2 == 0) { // ACTIVE, as its agent made it
      ASSERT_TRUE(a.call<session_info>(*h, begin_spawn_atom::value));
      ASSERT_TRUE(a.call<session_info>(*h, activate_atom::value,
                                       std::string{"agent-" + std::to_string(i)}));
    }
    if (i % 3 == 0) { // events after its last snapshot
      ASSERT_TRUE(a.call<uint64_t>(*h, message_atom::value,
                                   std::string{R"({"n":1})"}));
    }
    before[id] = a.info(id);
    if (i < 8) {
      ASSERT_TRUE(a.call<session_info>(a.host->host(), unload_atom::value, id));
      stored_only.push_back(id);
    } else {
      elsewhere.push_back(id); // stays active on a
    }
  }
  // And many plain ones, so the burst is more than one store call.
  {
    std::vector<session_spec> specs(300, session_spec{"agent", "", {}});
    auto made = a.call<std::vector<session_info>>(a.host->host(),
                                                  create_atom::value, specs);
    ASSERT_TRUE(made) << message_of(made.error());
    for (auto& info : *made)
      a.self->send(a.host->host(), unload_atom::value, info.id);
    for (auto& info : *made) {
      a.self->receive(
        [&](session_info& x) { before[x.id] = x; },
        [&](caf::error& e) { ADD_FAILURE() << message_of(e); },
        caf::after(std::chrono::seconds(30)) >> [&] { ADD_FAILURE() << "no reply"; });
      stored_only.push_back(info.id);
    }
  }
  process b{url_};
  std::vector<std::string> here; // loaded on b before the burst
  for (auto& id : {stored_only[0], stored_only[1]}) {
    here.push_back(id);
    before[id] = b.info(id);
  }
  std::vector<std::string> unknown{"01HZZZZZZZZZZZZZZZZZZZZZZZ", "not a session id",
                                   ""};
  std::vector<std::string> burst;
  for (int round = 0; round < 2; ++round) {
    burst.insert(burst.end(), stored_only.begin(), stored_only.end());
    burst.insert(burst.end(), elsewhere.begin(), elsewhere.end());
    burst.insert(burst.end(), unknown.begin(), unknown.end());
  }
  for (auto& id : burst)
    b.self->send(b.host->host(), load_atom::value, id);
  std::map<std::string, std::vector<session_info>> got;
  size_t refused = 0;
  for (size_t i = 0; i < burst.size(); ++i)
    b.self->receive(
      [&](session_info& info) { got[info.id].push_back(std::move(info)); },
      [&](caf::error& err) {
        EXPECT_EQ(code_of(err), errc::not_found) << message_of(err);
        ++refused;
      },
      caf::after(std::chrono::seconds(30)) >> [&] { ADD_FAILURE() << "no reply"; });
  EXPECT_EQ(refused, 2 * unknown.size());
  EXPECT_EQ(got.size(), stored_only.size() + elsewhere.size());
  for (auto& [id, answers] : got) {
    ASSERT_EQ(answers.size(), 2u) << id;
    auto& was = before[id];
    auto now = b.info(id); // what the session itself says
    bool loaded_before = std::count(here.begin(), here.end(), id) > 0;
    for (auto& x : answers) {
      EXPECT_EQ(x, now) << id;
      EXPECT_TRUE(x.loaded) << id;
      EXPECT_FALSE(x.peer_connected) << id;
      EXPECT_EQ(x.state, was.state) << id;
      EXPECT_EQ(x.metadata, was.metadata) << id;
      EXPECT_EQ(x.last_seq, was.last_seq) << id;
      EXPECT_EQ(x.message_count, was.message_count) << id;
      // Claimed once by b: one epoch past the last activation (a's), or
      // b's own from before the burst.
      EXPECT_EQ(x.epoch, loaded_before ? was.epoch : was.epoch + 1) << id;
      EXPECT_EQ(b.store->load(id)->epoch, x.epoch) << id;
    }
  }
  // Active on a before: b's activation fenced it there.
  for (auto& id : elsewhere) {
    auto refused_write = a.publish(id, R"({"from":"a"})");
    EXPECT_FALSE(refused_write) << id;
  }
  EXPECT_FALSE(b.store->load(unknown.front())) << "nothing stored for it";
}

// Loads on their way from the store when the host stops are all answered
// (refused: the host is shutting down) before it goes; none is left waiting.
TEST_P(host_store, loads_on_the_way_when_the_host_stops_are_answered) {
  std::vector<std::string> ids;
  {
    process a{url_};
    std::vector<session_spec> specs(600, session_spec{"agent", "", {}});
    auto made = a.call<std::vector<session_info>>(a.host->host(),
                                                  create_atom::value, specs);
    ASSERT_TRUE(made) << message_of(made.error());
    for (auto& info : *made)
      ids.push_back(info.id);
  } // stopped: every session is only in the store now
  process b{url_};
  for (auto& id : ids)
    b.self->send(b.host->host(), load_atom::value, id);
  b.host->stop();
  size_t loaded = 0, refused = 0;
  bool timed_out = false;
  auto deadline = std::chrono::steady_clock::now() + 30s; // for all of them
  for (size_t i = 0; i < ids.size() && !timed_out; ++i)
    b.self->receive(
      [&](session_info& info) {
        EXPECT_TRUE(info.loaded) << info.id;
        ++loaded;
      },
      [&](caf::error& err) {
        EXPECT_EQ(code_of(err), errc::unavailable) << message_of(err);
        ++refused;
      },
      caf::after(std::max(std::chrono::steady_clock::duration::zero(),
                          deadline - std::chrono::steady_clock::now()))
        >> [&] { timed_out = true; });
  EXPECT_EQ(loaded + refused, ids.size()) << "every load is answered";
}

INSTANTIATE_TEST_SUITE_P(stores, host_store, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

/// Batch loads on every store; the memory store's two "processes" share one
/// store object (it keeps nothing outside it).
class host_batch_load : public host_store {
protected:
  void SetUp() override {
    if (GetParam() == "memory")
      url_ = "memory:";
    else
      host_store::SetUp();
  }
  store_ptr open() {
    if (url_ != "memory:")
      return open_store(url_, "");
    if (!memory_)
      memory_ = open_store(url_, "");
    return memory_;
  }
  store_ptr memory_;
};

/// `n` sessions created on `p` and unloaded: they are only in the store.
std::vector<std::string> stored_sessions(process& p, size_t n) {
  std::vector<std::string> ids;
  std::vector<session_spec> specs(n, session_spec{"agent", "", {}});
  auto made = p.call<std::vector<session_info>>(p.host->host(),
                                                create_atom::value, specs);
  EXPECT_TRUE(made) << message_of(made.error());
  if (!made)
    return ids;
  for (auto& info : *made) {
    p.self->send(p.host->host(), unload_atom::value, info.id);
    ids.push_back(info.id);
  }
  bool timed_out = false;
  auto deadline = std::chrono::steady_clock::now() + 60s; // for all of them
  for (size_t i = 0; i < n && !timed_out; ++i)
    p.self->receive(
      [](session_info&) {}, [](caf::error& e) { ADD_FAILURE() << message_of(e); },
      caf::after(std::max(std::chrono::steady_clock::duration::zero(),
                          deadline - std::chrono::steady_clock::now()))
        >> [&] { timed_out = true; });
  EXPECT_FALSE(timed_out) << "every unload is answered";
  return ids;
}

// One request for ids of every kind: stored only, loaded here already,
// active on another host (claimed from it, as a single load does), unknown,
// malformed and one asked for twice. Each answer is in the order asked and
// is what the session itself says; one bad id fails alone; each stored
// session is ACTIVE-or-as-stored, loaded, and claimed once.
TEST_P(host_batch_load, a_batch_mixing_every_kind_of_id_answers_each_in_order) {
  process a{open()};
  auto stored = stored_sessions(a, 5);
  ASSERT_EQ(stored.size(), 5u);
  // One stored session is ACTIVE (its agent activated it) with a message.
  {
    auto h = a.get(stored[0]);
    ASSERT_TRUE(h);
    ASSERT_TRUE(a.call<session_info>(*h, begin_spawn_atom::value));
    ASSERT_TRUE(a.call<session_info>(*h, activate_atom::value, std::string{"agent-0"}));
    ASSERT_TRUE(a.call<uint64_t>(*h, message_atom::value, std::string{R"({"n":1})"}));
    ASSERT_TRUE(a.call<session_info>(a.host->host(), unload_atom::value, stored[0]));
  }
  auto elsewhere = a.create("agent").id; // stays loaded on a
  std::map<std::string, session_info> before;
  for (auto& id : stored)
    before[id] = *a.store->load(id);
  before[elsewhere] = a.info(elsewhere);
  process b{open()};
  auto here = stored_sessions(b, 1).front();
  before[here] = b.info(here); // loads it again: loaded on b before the batch
  const std::string unknown = "01HZZZZZZZZZZZZZZZZZZZZZZZ";
  const std::string malformed = "not a session id";
  std::vector<std::string> ids{stored[0], here,      unknown, stored[1],
                               elsewhere, malformed, stored[2], stored[0],
                               "",        stored[3], stored[4]};
  auto got = b.host->load(ids);
  ASSERT_TRUE(got) << message_of(got.error());
  ASSERT_EQ(got->size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    auto& r = (*got)[i];
    EXPECT_EQ(r.id, ids[i]) << i;
    if (ids[i] == unknown || ids[i] == malformed || ids[i].empty()) {
      EXPECT_EQ(code_of(r.error), errc::not_found) << i << ": " << message_of(r.error);
      continue;
    }
    ASSERT_FALSE(r.error) << ids[i] << ": " << message_of(r.error);
    auto& was = before[ids[i]];
    EXPECT_EQ(r.info.id, ids[i]);
    EXPECT_TRUE(r.info.loaded) << ids[i];
    EXPECT_EQ(r.info.state, was.state) << ids[i];
    EXPECT_EQ(r.info.last_seq, was.last_seq) << ids[i];
    EXPECT_EQ(r.info.message_count, was.message_count) << ids[i];
    EXPECT_EQ(r.info, b.info(ids[i])) << "what the session says: " << ids[i];
    // Claimed once by b (the duplicate too): one epoch past the last
    // activation, or b's own from before the batch.
    EXPECT_EQ(r.info.epoch, ids[i] == here ? was.epoch : was.epoch + 1) << ids[i];
    EXPECT_EQ(b.store->load(ids[i])->epoch, r.info.epoch) << ids[i];
  }
  EXPECT_EQ((*got)[0].info.state, session_state::active);
  EXPECT_FALSE(b.store->load(unknown)) << "nothing stored for it";
  // Active on a before: b's activation fenced it there.
  EXPECT_FALSE(a.publish(elsewhere, R"({"from":"a"})"));
  // A list that is empty or too long is refused whole, and loads nothing.
  auto empty = b.host->load({});
  ASSERT_FALSE(empty);
  EXPECT_EQ(code_of(empty.error()), errc::bad_request);
  std::vector<std::string> too_many(10'001, stored[1]);
  auto refused = b.host->load(too_many);
  ASSERT_FALSE(refused);
  EXPECT_EQ(code_of(refused.error()), errc::bad_request);
}

// A batch and single loads of the same ids at once: each session is loaded
// and claimed once, and every request is answered with that activation.
TEST_P(host_batch_load, a_batch_racing_single_loads_loads_each_session_once) {
  std::vector<std::string> ids;
  std::map<std::string, uint64_t> epoch_before;
  {
    process a{open()};
    ids = stored_sessions(a, 300);
    for (auto& id : ids)
      epoch_before[id] = a.store->load(id)->epoch;
  }
  process b{open()};
  // Singles before and after the batch, for every other id.
  size_t singles = 0;
  for (size_t i = 0; i < ids.size(); i += 2, ++singles)
    b.self->send(b.host->host(), load_atom::value, ids[i]);
  b.self->send(b.host->host(), load_atom::value, ids);
  for (size_t i = 1; i < ids.size(); i += 2, ++singles)
    b.self->send(b.host->host(), load_atom::value, ids[i]);
  std::map<std::string, uint64_t> single_epoch;
  std::vector<load_result> batch;
  bool timed_out = false;
  auto deadline = std::chrono::steady_clock::now() + 60s; // for all of them
  for (size_t n = 0; n < singles + 1 && !timed_out; ++n)
    b.self->receive(
      [&](session_info& info) { single_epoch[info.id] = info.epoch; },
      [&](std::vector<load_result>& got) { batch = std::move(got); },
      [&](caf::error& err) { ADD_FAILURE() << message_of(err); },
      caf::after(std::max(std::chrono::steady_clock::duration::zero(),
                          deadline - std::chrono::steady_clock::now()))
        >> [&] { timed_out = true; });
  ASSERT_FALSE(timed_out);
  ASSERT_EQ(batch.size(), ids.size());
  EXPECT_EQ(single_epoch.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    auto& id = ids[i];
    ASSERT_FALSE(batch[i].error) << id << ": " << message_of(batch[i].error);
    EXPECT_EQ(batch[i].id, id);
    EXPECT_EQ(batch[i].info.epoch, epoch_before[id] + 1) << "claimed once: " << id;
    EXPECT_EQ(single_epoch[id], batch[i].info.epoch) << id;
    EXPECT_EQ(b.store->load(id)->epoch, epoch_before[id] + 1) << id;
  }
  auto loaded = b.call<std::vector<std::string>>(b.host->host(),
                                                 loaded_ids_atom::value);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->size(), ids.size());
}

// A batch sent just before the host stops is answered: each id loaded or
// refused with unavailable, none left waiting.
TEST_P(host_batch_load, a_batch_during_shutdown_is_answered) {
  std::vector<std::string> ids;
  {
    process a{open()};
    ids = stored_sessions(a, 600);
  }
  process b{open()};
  auto loaded_before = stored_sessions(b, 1).front();
  ASSERT_TRUE(b.call<session_info>(b.host->host(), load_atom::value, loaded_before));
  ids.push_back(loaded_before);
  b.self->send(b.host->host(), load_atom::value, ids);
  b.host->stop();
  std::vector<load_result> got;
  b.self->receive(
    [&](std::vector<load_result>& x) { got = std::move(x); },
    [&](caf::error& err) { ADD_FAILURE() << message_of(err); },
    caf::after(std::chrono::seconds(60)) >> [&] { ADD_FAILURE() << "no answer"; });
  ASSERT_EQ(got.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(got[i].id, ids[i]);
    if (got[i].error)
      EXPECT_EQ(code_of(got[i].error), errc::unavailable) << message_of(got[i].error);
    else
      EXPECT_TRUE(got[i].info.loaded) << ids[i];
  }
}

INSTANTIATE_TEST_SUITE_P(stores, host_batch_load,
                         ::testing::Values("memory", "sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

/// Overwrites a session's snapshot in a SQLite file with bytes that do not
/// decode, as a disk error or a foreign tool would.
void corrupt_snapshot(const std::string& path, const std::string& id) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  auto sql = "UPDATE sessions SET snapshot = x'ffffffff0a0b0c' WHERE id = '" + id + "'";
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err != nullptr ? err : "";
  sqlite3_free(err);
  EXPECT_EQ(sqlite3_changes(db), 1);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << msg;
}

TEST(host_store_sqlite, a_corrupted_snapshot_fails_only_its_own_session) {
  temp_dir dir;
  auto file = dir.path + "/sessionhost.db";
  std::string bad, good;
  {
    process p{"sqlite:" + file};
    bad = p.create("echo").id;
    good = p.create("echo").id;
    ASSERT_TRUE(p.publish(bad, R"({"a":1})"));
    ASSERT_TRUE(p.publish(good, R"({"b":1})"));
  }
  corrupt_snapshot(file, bad);

  process p{"sqlite:" + file};
  auto r = p.get(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(code_of(r.error()), errc::internal);
  EXPECT_NE(message_of(r.error()).find(bad), std::string::npos)
    << "the message names the session: " << message_of(r.error());
  EXPECT_FALSE(p.loaded(bad));
  // Asking again gives the same answer; nothing got half-loaded.
  EXPECT_EQ(code_of(p.get(bad).error()), errc::internal);
  // Listing shows the good one and names the bad one instead of failing.
  auto page = p.call<session_page>(p.host->host(), list_atom::value,
                                   session_filter{}, std::string{}, uint64_t{100});
  ASSERT_TRUE(page) << message_of(page.error());
  ASSERT_EQ(page->sessions.size(), 1u);
  EXPECT_EQ(page->sessions[0].id, good);
  EXPECT_EQ(page->unreadable, std::vector<std::string>{bad});
  // The other session is untouched and works.
  auto info = p.info(good);
  EXPECT_EQ(info.state, session_state::active);
  auto seq = p.publish(good, R"({"b":2})");
  ASSERT_TRUE(seq) << message_of(seq.error());
  EXPECT_EQ(*seq, info.last_seq + 1);
  auto healthy = p.call<bool>(p.host->host(), healthy_atom::value);
  EXPECT_TRUE(healthy.value_or(false));
}

// Loads asked for together are stored and claimed in one go: the corrupt
// one among them fails alone, with the error a single load gives, and is not
// claimed; each of the others, asked for twice, is activated once.
TEST(host_store_sqlite, a_corrupted_snapshot_in_a_burst_of_loads_fails_alone) {
  temp_dir dir;
  auto file = dir.path + "/sessionhost.db";
  std::vector<std::string> ids;
  std::map<std::string, uint64_t> last_seq;
  {
    process p{"sqlite:" + file};
    for (int i = 0; i < 20; ++i) {
      ids.push_back(p.create("echo").id);
      auto seq = p.publish(ids.back(), R"({"a":1})");
      ASSERT_TRUE(seq);
      last_seq[ids.back()] = *seq;
    }
  }
  auto bad = ids[7];
  corrupt_snapshot(file, bad);

  process p{"sqlite:" + file};
  for (int round = 0; round < 2; ++round)
    for (auto& id : ids)
      p.self->send(p.host->host(), load_atom::value, id);
  std::map<std::string, int> ok;
  int failed = 0;
  for (size_t i = 0; i < 2 * ids.size(); ++i)
    p.self->receive(
      [&](session_info& info) {
        EXPECT_EQ(info.epoch, 2u) << "activated once: " << info.id;
        EXPECT_EQ(info.last_seq, last_seq[info.id]) << info.id;
        ++ok[info.id];
      },
      [&](caf::error& err) {
        EXPECT_EQ(code_of(err), errc::internal) << message_of(err);
        EXPECT_NE(message_of(err).find(bad), std::string::npos) << message_of(err);
        ++failed;
      },
      caf::after(std::chrono::seconds(30)) >> [&] { ADD_FAILURE() << "no reply"; });
  EXPECT_EQ(failed, 2);
  EXPECT_EQ(ok.size(), ids.size() - 1);
  EXPECT_EQ(ok.count(bad), 0u);
  EXPECT_FALSE(p.loaded(bad));
  for (auto& id : ids)
    if (id != bad) {
      EXPECT_EQ(ok[id], 2) << id;
      EXPECT_EQ(p.store->load(id)->epoch, 2u) << id;
    }
  // The bad one was not claimed: its stored epoch is the one it had.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  auto sql = "SELECT epoch FROM sessions WHERE id = '" + bad + "'";
  ASSERT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(st, 0), 1);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// The same as one batch load: the session that cannot be loaded is answered
// with the error a single load gives it, in its place; the others load.
TEST(host_store_sqlite, a_corrupted_snapshot_in_a_batch_load_fails_alone) {
  temp_dir dir;
  auto file = dir.path + "/sessionhost.db";
  std::vector<std::string> ids;
  {
    process p{"sqlite:" + file};
    for (int i = 0; i < 5; ++i)
      ids.push_back(p.create("echo").id);
  }
  auto bad = ids[2];
  corrupt_snapshot(file, bad);
  process p{"sqlite:" + file};
  auto got = p.host->load(ids);
  ASSERT_TRUE(got) << message_of(got.error());
  ASSERT_EQ(got->size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    auto& r = (*got)[i];
    EXPECT_EQ(r.id, ids[i]);
    if (ids[i] == bad) {
      EXPECT_EQ(code_of(r.error), errc::internal) << message_of(r.error);
      EXPECT_NE(message_of(r.error).find(bad), std::string::npos);
    } else {
      EXPECT_FALSE(r.error) << message_of(r.error);
      EXPECT_EQ(r.info.epoch, 2u) << ids[i];
    }
  }
  EXPECT_FALSE(p.loaded(bad));
}

// Two hosts (two nodes) on one PostgreSQL database load the same session.
// The newer activation fences the older: the older's next publish is refused,
// never acknowledged, and the stored stream has no gap and no duplicate.
TEST(host_store_postgres, a_stale_activation_cannot_write) {
  auto url = sessionhost::testing::fresh_postgres_database();
  process a{url};
  process b{url};
  auto id = a.create("echo").id;
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(a.publish(id, R"({"from":"a"})"));
  auto old_handle = *a.get(id);
  auto a_info = a.info(id);

  auto b_info = b.info(id); // loads it on b: a new epoch
  EXPECT_EQ(b_info.last_seq, a_info.last_seq);
  EXPECT_GT(b_info.epoch, a_info.epoch);

  auto refused = a.call<uint64_t>(old_handle, publish_atom::value,
                                  std::string{"log"},
                                  std::string{R"({"from":"stale"})"});
  ASSERT_FALSE(refused) << "acknowledged seq " << *refused;
  EXPECT_EQ(code_of(refused.error()), errc::stale_epoch) << message_of(refused.error());

  auto accepted = b.publish(id, R"({"from":"b"})");
  ASSERT_TRUE(accepted) << message_of(accepted.error());
  EXPECT_EQ(*accepted, b_info.last_seq + 1);

  auto evs = all_events(*b.store, id);
  EXPECT_EQ(seqs_of(evs), one_to(evs.size())) << "no gap, no duplicate";
  for (auto& e : evs) {
    EXPECT_EQ(e.data.find("stale"), std::string::npos) << "seq " << e.seq;
    EXPECT_EQ(e.epoch, e.seq <= a_info.last_seq ? a_info.epoch : b_info.epoch)
      << "seq " << e.seq;
  }
  // The fenced activation is gone from a; asking a again loads it anew there.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (a.loaded(id) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(a.loaded(id));
}

} // namespace
