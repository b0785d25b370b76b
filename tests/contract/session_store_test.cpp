// The session_store conformance suite: one value-parameterized suite run
// against every implementation (memory, SQLite, PostgreSQL), plus tests of
// what only one of them has (SQLite files, schema versions, backup), the
// codec and open_store. The memory store is the reference: whatever it does,
// the others must do too.

#include <gtest/gtest.h>

#include <pqxx/pqxx>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <thread>

#include "host/store/codec.hpp"
#include "host/store/memory_store.hpp"
#include "host/store/open_store.hpp"
#include "host/store/postgres_store.hpp"
#include "host/store/sqlite_store.hpp"
#include "tests/support/postgres_fixture.hpp"
#include "tests/support/temp_dir.hpp"

namespace sessionhost {

// Readable failure messages for error codes.
void PrintTo(store_error::code c, std::ostream* os) {
  static const char* names[] = {"stale_epoch", "seq_gap", "conflict",
                                "not_found", "corrupt", "not_a_database",
                                "io", "invalid_argument"};
  auto i = static_cast<size_t>(c);
  *os << (i < std::size(names) ? names[i] : "?");
}

namespace {

namespace fs = std::filesystem;
using code = store_error::code;
using testing::temp_dir;

#define EXPECT_STORE_ERROR(statement, expected_code)                           \
  do {                                                                         \
    try {                                                                      \
      statement;                                                               \
      ADD_FAILURE() << "expected store_error(" #expected_code ") from "        \
                    << #statement;                                             \
    } catch (const store_error& e_) {                                          \
      EXPECT_EQ(e_.error_code(), expected_code) << e_.what();                  \
    }                                                                          \
  } while (false)

std::string read_bytes(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out{path, std::ios::binary | std::ios::trunc};
  out << bytes;
}

session_info make_info(const std::string& id, const std::string& role = "",
                       const std::string& type = "echo",
                       session_state state = session_state::created,
                       micros created_at = 1'700'000'000'000'000) {
  session_info i;
  i.id = id;
  i.type = type;
  i.role = role;
  i.state = state;
  i.created_at = created_at;
  i.updated_at = created_at;
  i.epoch = 1;
  return i;
}

event make_event(const std::string& id, uint64_t seq, uint64_t epoch = 1) {
  event e;
  e.session_id = id;
  e.seq = seq;
  e.type = event_type::block_delta;
  e.data = R"({"seq":)" + std::to_string(seq) + R"(,"text":"hällo ✓"})";
  e.ts = 1'700'000'000'000'000 + static_cast<micros>(seq);
  e.epoch = epoch;
  return e;
}

std::vector<event> make_events(const std::string& id, uint64_t first, uint64_t n,
                               uint64_t epoch = 1) {
  std::vector<event> out;
  for (uint64_t s = first; s < first + n; ++s)
    out.push_back(make_event(id, s, epoch));
  return out;
}

append_batch batch(const std::string& id, uint64_t epoch, std::vector<event> evs,
                   std::optional<session_info> snapshot = std::nullopt) {
  append_batch b;
  b.session_id = id;
  b.epoch = epoch;
  b.events = std::move(evs);
  b.snapshot = std::move(snapshot);
  return b;
}

std::vector<uint64_t> seqs_of(const std::vector<event>& evs) {
  std::vector<uint64_t> out;
  for (auto& e : evs)
    out.push_back(e.seq);
  return out;
}

std::vector<uint64_t> range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> out;
  for (auto s = first; s <= last; ++s)
    out.push_back(s);
  return out;
}

/// Every event of `id`, read in pages of 100.
std::vector<event> all_events(session_store& store, const std::string& id) {
  std::vector<event> out;
  for (int guard = 0; guard < 100'000; ++guard) {
    auto page = store.read_events(id, out.empty() ? 0 : out.back().seq, 100);
    if (page.empty())
      break;
    out.insert(out.end(), page.begin(), page.end());
  }
  return out;
}

std::vector<std::string> ids_of(const std::vector<session_info>& xs) {
  std::vector<std::string> out;
  for (auto& x : xs)
    out.push_back(x.id);
  return out;
}

/// What a batched load of {"bad", "good"} gives when "bad" does not decode:
/// it fails alone, as corrupt, and "good" is claimed (epoch 1 -> 2).
void expect_only_bad_failed(const std::vector<activation>& got) {
  ASSERT_EQ(got.size(), 2u);
  ASSERT_TRUE(got[0].error);
  EXPECT_EQ(got[0].error->error_code(), code::corrupt);
  EXPECT_FALSE(got[0].info);
  ASSERT_TRUE(got[1].info);
  EXPECT_EQ(got[1].info->epoch, 2u);
}

// --- the parameterized suite --------------------------------------------------

/// Opens each kind of store through open_store, as a host would.
class session_store_contract : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    auto kind = GetParam();
    if (kind == "memory") {
      url_ = "memory:";
    } else if (kind == "sqlite") {
      dir_ = std::make_unique<temp_dir>();
      url_ = "sqlite:" + dir_->file("store.db");
    } else {
      url_ = testing::fresh_postgres_database();
    }
    store_ = open_store(url_, "");
  }

  /// A second, independent handle on the same data (another process or node
  /// would see the same); the memory store has only one.
  store_ptr second_handle() {
    return GetParam() == "memory" ? store_ : open_store(url_, "");
  }

  std::unique_ptr<temp_dir> dir_;
  std::string url_;
  store_ptr store_;
};

TEST_P(session_store_contract, create_then_load_gives_back_every_field) {
  auto info = make_info("s1", "agent-1", "echo", session_state::active);
  info.metadata = {{"owner", "ada"}, {"lang", "de"}, {"empty", ""}};
  info.last_heartbeat = 1'700'000'000'123'456;
  info.message_count = 12;
  info.reconnects = 3;
  info.peer = "peer-7";
  info.peer_connected = true;
  info.last_seq = 42; // ignored: a new session has no events
  info.epoch = 5;
  info.loaded = true; // not stored
  store_->create(info);
  auto got = store_->load("s1");
  ASSERT_TRUE(got);
  auto expected = info;
  expected.last_seq = 0;
  expected.loaded = false;
  EXPECT_EQ(*got, expected);
}

TEST_P(session_store_contract, load_of_unknown_id_is_empty) {
  EXPECT_FALSE(store_->load("nope"));
  EXPECT_TRUE(store_->read_events("nope", 0, 10).empty());
}

TEST_P(session_store_contract, create_refuses_an_existing_id) {
  store_->create(make_info("s1", "", "echo"));
  EXPECT_STORE_ERROR(store_->create(make_info("s1", "", "other")), code::conflict);
  EXPECT_EQ(store_->load("s1")->type, "echo"); // the first one is untouched
  EXPECT_EQ(store_->count({}), 1u);
}

TEST_P(session_store_contract, a_role_is_held_by_one_live_session) {
  store_->create(make_info("s1", "agent-1"));
  EXPECT_EQ(store_->find_by_role("agent-1"), std::optional<std::string>{"s1"});
  EXPECT_STORE_ERROR(store_->create(make_info("s2", "agent-1")), code::conflict);
  EXPECT_FALSE(store_->load("s2"));
  // Other roles and no role at all do not conflict.
  store_->create(make_info("s3", "agent-2"));
  store_->create(make_info("s4"));
  store_->create(make_info("s5"));
  EXPECT_FALSE(store_->find_by_role(""));
  EXPECT_FALSE(store_->find_by_role("agent-9"));
  // Once the holder is CLEANED, the role is free again.
  auto cleaned = make_info("s1", "agent-1", "echo", session_state::cleaned);
  store_->append({batch("s1", 1, {}, cleaned)});
  EXPECT_FALSE(store_->find_by_role("agent-1"));
  store_->create(make_info("s2", "agent-1"));
  EXPECT_EQ(store_->find_by_role("agent-1"), std::optional<std::string>{"s2"});
}

TEST_P(session_store_contract, create_many_stores_all_or_none) {
  store_->create(make_info("s0", "agent-0"));
  store_->create_many({make_info("s1", "agent-1"), make_info("s2"),
                       make_info("s3", "agent-3")});
  EXPECT_EQ(store_->count({}), 4u);
  EXPECT_EQ(store_->find_by_role("agent-3"), std::optional<std::string>{"s3"});
  // One conflict anywhere (a live role, an id, or two of the batch with one
  // role) and nothing of the batch is stored.
  EXPECT_STORE_ERROR(store_->create_many({make_info("s4"), make_info("s5", "agent-0")}),
                     code::conflict);
  EXPECT_STORE_ERROR(store_->create_many({make_info("s4"), make_info("s1")}),
                     code::conflict);
  EXPECT_STORE_ERROR(store_->create_many({make_info("s4", "agent-9"),
                                          make_info("s5", "agent-9")}),
                     code::conflict);
  EXPECT_FALSE(store_->load("s4"));
  EXPECT_FALSE(store_->load("s5"));
  EXPECT_FALSE(store_->find_by_role("agent-9"));
  EXPECT_EQ(store_->count({}), 4u);
  store_->create_many({});
  EXPECT_EQ(store_->count({}), 4u);
}

TEST_P(session_store_contract, create_started_stores_sessions_with_their_first_events) {
  store_->create(make_info("s0", "agent-0"));
  auto started = [](const std::string& id, const std::string& role = "") {
    auto info = make_info(id, role, "echo", session_state::active,
                          1'700'000'000'000'100);
    info.last_seq = 2;
    return batch(id, 1, make_events(id, 1, 2), info);
  };
  store_->create_started({started("s1", "agent-1"), started("s2"),
                          batch("s3", 1, {}, make_info("s3"))});
  auto s1 = store_->load("s1");
  ASSERT_TRUE(s1);
  EXPECT_EQ(s1->state, session_state::active);
  EXPECT_EQ(s1->last_seq, 2u);
  EXPECT_EQ(s1->epoch, 1u);
  EXPECT_EQ(s1->updated_at, 1'700'000'000'000'100);
  EXPECT_EQ(seqs_of(store_->read_events("s1", 0, 100)), range(1, 2));
  EXPECT_EQ(store_->read_events("s2", 0, 100)[1], make_event("s2", 2));
  EXPECT_EQ(store_->load("s3")->state, session_state::created);
  EXPECT_EQ(store_->load("s3")->last_seq, 0u);
  EXPECT_EQ(store_->find_by_role("agent-1"), std::optional<std::string>{"s1"});
  // The stream goes on from the first events.
  store_->append({batch("s1", 1, make_events("s1", 3, 1))});
  EXPECT_EQ(store_->load("s1")->last_seq, 3u);
  EXPECT_EQ(store_->count({}), 4u);
  // All or none: an existing id, a live role, one role twice in the call,
  // events not starting at 1, no snapshot or another session's.
  EXPECT_STORE_ERROR(store_->create_started({started("s4"), started("s1")}),
                     code::conflict);
  EXPECT_STORE_ERROR(store_->create_started({started("s4"), started("s5", "agent-0")}),
                     code::conflict);
  EXPECT_STORE_ERROR(store_->create_started({started("s4", "agent-9"),
                                             started("s5", "agent-9")}),
                     code::conflict);
  EXPECT_STORE_ERROR(store_->create_started({started("s4"),
                                             batch("s5", 1, make_events("s5", 2, 1),
                                                   make_info("s5"))}),
                     code::seq_gap);
  EXPECT_STORE_ERROR(store_->create_started({batch("s4", 1, {})}),
                     code::invalid_argument);
  EXPECT_STORE_ERROR(store_->create_started({batch("s4", 1, {}, make_info("s5"))}),
                     code::invalid_argument);
  EXPECT_FALSE(store_->load("s4"));
  EXPECT_FALSE(store_->load("s5"));
  EXPECT_TRUE(store_->read_events("s4", 0, 100).empty());
  EXPECT_FALSE(store_->find_by_role("agent-9"));
  EXPECT_EQ(store_->count({}), 4u);
  store_->create_started({});
  EXPECT_EQ(store_->count({}), 4u);
}

TEST_P(session_store_contract, a_snapshot_cannot_take_a_live_role) {
  store_->create(make_info("s1", "agent-1"));
  store_->create(make_info("s2"));
  auto grab = make_info("s2", "agent-1", "echo", session_state::active);
  EXPECT_STORE_ERROR(store_->append({batch("s2", 1, make_events("s2", 1, 3), grab)}),
                     code::conflict);
  // Nothing of that batch was written: neither events nor snapshot.
  EXPECT_TRUE(store_->read_events("s2", 0, 10).empty());
  EXPECT_EQ(store_->load("s2")->role, "");
  EXPECT_EQ(store_->load("s2")->last_seq, 0u);
  EXPECT_EQ(store_->find_by_role("agent-1"), std::optional<std::string>{"s1"});
  // Keeping one's own role in a new snapshot is fine.
  auto same = make_info("s1", "agent-1", "echo", session_state::active);
  store_->append({batch("s1", 1, make_events("s1", 1, 1), same)});
  EXPECT_EQ(store_->load("s1")->state, session_state::active);
}

TEST_P(session_store_contract, events_keep_their_idempotency_key) {
  store_->create(make_info("s1"));
  auto evs = make_events("s1", 1, 2);
  evs[1].idempotency_key = "req-7 ✓";
  store_->append({batch("s1", 1, evs)});
  auto back = store_->read_events("s1", 0, 10);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].idempotency_key, "");
  EXPECT_EQ(back[1], evs[1]);
}

TEST_P(session_store_contract, append_continues_the_sequence) {
  store_->create(make_info("s1"));
  store_->append({batch("s1", 1, make_events("s1", 1, 3))});
  store_->append({batch("s1", 1, make_events("s1", 4, 2))});
  EXPECT_EQ(store_->load("s1")->last_seq, 5u);
  auto evs = store_->read_events("s1", 0, 100);
  ASSERT_EQ(seqs_of(evs), range(1, 5));
  // Events come back exactly as written.
  EXPECT_EQ(evs[3], make_event("s1", 4));
  // An empty append and a batch without events change nothing.
  store_->append({});
  store_->append({batch("s1", 1, {})});
  EXPECT_EQ(store_->load("s1")->last_seq, 5u);
}

TEST_P(session_store_contract, append_refuses_gaps_and_duplicates) {
  store_->create(make_info("s1"));
  EXPECT_STORE_ERROR(store_->append({batch("s1", 1, make_events("s1", 2, 1))}),
                     code::seq_gap); // must start at 1
  EXPECT_STORE_ERROR(store_->append({batch("s1", 1, make_events("s1", 0, 1))}),
                     code::seq_gap);
  store_->append({batch("s1", 1, make_events("s1", 1, 3))});
  EXPECT_STORE_ERROR(store_->append({batch("s1", 1, make_events("s1", 5, 1))}),
                     code::seq_gap); // skips 4
  EXPECT_STORE_ERROR(store_->append({batch("s1", 1, make_events("s1", 3, 2))}),
                     code::seq_gap); // repeats 3
  // A gap inside a batch: the good first event is not written either.
  auto evs = make_events("s1", 4, 1);
  evs.push_back(make_event("s1", 6));
  EXPECT_STORE_ERROR(store_->append({batch("s1", 1, evs)}), code::seq_gap);
  EXPECT_EQ(store_->load("s1")->last_seq, 3u);
  EXPECT_EQ(seqs_of(store_->read_events("s1", 0, 100)), range(1, 3));
}

TEST_P(session_store_contract, append_to_unknown_session_is_not_found) {
  EXPECT_STORE_ERROR(store_->append({batch("ghost", 1, make_events("ghost", 1, 1))}),
                     code::not_found);
  EXPECT_FALSE(store_->load("ghost"));
}

TEST_P(session_store_contract, activate_fences_out_older_epochs) {
  store_->create(make_info("s1")); // epoch 1
  store_->append({batch("s1", 1, make_events("s1", 1, 2))});
  EXPECT_EQ(store_->activate("s1"), 2u);
  EXPECT_EQ(store_->load("s1")->epoch, 2u);
  EXPECT_STORE_ERROR(store_->append({batch("s1", 1, make_events("s1", 3, 1))}),
                     code::stale_epoch);
  store_->append({batch("s1", 2, make_events("s1", 3, 1, 2))});
  EXPECT_EQ(store_->activate("s1"), 3u);
  EXPECT_STORE_ERROR(store_->append({batch("s1", 2, make_events("s1", 4, 1, 2))}),
                     code::stale_epoch);
  // A writer with a newer epoch than stored moves the fence forward.
  store_->append({batch("s1", 7, make_events("s1", 4, 1, 7))});
  EXPECT_EQ(store_->load("s1")->epoch, 7u);
  EXPECT_STORE_ERROR(store_->append({batch("s1", 6, make_events("s1", 5, 1, 6))}),
                     code::stale_epoch);
  EXPECT_EQ(store_->activate("s1"), 8u);
  EXPECT_EQ(seqs_of(store_->read_events("s1", 0, 100)), range(1, 4));
  EXPECT_STORE_ERROR(store_->activate("ghost"), code::not_found);
}

TEST_P(session_store_contract, activate_many_claims_all_or_none_in_order) {
  store_->create_many({make_info("b"), make_info("a"), make_info("c")});
  store_->activate("c"); // epoch 2
  EXPECT_EQ(store_->activate_many({"c", "a", "b"}),
            (std::vector<uint64_t>{3, 2, 2}));
  EXPECT_STORE_ERROR(store_->activate_many({"a", "ghost", "b"}), code::not_found);
  // Nothing of the failed call was claimed.
  EXPECT_EQ(store_->load("a")->epoch, 2u);
  EXPECT_EQ(store_->load("b")->epoch, 2u);
  EXPECT_STORE_ERROR(store_->append({batch("a", 1, make_events("a", 1, 1))}),
                     code::stale_epoch);
  EXPECT_TRUE(store_->activate_many({}).empty());
}

TEST_P(session_store_contract, load_activate_many_loads_and_claims_each_in_order) {
  store_->create_many({make_info("a"), make_info("b"), make_info("c")});
  // a: a snapshot covering seqs 1-2, then two messages after it.
  auto snap_a = make_info("a", "", "echo", session_state::active);
  snap_a.last_seq = 2;
  store_->append({batch("a", 1, make_events("a", 1, 2), snap_a)});
  auto more = make_events("a", 3, 2);
  for (auto& e : more)
    e.type = event_type::message;
  store_->append({batch("a", 1, more)});
  store_->activate("c"); // c is at epoch 2
  auto expected_a = *store_->load("a"); // the reference: load's fold
  ASSERT_EQ(expected_a.message_count, 2u);

  auto got = store_->load_activate_many({"c", "ghost", "a", "b"});
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].id, "c");
  EXPECT_EQ(got[1].id, "ghost");
  EXPECT_EQ(got[2].id, "a");
  EXPECT_EQ(got[3].id, "b");
  // The unknown one fails alone.
  EXPECT_FALSE(got[1].info);
  ASSERT_TRUE(got[1].error);
  EXPECT_EQ(got[1].error->error_code(), code::not_found);
  for (size_t i : {0, 2, 3}) {
    ASSERT_TRUE(got[i].info) << got[i].id;
    EXPECT_FALSE(got[i].error) << got[i].id;
  }
  EXPECT_EQ(got[0].info->epoch, 3u);
  EXPECT_EQ(got[3].info->epoch, 2u);
  expected_a.epoch = 2;
  EXPECT_EQ(*got[2].info, expected_a);
  // Claimed as activate claims: stored, and older writers are fenced.
  EXPECT_EQ(store_->load("a")->epoch, 2u);
  EXPECT_EQ(store_->load("c")->epoch, 3u);
  EXPECT_STORE_ERROR(store_->append({batch("a", 1, make_events("a", 5, 1))}),
                     code::stale_epoch);
  EXPECT_STORE_ERROR(store_->append({batch("c", 2, make_events("c", 1, 1))}),
                     code::stale_epoch);
  store_->append({batch("a", 2, make_events("a", 5, 1, 2))});
  // An id no store can hold (invalid UTF-8) is unknown like any other.
  auto odd = store_->load_activate_many({std::string{"b\xff"}, "b"});
  ASSERT_EQ(odd.size(), 2u);
  ASSERT_TRUE(odd[0].error);
  EXPECT_EQ(odd[0].error->error_code(), code::not_found);
  ASSERT_TRUE(odd[1].info);
  EXPECT_EQ(odd[1].info->epoch, 3u);
  EXPECT_TRUE(store_->load_activate_many({}).empty());
}

TEST_P(session_store_contract, load_activate_many_refuses_an_id_asked_twice) {
  store_->create_many({make_info("a"), make_info("b")});
  EXPECT_STORE_ERROR(store_->load_activate_many({"a", "b", "a"}),
                     code::invalid_argument);
  // Nothing was claimed.
  EXPECT_EQ(store_->load("a")->epoch, 1u);
  EXPECT_EQ(store_->load("b")->epoch, 1u);
}

/// An older activation of `id` at `epoch` on its own handle (another process
/// or node), appending two message events at a time from a thread of its own
/// until the store fences it out (stale_epoch) or 20 s pass.
class old_writer {
public:
  old_writer(store_ptr handle, std::string id, uint64_t epoch)
    : thread_([this, handle = std::move(handle), id = std::move(id), epoch] {
        uint64_t next = 1;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (std::chrono::steady_clock::now() < deadline) {
          try {
            auto evs = make_events(id, next, 2, epoch);
            for (auto& e : evs)
              e.type = event_type::message;
            handle->append({batch(id, epoch, evs)});
            next += 2;
            written_ = next - 1;
            // A writer's batches come apart in time: a loop with no gap
            // would starve the new activation's lock (SQLite's busy handler
            // is not fair) until its busy timeout, which is not what the
            // tests are about.
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          } catch (const store_error& e) {
            EXPECT_EQ(e.error_code(), code::stale_epoch) << e.what();
            fenced_ = true;
            return;
          }
        }
      }) {
  }
  ~old_writer() {
    if (thread_.joinable())
      thread_.join();
  }

  /// Lets it get going: returns once it wrote `n` events (at most ~2 s).
  void wait_until_written(uint64_t n) {
    for (int i = 0; i < 2000 && written_ < n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  /// Waits until it stopped; true when the store fenced it out.
  bool join_fenced() {
    thread_.join();
    return fenced_;
  }

private:
  std::atomic<bool> fenced_{false};
  std::atomic<uint64_t> written_{0};
  std::thread thread_; // last: started once the counters exist
};

// An older activation keeps appending while the sessions are loaded again:
// whatever the timing, each load comes back with every event stored before
// its claim, and the old writer is fenced out after it.
TEST_P(session_store_contract, load_activate_many_catches_an_old_writers_last_events) {
  store_->create_many({make_info("s1"), make_info("s2")});
  old_writer old{second_handle(), "s1", 1};
  old.wait_until_written(20);
  auto got = store_->load_activate_many({"s2", "s1"});
  EXPECT_TRUE(old.join_fenced());
  ASSERT_EQ(got.size(), 2u);
  ASSERT_TRUE(got[1].info);
  auto stored = store_->load("s1");
  ASSERT_TRUE(stored);
  EXPECT_EQ(got[1].info->last_seq, stored->last_seq);
  EXPECT_EQ(got[1].info->message_count, stored->last_seq);
  EXPECT_EQ(got[1].info->epoch, 2u);
  EXPECT_EQ(stored->epoch, 2u);
}

TEST_P(session_store_contract, a_batch_is_all_or_nothing_across_sessions) {
  for (auto id : {"a", "b", "c"})
    store_->create(make_info(id));
  store_->append({batch("b", 1, make_events("b", 1, 1))});
  store_->activate("c"); // c is now at epoch 2
  auto snap_a = make_info("a", "", "echo", session_state::active);
  snap_a.message_count = 2;
  auto good_a = batch("a", 1, make_events("a", 1, 2), snap_a);
  auto good_c = batch("c", 2, make_events("c", 1, 2, 2));
  // A bad batch in the middle, for each kind of refusal.
  std::vector<std::pair<append_batch, code>> bad = {
    {batch("b", 1, make_events("b", 3, 1)), code::seq_gap},
    {batch("ghost", 1, make_events("ghost", 1, 1)), code::not_found},
    {batch("c", 1, make_events("c", 1, 1)), code::stale_epoch},
  };
  for (auto& [middle, expected] : bad) {
    EXPECT_STORE_ERROR(store_->append({good_a, middle, good_c}), expected);
    EXPECT_EQ(store_->load("a")->last_seq, 0u);
    EXPECT_EQ(store_->load("a")->state, session_state::created);
    EXPECT_TRUE(store_->read_events("a", 0, 10).empty());
    EXPECT_EQ(store_->load("b")->last_seq, 1u);
    EXPECT_EQ(store_->load("c")->last_seq, 0u);
    EXPECT_TRUE(store_->read_events("c", 0, 10).empty());
  }
  store_->append({good_a, batch("b", 1, make_events("b", 2, 1)), good_c});
  EXPECT_EQ(store_->load("a")->last_seq, 2u);
  EXPECT_EQ(store_->load("a")->message_count, 2u);
  EXPECT_EQ(store_->load("b")->last_seq, 2u);
  EXPECT_EQ(store_->load("c")->last_seq, 2u);
}

TEST_P(session_store_contract, one_session_may_appear_twice_in_a_commit) {
  store_->create(make_info("s1"));
  store_->append({batch("s1", 1, make_events("s1", 1, 2)),
                  batch("s1", 1, make_events("s1", 3, 2))});
  EXPECT_EQ(seqs_of(store_->read_events("s1", 0, 10)), range(1, 4));
  // The second batch is checked against where the first one ends.
  EXPECT_STORE_ERROR(store_->append({batch("s1", 1, make_events("s1", 5, 1)),
                                     batch("s1", 1, make_events("s1", 5, 1))}),
                     code::seq_gap);
  EXPECT_EQ(store_->load("s1")->last_seq, 4u);
}

TEST_P(session_store_contract, snapshot_is_written_with_its_events) {
  store_->create(make_info("s1", "r1", "echo", session_state::created, 1000));
  auto snap = make_info("s1", "r1", "echo", session_state::active, 1000);
  snap.message_count = 3;
  snap.metadata = {{"k", "v"}};
  snap.updated_at = 2000;
  snap.last_seq = 3;
  snap.epoch = 1;
  store_->append({batch("s1", 1, make_events("s1", 1, 3), snap)});
  auto got = store_->load("s1");
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, snap);
  // Events without a snapshot keep the snapshot but move last_seq.
  store_->append({batch("s1", 1, make_events("s1", 4, 2))});
  got = store_->load("s1");
  EXPECT_EQ(got->last_seq, 5u);
  EXPECT_EQ(got->message_count, 3u);
  EXPECT_EQ(got->state, session_state::active);
  // Listing follows the snapshot's summary (state) too.
  session_filter active;
  active.state = session_state::active;
  EXPECT_EQ(ids_of(store_->list(active, "", 10).sessions),
            std::vector<std::string>{"s1"});
  session_filter created;
  created.state = session_state::created;
  EXPECT_EQ(store_->count(created), 0u);
}

TEST_P(session_store_contract, read_events_pages_after_a_seq) {
  store_->create(make_info("s1"));
  store_->create(make_info("s2"));
  store_->append({batch("s1", 1, make_events("s1", 1, 25)),
                  batch("s2", 1, make_events("s2", 1, 3))});
  EXPECT_EQ(seqs_of(store_->read_events("s1", 0, 10)), range(1, 10));
  EXPECT_EQ(seqs_of(store_->read_events("s1", 10, 10)), range(11, 20));
  EXPECT_EQ(seqs_of(store_->read_events("s1", 20, 10)), range(21, 25));
  EXPECT_TRUE(store_->read_events("s1", 25, 10).empty());
  EXPECT_TRUE(store_->read_events("s1", 1000, 10).empty());
  EXPECT_EQ(seqs_of(store_->read_events("s1", 7, 3)), range(8, 10));
  EXPECT_TRUE(store_->read_events("s1", 0, 0).empty());
  auto all = all_events(*store_, "s1");
  ASSERT_EQ(all.size(), 25u);
  for (uint64_t s = 1; s <= 25; ++s)
    EXPECT_EQ(all[s - 1], make_event("s1", s));
  EXPECT_EQ(store_->read_events("s2", 0, 100), make_events("s2", 1, 3));
}

// Sessions write their snapshot only now and then: load and list give the
// snapshot with the events after the seq it covers folded in.
TEST_P(session_store_contract, load_folds_in_the_events_after_the_snapshot) {
  store_->create(make_info("s1"));
  auto snap = make_info("s1", "", "echo", session_state::active);
  snap.last_seq = 2;
  snap.updated_at = make_event("s1", 2).ts;
  store_->append({batch("s1", 1, make_events("s1", 1, 2), snap)});
  auto later = make_events("s1", 3, 3);
  later[0].type = event_type::message; // counted by message_count
  store_->append({batch("s1", 1, later)});
  auto expected = snap;
  expected.last_seq = 5;
  expected.updated_at = later.back().ts;
  expected.message_count = 1;
  EXPECT_EQ(store_->load("s1"), std::optional<session_info>{expected});
  auto page = store_->list({}, "", 10);
  ASSERT_EQ(page.sessions.size(), 1u);
  EXPECT_EQ(page.sessions[0], expected);
  // A snapshot covering everything is taken as it is.
  auto current = expected;
  current.message_count = 9;
  store_->append({batch("s1", 1, {}, current)});
  EXPECT_EQ(store_->load("s1"), std::optional<session_info>{current});
}

TEST_P(session_store_contract, list_filters_by_state_role_and_type) {
  // e held r1 before and is CLEANED, so a can hold it now.
  store_->create(make_info("e", "r1", "echo", session_state::cleaned, 5));
  store_->create(make_info("a", "r1", "echo", session_state::active, 30));
  store_->create(make_info("b", "r2", "chat", session_state::active, 10));
  store_->create(make_info("c", "", "echo", session_state::created, 20));
  store_->create(make_info("d", "r3", "chat", session_state::terminating, 20));
  auto list_ids = [&](session_filter f) {
    return ids_of(store_->list(f, "", 100).sessions);
  };
  using v = std::vector<std::string>;
  // Ordered by (created_at, id): ties on created_at go by id.
  EXPECT_EQ(list_ids({}), (v{"e", "b", "c", "d", "a"}));
  session_filter f;
  f.state = session_state::active;
  EXPECT_EQ(list_ids(f), (v{"b", "a"}));
  EXPECT_EQ(store_->count(f), 2u);
  f = {};
  f.role = "r1"; // the CLEANED holder still matches a role filter
  EXPECT_EQ(list_ids(f), (v{"e", "a"}));
  EXPECT_EQ(store_->count(f), 2u);
  f = {};
  f.type = "chat";
  EXPECT_EQ(list_ids(f), (v{"b", "d"}));
  EXPECT_EQ(store_->count(f), 2u);
  f = {};
  f.type = "echo";
  f.state = session_state::active;
  f.role = "r1";
  EXPECT_EQ(list_ids(f), (v{"a"}));
  EXPECT_EQ(store_->count(f), 1u);
  f = {};
  f.type = "nothing";
  EXPECT_TRUE(list_ids(f).empty());
  EXPECT_EQ(store_->count(f), 0u);
  EXPECT_EQ(store_->count({}), 5u);
  // Listed sessions carry their stream position like load does.
  store_->append({batch("a", 1, make_events("a", 1, 4))});
  store_->activate("a");
  auto a = store_->list({}, "", 100).sessions.back();
  EXPECT_EQ(a, *store_->load("a"));
  EXPECT_EQ(a.last_seq, 4u);
  EXPECT_EQ(a.epoch, 2u);
}

TEST_P(session_store_contract, cursor_pagination_misses_nothing) {
  // 25 sessions created in shuffled order with ties on created_at.
  std::vector<session_info> infos;
  for (int i = 0; i < 25; ++i) {
    char id[16];
    std::snprintf(id, sizeof(id), "s%02d", i);
    infos.push_back(make_info(id, "", i % 2 == 0 ? "even" : "odd",
                              session_state::active, 1000 + (24 - i) / 3));
  }
  std::mt19937 rng{42};
  auto shuffled = infos;
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  for (auto& i : shuffled)
    store_->create(i);
  std::sort(infos.begin(), infos.end(), [](auto& x, auto& y) {
    return std::tie(x.created_at, x.id) < std::tie(y.created_at, y.id);
  });
  auto walk = [&](const session_filter& f, size_t limit) {
    std::vector<std::string> seen;
    std::vector<size_t> sizes;
    std::string cursor;
    for (int page = 0; page < 100; ++page) {
      auto p = store_->list(f, cursor, limit);
      sizes.push_back(p.sessions.size());
      for (auto& s : p.sessions)
        seen.push_back(s.id);
      if (p.next_cursor.empty())
        break;
      cursor = p.next_cursor;
    }
    return std::make_pair(seen, sizes);
  };
  auto [seen, sizes] = walk({}, 10);
  EXPECT_EQ(seen, ids_of(infos)); // exact order, no duplicate, no miss
  EXPECT_EQ(sizes, (std::vector<size_t>{10, 10, 5}));
  // With a filter, and with a page size dividing the count exactly.
  session_filter odd;
  odd.type = "odd";
  std::vector<std::string> expected_odd;
  for (auto& i : infos)
    if (i.type == "odd")
      expected_odd.push_back(i.id);
  auto [seen_odd, sizes_odd] = walk(odd, 4);
  EXPECT_EQ(seen_odd, expected_odd);
  EXPECT_EQ(sizes_odd, (std::vector<size_t>{4, 4, 4}));
  auto [seen_one, sizes_one] = walk({}, 1);
  EXPECT_EQ(seen_one, ids_of(infos));
  EXPECT_EQ(sizes_one.size(), 25u);
  // A session created after the first page, sorting after it, still shows.
  auto first = store_->list({}, "", 10);
  store_->create(make_info("zz", "", "late", session_state::active, 5000));
  std::vector<std::string> rest;
  std::string cursor = first.next_cursor;
  for (int page = 0; page < 10 && !cursor.empty(); ++page) {
    auto p = store_->list({}, cursor, 10);
    for (auto& s : p.sessions)
      rest.push_back(s.id);
    cursor = p.next_cursor;
  }
  ASSERT_EQ(rest.size(), 16u);
  EXPECT_EQ(rest.back(), "zz");
}

TEST_P(session_store_contract, list_refuses_bad_cursor_and_zero_limit) {
  store_->create(make_info("a"));
  store_->create(make_info("b"));
  for (std::string bad : {"garbage", "not-a-cursor:", "%%%", "c1.zz"})
    EXPECT_STORE_ERROR(store_->list({}, bad, 10), code::invalid_argument);
  EXPECT_STORE_ERROR(store_->list({}, "", 0), code::invalid_argument);
}

TEST_P(session_store_contract, remove_deletes_session_and_events) {
  store_->create(make_info("s1", "agent-1"));
  store_->create(make_info("s2"));
  store_->append({batch("s1", 1, make_events("s1", 1, 5)),
                  batch("s2", 1, make_events("s2", 1, 2))});
  store_->remove("s1");
  EXPECT_FALSE(store_->load("s1"));
  EXPECT_TRUE(store_->read_events("s1", 0, 100).empty());
  EXPECT_FALSE(store_->find_by_role("agent-1"));
  EXPECT_EQ(store_->count({}), 1u);
  EXPECT_EQ(store_->read_events("s2", 0, 100).size(), 2u); // untouched
  store_->remove("ghost"); // no-op
  // The id starts over from seq 1.
  store_->create(make_info("s1", "agent-1"));
  EXPECT_STORE_ERROR(store_->append({batch("s1", 1, make_events("s1", 6, 1))}),
                     code::seq_gap);
  store_->append({batch("s1", 1, make_events("s1", 1, 1))});
  EXPECT_EQ(store_->load("s1")->last_seq, 1u);
}

TEST_P(session_store_contract, concurrent_writers_and_readers) {
  constexpr int sessions = 4;
  constexpr int appends = 40;
  for (int s = 0; s < sessions; ++s)
    store_->create(make_info("s" + std::to_string(s)));
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int s = 0; s < sessions; ++s)
    threads.emplace_back([&, s] {
      auto id = "s" + std::to_string(s);
      try {
        for (int k = 0; k < appends; ++k)
          store_->append({batch(id, 1, make_events(id, 1 + k * 3u, 3))});
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
        ++errors;
      }
    });
  threads.emplace_back([&] {
    try {
      for (int k = 0; k < 100; ++k) {
        for (int s = 0; s < sessions; ++s) {
          auto id = "s" + std::to_string(s);
          auto info = store_->load(id);
          auto evs = store_->read_events(id, 0, 1000);
          // A reader never sees a torn batch.
          EXPECT_EQ(evs.size() % 3, 0u);
          EXPECT_EQ(seqs_of(evs), range(1, evs.size()));
          EXPECT_TRUE(info);
        }
        store_->list({}, "", 2);
        store_->count({});
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
      ++errors;
    }
  });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(errors, 0);
  for (int s = 0; s < sessions; ++s) {
    auto id = "s" + std::to_string(s);
    EXPECT_EQ(store_->load(id)->last_seq, appends * 3u);
    EXPECT_EQ(seqs_of(all_events(*store_, id)), range(1, appends * 3u));
  }
}

TEST_P(session_store_contract, concurrent_activations_get_distinct_epochs) {
  store_->create(make_info("s1")); // epoch 1
  constexpr int threads_n = 4;
  constexpr int per_thread = 15;
  std::vector<std::vector<uint64_t>> got(threads_n);
  std::vector<std::thread> threads;
  for (int t = 0; t < threads_n; ++t)
    threads.emplace_back([&, t] {
      auto handle = second_handle(); // another process or node
      for (int k = 0; k < per_thread; ++k)
        got[static_cast<size_t>(t)].push_back(handle->activate("s1"));
    });
  for (auto& t : threads)
    t.join();
  std::set<uint64_t> all;
  for (auto& v : got)
    all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(threads_n * per_thread));
  EXPECT_EQ(*all.begin(), 2u);
  EXPECT_EQ(*all.rbegin(), 1u + threads_n * per_thread);
  EXPECT_EQ(store_->load("s1")->epoch, 1u + threads_n * per_thread);
}

// Two activations race: the old writer keeps appending while a new one
// activates. Whatever the timing, nothing the old epoch writes may land after
// the new activation took over.
TEST_P(session_store_contract, an_old_writer_never_writes_after_a_new_activation) {
  store_->create(make_info("s1"));
  auto old_epoch = store_->activate("s1");
  old_writer old{second_handle(), "s1", old_epoch};
  old.wait_until_written(20); // let it get going, then take over
  auto new_epoch = store_->activate("s1");
  auto taken_at = store_->load("s1")->last_seq;
  store_->append({batch("s1", new_epoch, make_events("s1", taken_at + 1, 3, new_epoch))});
  EXPECT_TRUE(old.join_fenced());
  EXPECT_GT(new_epoch, old_epoch);
  auto evs = all_events(*store_, "s1");
  ASSERT_EQ(seqs_of(evs), range(1, taken_at + 3));
  for (auto& e : evs)
    EXPECT_EQ(e.epoch, e.seq <= taken_at ? old_epoch : new_epoch) << e.seq;
}

// --- retention (purge) ----------------------------------------------------------

constexpr micros t0 = 1'800'000'000'000'000; // "now" of the retention tests
constexpr micros one_day = 86'400'000'000;

/// `n` events of `id` from `first`, the k-th stamped `ts_of(seq)`.
template <class TsOf>
std::vector<event> stamped(const std::string& id, uint64_t first, uint64_t n,
                           TsOf ts_of) {
  auto evs = make_events(id, first, n);
  for (auto& e : evs)
    e.ts = ts_of(e.seq);
  return evs;
}

/// A snapshot of `id` that covers the events up to `covered`.
session_info covering(const std::string& id, uint64_t covered,
                      session_state state = session_state::active,
                      micros updated_at = t0) {
  auto info = make_info(id, "", "echo", state);
  info.last_seq = covered;
  info.updated_at = updated_at;
  return info;
}

retention_policy event_rule(micros max_age, uint64_t keep, size_t chunk) {
  retention_policy p;
  p.max_event_age = std::chrono::microseconds(max_age);
  p.keep_events = keep;
  p.chunk_rows = chunk;
  return p;
}

/// Three sessions of ten events that each rule limits differently, under
/// max age 1 day and keep 3:
///   by_age:  events 1-6 are 2 days old, 7-10 fresh   → 7..10 stay
///   by_keep: all 2 days old                          → the newest 3 stay
///   by_snap: all old, the snapshot covers only 1-5   → 6..10 stay
void seed_event_retention(session_store& store) {
  auto old_ts = [](uint64_t) { return t0 - 2 * one_day; };
  for (auto id : {"by_age", "by_keep", "by_snap"})
    store.create(make_info(id));
  store.append({batch("by_age", 1, stamped("by_age", 1, 10, [](uint64_t s) {
                        return s <= 6 ? t0 - 2 * one_day : t0 - 1000;
                      }),
                      covering("by_age", 10))});
  store.append({batch("by_keep", 1, stamped("by_keep", 1, 10, old_ts),
                      covering("by_keep", 10))});
  store.append({batch("by_snap", 1, stamped("by_snap", 1, 5, old_ts),
                      covering("by_snap", 5))});
  store.append({batch("by_snap", 1, stamped("by_snap", 6, 5, old_ts))});
}

TEST_P(session_store_contract, purge_deletes_old_events_but_never_needed_ones) {
  seed_event_retention(*store_);
  auto r = store_->purge(event_rule(one_day, 3, 4), t0); // 4: several chunks
  EXPECT_EQ(r.events, 6u + 7u + 5u);
  EXPECT_EQ(r.sessions, 0u);
  EXPECT_FALSE(r.truncated);
  EXPECT_EQ(seqs_of(all_events(*store_, "by_age")), range(7, 10));
  EXPECT_EQ(seqs_of(all_events(*store_, "by_keep")), range(8, 10));
  EXPECT_EQ(seqs_of(all_events(*store_, "by_snap")), range(6, 10));
  // Reading from an early seq starts at the oldest kept event.
  EXPECT_EQ(store_->read_events("by_age", 2, 2).front().seq, 7u);
  // Nothing more may go: a second purge deletes nothing.
  EXPECT_EQ(store_->purge(event_rule(one_day, 3, 4), t0).events, 0u);
  // Sessions are unchanged and go on where they were.
  for (auto id : {"by_age", "by_keep", "by_snap"}) {
    EXPECT_EQ(store_->load(id)->last_seq, 10u) << id;
    store_->append({batch(id, 1, make_events(id, 11, 1))});
    EXPECT_EQ(store_->load(id)->last_seq, 11u) << id;
  }
  // One more event pushes by_keep's seq 8 out of the newest three.
  EXPECT_EQ(store_->purge(event_rule(one_day, 3, 4), t0).events, 1u);
  EXPECT_EQ(seqs_of(all_events(*store_, "by_keep")), range(9, 11));
}

TEST_P(session_store_contract, purge_with_a_row_budget_resumes_where_it_stopped) {
  seed_event_retention(*store_);
  auto policy = event_rule(one_day, 3, 2);
  policy.max_rows = 5;
  uint64_t total = 0;
  int calls = 0;
  for (; calls < 20; ++calls) {
    auto r = store_->purge(policy, t0);
    // The budget is checked between transactions of at most chunk_rows.
    EXPECT_LE(r.events, policy.max_rows + policy.chunk_rows - 1);
    total += r.events;
    if (!r.truncated)
      break;
  }
  EXPECT_GE(calls, 3);
  EXPECT_EQ(total, 18u);
  EXPECT_EQ(seqs_of(all_events(*store_, "by_keep")), range(8, 10));
}

TEST_P(session_store_contract, purge_removes_cleaned_sessions_after_their_grace) {
  // Expired: CLEANED and last updated 8 days ago, with 7 events.
  store_->create(make_info("expired", "agent-x"));
  store_->append({batch("expired", 1, make_events("expired", 1, 7),
                        covering("expired", 7, session_state::cleaned,
                                 t0 - 8 * one_day))});
  // Kept: cleaned recently; old but not CLEANED.
  store_->create(make_info("recent"));
  store_->append({batch("recent", 1, make_events("recent", 1, 2),
                        covering("recent", 2, session_state::cleaned, t0 - one_day))});
  store_->create(make_info("live"));
  store_->append({batch("live", 1, make_events("live", 1, 2),
                        covering("live", 2, session_state::active,
                                 t0 - 30 * one_day))});
  retention_policy off;
  EXPECT_EQ(store_->purge(off, t0).sessions, 0u) << "both rules off by default";
  retention_policy p;
  p.cleaned_grace = std::chrono::microseconds(7 * one_day);
  p.chunk_rows = 3; // the expired session's events take three transactions
  auto r = store_->purge(p, t0);
  EXPECT_EQ(r.sessions, 1u);
  EXPECT_EQ(r.events, 7u);
  EXPECT_FALSE(store_->load("expired"));
  EXPECT_TRUE(store_->read_events("expired", 0, 100).empty());
  EXPECT_EQ(store_->count({}), 2u);
  EXPECT_EQ(seqs_of(all_events(*store_, "recent")), range(1, 2));
  EXPECT_EQ(seqs_of(all_events(*store_, "live")), range(1, 2));
  EXPECT_EQ(store_->purge(p, t0).sessions, 0u);
  // Its id is free again.
  store_->create(make_info("expired"));
}

TEST_P(session_store_contract, purge_runs_while_sessions_are_written) {
  constexpr int sessions = 3;
  constexpr int appends = 60;
  for (int s = 0; s < sessions; ++s)
    store_->create(make_info("w" + std::to_string(s)));
  std::atomic<bool> done{false};
  std::atomic<int> errors{0};
  std::thread writer([&] {
    try {
      for (int a = 0; a < appends; ++a)
        for (int s = 0; s < sessions; ++s) {
          auto id = "w" + std::to_string(s);
          auto first = static_cast<uint64_t>(a) * 5 + 1;
          store_->append({batch(id, 1, stamped(id, first, 5, [](uint64_t) {
                                  return t0 - 2 * one_day;
                                }),
                                covering(id, first + 4))});
        }
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
      ++errors;
    }
    done = true;
  });
  auto handle = second_handle(); // retention may run in another process
  uint64_t purged = 0;
  for (int guard = 0; guard < 100'000 && !done; ++guard)
    purged += handle->purge(event_rule(one_day, 10, 7), t0).events;
  writer.join();
  purged += handle->purge(event_rule(one_day, 10, 7), t0).events;
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(purged, sessions * (appends * 5u - 10u));
  for (int s = 0; s < sessions; ++s) {
    auto id = "w" + std::to_string(s);
    EXPECT_EQ(store_->load(id)->last_seq, appends * 5u);
    EXPECT_EQ(seqs_of(all_events(*store_, id)), range(appends * 5 - 9, appends * 5));
  }
}

INSTANTIATE_TEST_SUITE_P(stores, session_store_contract,
                         ::testing::Values("memory", "sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

// --- SQLite only ----------------------------------------------------------------

class sqlite_store_test : public ::testing::Test {
protected:
  std::string db() const { return dir_.file("store.db"); }

  /// Runs SQL on the file with the raw C API (as another tool would).
  void raw_exec(const std::string& path, const std::string& sql) {
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &h), SQLITE_OK);
    char* err = nullptr;
    int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
    std::string msg = err != nullptr ? err : "";
    sqlite3_free(err);
    sqlite3_close(h);
    ASSERT_EQ(rc, SQLITE_OK) << msg;
  }

  int64_t raw_int(const std::string& path, const std::string& sql) {
    sqlite3* h = nullptr;
    sqlite3_open(path.c_str(), &h);
    sqlite3_stmt* st = nullptr;
    int64_t out = -1;
    if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) == SQLITE_OK
        && sqlite3_step(st) == SQLITE_ROW)
      out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return out;
  }

  std::string raw_text(const std::string& path, const std::string& sql) {
    sqlite3* h = nullptr;
    sqlite3_open(path.c_str(), &h);
    sqlite3_stmt* st = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) == SQLITE_OK
        && sqlite3_step(st) == SQLITE_ROW)
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return out;
  }

  temp_dir dir_;
};

TEST_F(sqlite_store_test, reopening_gives_back_everything) {
  session_info snap;
  {
    sqlite_store store{db()};
    store.create(make_info("s1", "agent-1", "echo", session_state::created, 10));
    store.create(make_info("s2", "", "chat", session_state::active, 20));
    snap = make_info("s1", "agent-1", "echo", session_state::active, 10);
    snap.metadata = {{"a", "b"}};
    snap.message_count = 7;
    snap.last_seq = 7; // it covers its batch, as a session's does
    store.append({batch("s1", 1, make_events("s1", 1, 7), snap),
                  batch("s2", 1, make_events("s2", 1, 2))});
    EXPECT_EQ(store.activate("s1"), 2u);
  }
  sqlite_store store{db()};
  auto s1 = store.load("s1");
  ASSERT_TRUE(s1);
  auto expected = snap;
  expected.last_seq = 7;
  expected.epoch = 2;
  EXPECT_EQ(*s1, expected);
  EXPECT_EQ(all_events(store, "s1"), make_events("s1", 1, 7));
  EXPECT_EQ(all_events(store, "s2"), make_events("s2", 1, 2));
  EXPECT_EQ(store.find_by_role("agent-1"), std::optional<std::string>{"s1"});
  EXPECT_EQ(ids_of(store.list({}, "", 10).sessions),
            (std::vector<std::string>{"s1", "s2"}));
  EXPECT_STORE_ERROR(store.append({batch("s1", 1, make_events("s1", 8, 1))}),
                     code::stale_epoch);
  // The file is what the header promises: WAL, our id, current version.
  EXPECT_EQ(raw_text(db(), "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw_int(db(), "PRAGMA application_id"), sqlite_store::application_id);
  EXPECT_EQ(raw_int(db(), "PRAGMA user_version"), sqlite_store::schema_version);
}

// The version-1 layout as release 1 wrote it (kept here verbatim: the test
// must not depend on the code it checks).
constexpr const char* v1_schema = R"sql(
CREATE TABLE sessions (
  id         TEXT PRIMARY KEY NOT NULL,
  role       TEXT NOT NULL DEFAULT '',
  state      TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_seq   INTEGER NOT NULL DEFAULT 0,
  epoch      INTEGER NOT NULL DEFAULT 0,
  snapshot   BLOB NOT NULL
);
CREATE INDEX sessions_by_created ON sessions (created_at, id);
CREATE UNIQUE INDEX sessions_live_role ON sessions (role)
  WHERE role <> '' AND state <> 'CLEANED';
CREATE TABLE events (
  session_id TEXT NOT NULL,
  seq        INTEGER NOT NULL,
  envelope   BLOB NOT NULL,
  PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
PRAGMA application_id = 1397248852;
PRAGMA user_version = 1;
)sql";

std::string hex(const std::string& bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

TEST_F(sqlite_store_test, opens_and_migrates_a_version_1_database) {
  ASSERT_EQ(sqlite_store::schema_version, 4) << "add a test for the new step";
  auto info = make_info("old", "agent-1", "legacy", session_state::active, 10);
  info.message_count = 2;
  info.last_seq = 2; // the snapshot covers both events
  std::string sql = v1_schema;
  sql += "INSERT INTO sessions VALUES ('old', 'agent-1', 'ACTIVE', 10, 2, 3, x'"
         + hex(encode_snapshot(info)) + "');";
  for (uint64_t s = 1; s <= 2; ++s)
    sql += "INSERT INTO events VALUES ('old', " + std::to_string(s) + ", x'"
           + hex(encode_event(make_event("old", s))) + "');";
  raw_exec(db(), sql);
  ASSERT_EQ(raw_int(db(), "PRAGMA user_version"), 1);

  sqlite_store store{db()};
  auto got = store.load("old");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->type, "legacy");
  EXPECT_EQ(got->last_seq, 2u);
  EXPECT_EQ(got->epoch, 3u);
  EXPECT_EQ(all_events(store, "old"), make_events("old", 1, 2));
  // The type filter (the column version 2 added) knows the old session.
  session_filter f;
  f.type = "legacy";
  EXPECT_EQ(store.count(f), 1u);
  EXPECT_EQ(ids_of(store.list(f, "", 10).sessions), std::vector<std::string>{"old"});
  store.append({batch("old", 3, make_events("old", 3, 1, 3))});
  EXPECT_EQ(store.load("old")->last_seq, 3u);
  EXPECT_EQ(raw_int(db(), "PRAGMA user_version"), sqlite_store::schema_version);
  // Version 3 filled the retention columns from the old bytes: event k has
  // ts base + k, and the snapshot covers seq 2, so a cutoff of base + 2
  // deletes exactly event 1.
  retention_policy p;
  p.max_event_age = std::chrono::microseconds(1);
  auto r = store.purge(p, make_event("old", 3).ts);
  EXPECT_EQ(r.events, 1u);
  EXPECT_EQ(seqs_of(all_events(store, "old")), range(2, 3));
}

TEST_F(sqlite_store_test, version_4_drops_the_type_index_and_lists_by_type_alike) {
  {
    sqlite_store store{db()};
    // Created out of id order: lists follow created_at.
    store.create(make_info("s3", "", "chat", session_state::created, 30));
    store.create(make_info("s1", "", "agent", session_state::created, 10));
    store.create(make_info("s2", "", "chat", session_state::created, 20));
    store.create(make_info("s4", "", "agent", session_state::created, 40));
  }
  // Back to version 3 as it was: the same tables with sessions_by_type.
  raw_exec(db(), "CREATE INDEX sessions_by_type ON sessions (type);"
                 "PRAGMA user_version = 3;");
  auto index_count = [&] {
    return raw_int(db(), "SELECT count(*) FROM sqlite_schema"
                         " WHERE name = 'sessions_by_type'");
  };
  ASSERT_EQ(index_count(), 1);
  sqlite_store store{db()};
  EXPECT_EQ(raw_int(db(), "PRAGMA user_version"), 4);
  EXPECT_EQ(index_count(), 0);
  session_filter chat;
  chat.type = "chat";
  EXPECT_EQ(store.count(chat), 2u);
  EXPECT_EQ(ids_of(store.list(chat, "", 10).sessions),
            (std::vector<std::string>{"s2", "s3"}));
  // Paging by type goes on where the last page ended.
  session_filter agent;
  agent.type = "agent";
  auto first = store.list(agent, "", 1);
  EXPECT_EQ(ids_of(first.sessions), std::vector<std::string>{"s1"});
  ASSERT_FALSE(first.next_cursor.empty());
  auto second = store.list(agent, first.next_cursor, 1);
  EXPECT_EQ(ids_of(second.sessions), std::vector<std::string>{"s4"});
  EXPECT_TRUE(second.next_cursor.empty());
  EXPECT_EQ(ids_of(store.list({}, "", 10).sessions),
            (std::vector<std::string>{"s1", "s2", "s3", "s4"}));
}

TEST_F(sqlite_store_test, the_log_is_checkpointed_and_starts_over_while_commits_go_on) {
  sqlite_options opts;
  opts.checkpoint_pages = 20; // the default is 10,000
  constexpr uint64_t n = 300;
  {
    sqlite_store store{db(), opts};
    store.create(make_info("a"));
    store.create(make_info("b"));
    // One event per commit (~2 log pages each: 1,200 pages in all) while
    // the reader reads, far past the threshold.
    for (uint64_t s = 1; s <= n; ++s) {
      store.append({batch("a", 1, {make_event("a", s)})});
      store.append({batch("b", 1, {make_event("b", s)})});
      if (s % 50 == 0) {
        ASSERT_EQ(seqs_of(store.read_events("a", s - 1, 10)), range(s, s));
      }
    }
    // The log started over after checkpoints: it never held most of it.
    EXPECT_LT(fs::file_size(db() + "-wal"), uintmax_t{300} * 4120);
    EXPECT_EQ(seqs_of(all_events(store, "a")), range(1, n));
  }
  sqlite_store again{db()};
  EXPECT_EQ(seqs_of(all_events(again, "a")), range(1, n));
  EXPECT_EQ(seqs_of(all_events(again, "b")), range(1, n));
}

TEST_F(sqlite_store_test, a_long_read_keeps_the_log_but_never_blocks_commits) {
  sqlite_options opts;
  opts.checkpoint_pages = 20;
  sqlite_store store{db(), opts};
  store.create(make_info("a"));
  store.append({batch("a", 1, make_events("a", 1, 1))});
  // Another process reading on (as `sessionhost backup` does): its snapshot
  // keeps the log from being copied past it and from starting over.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open(db().c_str(), &reader), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM events;", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  for (uint64_t s = 2; s <= 200; ++s) // ~400 log pages, past the threshold
    store.append({batch("a", 1, make_events("a", s, 1))});
  EXPECT_EQ(seqs_of(all_events(store, "a")), range(1, 200));
  sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(reader);
  for (uint64_t s = 201; s <= 300; ++s)
    store.append({batch("a", 1, make_events("a", s, 1))});
  EXPECT_EQ(seqs_of(all_events(store, "a")), range(1, 300));
}

TEST_F(sqlite_store_test, refuses_a_newer_schema_untouched) {
  { sqlite_store store{db()}; }
  raw_exec(db(), "PRAGMA journal_mode = DELETE; PRAGMA user_version = 99;");
  auto before = read_bytes(db());
  EXPECT_STORE_ERROR(sqlite_store{db()}, code::not_a_database);
  EXPECT_EQ(read_bytes(db()), before);
}

TEST_F(sqlite_store_test, refuses_a_file_that_is_not_sqlite_untouched) {
  std::string junk;
  std::mt19937 rng{7};
  for (int i = 0; i < 8192; ++i)
    junk += static_cast<char>(rng() & 0xFF);
  write_bytes(db(), junk);
  EXPECT_STORE_ERROR(sqlite_store{db()}, code::not_a_database);
  EXPECT_EQ(read_bytes(db()), junk);
  EXPECT_FALSE(fs::exists(db() + "-wal"));
  // Text that merely starts like a database is refused too.
  write_bytes(db(), "SQLite format 3 but not really");
  EXPECT_STORE_ERROR(sqlite_store{db()}, code::not_a_database);
  EXPECT_EQ(read_bytes(db()), "SQLite format 3 but not really");
}

TEST_F(sqlite_store_test, refuses_a_foreign_sqlite_database_untouched) {
  raw_exec(db(), "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);"
                 "INSERT INTO customers (name) VALUES ('ada');");
  auto before = read_bytes(db());
  EXPECT_STORE_ERROR(sqlite_store{db()}, code::not_a_database);
  EXPECT_EQ(read_bytes(db()), before);
  EXPECT_FALSE(fs::exists(db() + "-wal"));
  EXPECT_EQ(raw_text(db(), "PRAGMA journal_mode"), "delete");
  EXPECT_EQ(raw_text(db(), "SELECT name FROM customers"), "ada");
}

TEST_F(sqlite_store_test, an_empty_file_becomes_a_new_database) {
  write_bytes(db(), "");
  sqlite_store store{db()};
  store.create(make_info("s1"));
  EXPECT_TRUE(store.load("s1"));
}

TEST_F(sqlite_store_test, a_missing_directory_is_an_io_error) {
  EXPECT_STORE_ERROR(sqlite_store{dir_.file("no/such/dir/store.db")}, code::io);
}

TEST_F(sqlite_store_test, undecodable_bytes_are_reported_as_corrupt) {
  {
    sqlite_store store{db()};
    store.create(make_info("bad"));
    store.create(make_info("good"));
    store.append({batch("bad", 1, make_events("bad", 1, 2)),
                  batch("good", 1, make_events("good", 1, 2))});
  }
  raw_exec(db(), "UPDATE sessions SET snapshot = x'ffffffffffffffffff' WHERE id = 'bad';"
                 "UPDATE events SET envelope = x'0a' WHERE session_id = 'bad' AND seq = 2;");
  sqlite_store store{db()};
  EXPECT_STORE_ERROR(store.load("bad"), code::corrupt);
  {
    // A batched load fails only the bad one, which stays unclaimed.
    auto got = store.load_activate_many({"bad", "good"});
    ASSERT_NO_FATAL_FAILURE(expect_only_bad_failed(got));
    EXPECT_EQ(got[1].info->last_seq, 2u);
    EXPECT_EQ(raw_int(db(), "SELECT epoch FROM sessions WHERE id = 'bad'"), 1);
  }
  // The list names it and goes on with the others.
  auto page = store.list({}, "", 10);
  ASSERT_EQ(page.sessions.size(), 1u);
  EXPECT_EQ(page.sessions[0].id, "good");
  EXPECT_EQ(page.unreadable, std::vector<std::string>{"bad"});
  // It counts toward the limit and the cursor goes past it.
  auto first = store.list({}, "", 1);
  auto second = store.list({}, first.next_cursor, 1);
  EXPECT_EQ(first.sessions.size() + second.sessions.size(), 1u);
  EXPECT_EQ(first.unreadable.size() + second.unreadable.size(), 1u);
  EXPECT_TRUE(second.next_cursor.empty());
  EXPECT_EQ(store.read_events("bad", 0, 1).size(), 1u); // seq 1 is intact
  EXPECT_STORE_ERROR(store.read_events("bad", 1, 10), code::corrupt);
  // Other sessions are unaffected.
  EXPECT_EQ(store.load("good")->last_seq, 2u);
  EXPECT_EQ(store.read_events("good", 0, 10).size(), 2u);
}

TEST_F(sqlite_store_test, backup_copies_a_live_database_consistently) {
  sqlite_store store{db()};
  store.create(make_info("busy"));
  store.create(make_info("quiet", "agent-q"));
  store.append({batch("quiet", 1, make_events("quiet", 1, 3))});
  std::atomic<uint64_t> acked{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    uint64_t next = 1;
    // Bounded: at most 20 s or until told to stop.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!stop && std::chrono::steady_clock::now() < deadline) {
      store.append({batch("busy", 1, make_events("busy", next, 10))});
      next += 10;
      acked = next - 1;
    }
  });
  for (int i = 0; i < 5000 && acked < 200; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto before = acked.load();
  auto copy = dir_.file("copy.db");
  store.backup(copy);
  auto after = acked.load();
  // Keep writing a little after the copy, then stop.
  for (int i = 0; i < 5000 && acked < after + 100; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  stop = true;
  writer.join();
  EXPECT_GE(before, 200u);

  sqlite_store restored{copy};
  auto busy = restored.load("busy");
  ASSERT_TRUE(busy);
  // Everything acknowledged before the backup began is in the copy; the copy
  // is a prefix of the stream, without a torn batch.
  EXPECT_GE(busy->last_seq, before);
  EXPECT_LE(busy->last_seq, store.load("busy")->last_seq);
  EXPECT_EQ(busy->last_seq % 10, 0u);
  EXPECT_EQ(all_events(restored, "busy"), make_events("busy", 1, busy->last_seq));
  EXPECT_EQ(all_events(restored, "quiet"), make_events("quiet", 1, 3));
  EXPECT_EQ(restored.find_by_role("agent-q"), std::optional<std::string>{"quiet"});
  // The copy is a database of its own.
  restored.append({batch("quiet", 1, make_events("quiet", 4, 1))});
  EXPECT_EQ(store.load("quiet")->last_seq, 3u);
  EXPECT_FALSE(fs::exists(copy + ".partial"));
}

TEST_F(sqlite_store_test, two_handles_on_one_file_share_the_fence) {
  sqlite_store a{db()};
  sqlite_store b{db()};
  a.create(make_info("s1"));
  a.append({batch("s1", 1, make_events("s1", 1, 1))});
  EXPECT_EQ(b.activate("s1"), 2u);
  EXPECT_STORE_ERROR(a.append({batch("s1", 1, make_events("s1", 2, 1))}),
                     code::stale_epoch);
  EXPECT_EQ(a.load("s1")->epoch, 2u);
}

// Memory statistics cost every SQLite allocation a process-wide mutex; the
// first store turns them off (ctest runs each test in a process of its own,
// so the store is the first to use SQLite here).
TEST_F(sqlite_store_test, the_first_store_turns_sqlite_memory_statistics_off) {
  if (sqlite3_memory_used() > 0)
    GTEST_SKIP() << "SQLite was used in this process before, statistics on";
  {
    sqlite_store store{db()};
    store.create(make_info("s1"));
    store.append({batch("s1", 1, make_events("s1", 1, 3))});
    auto got = store.load_activate_many({"s1"});
    ASSERT_TRUE(got.at(0).info);
    EXPECT_EQ(got[0].info->last_seq, 3u);
    // The store holds its connections, statements and pages now: counted
    // with statistics on.
    EXPECT_EQ(sqlite3_memory_used(), 0);
  }
  // Another store in the same process works alike.
  sqlite_store again{db()};
  EXPECT_EQ(again.load("s1")->epoch, 2u);
  EXPECT_EQ(sqlite3_memory_used(), 0);
}

// --- PostgreSQL only ------------------------------------------------------------

/// Runs SQL on a PostgreSQL database directly (as an operator or another
/// binary would).
void pg_exec(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::work tx{c};
  tx.exec0(sql);
  tx.commit();
}

/// The one integer `sql` selects, read directly.
int64_t pg_query_int(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::work tx{c};
  return tx.exec1(sql)[0].as<int64_t>();
}

TEST(postgres_store_test, reopening_gives_back_everything) {
  auto url = testing::fresh_postgres_database();
  auto snap = make_info("s1", "agent-1", "echo", session_state::active, 10);
  snap.metadata = {{"a", "b"}};
  snap.last_seq = 4; // it covers its batch, as a session's does
  {
    postgres_store store{url};
    store.create(make_info("s1", "agent-1", "echo", session_state::created, 10));
    store.append({batch("s1", 1, make_events("s1", 1, 4), snap)});
    store.activate("s1");
  }
  postgres_store store{url}; // the schema exists now: opening keeps the data
  auto expected = snap;
  expected.last_seq = 4;
  expected.epoch = 2;
  EXPECT_EQ(store.load("s1"), std::optional<session_info>{expected});
  EXPECT_EQ(all_events(store, "s1"), make_events("s1", 1, 4));
  EXPECT_EQ(store.find_by_role("agent-1"), std::optional<std::string>{"s1"});
}

TEST(postgres_store_test, refuses_a_newer_schema) {
  auto url = testing::fresh_postgres_database();
  {
    postgres_store store{url};
    store.create(make_info("s1"));
  }
  pg_exec(url, "UPDATE sessionhost.meta SET value = '99' WHERE key = 'schema_version'");
  EXPECT_STORE_ERROR(postgres_store{url}, code::not_a_database);
  pg_exec(url, "UPDATE sessionhost.meta SET value = '"
                 + std::to_string(postgres_store::schema_version)
                 + "' WHERE key = 'schema_version'");
  EXPECT_TRUE(postgres_store{url}.load("s1"));
}

TEST(postgres_store_test, migrates_version_1_and_fills_the_retention_columns) {
  ASSERT_EQ(postgres_store::schema_version, 2) << "add a test for the new step";
  auto url = testing::fresh_postgres_database();
  {
    postgres_store store{url};
    store.create(make_info("old"));
    auto snap = make_info("old");
    snap.last_seq = 2; // covers both events
    store.append({batch("old", 1, make_events("old", 1, 2), snap)});
  }
  // Back to version 1: the same rows without the columns version 2 added.
  pg_exec(url, "ALTER TABLE sessionhost.sessions DROP COLUMN updated_at,"
               " DROP COLUMN snapshot_seq;"
               " ALTER TABLE sessionhost.events DROP COLUMN ts;"
               " UPDATE sessionhost.meta SET value = '1'"
               " WHERE key = 'schema_version'");
  postgres_store store{url};
  EXPECT_EQ(all_events(store, "old"), make_events("old", 1, 2));
  // Event k has ts base + k and the snapshot covers seq 2: a cutoff of
  // base + 2 deletes exactly event 1.
  retention_policy p;
  p.max_event_age = std::chrono::microseconds(1);
  EXPECT_EQ(store.purge(p, make_event("old", 3).ts).events, 1u);
  EXPECT_EQ(seqs_of(all_events(store, "old")), range(2, 2));
}

TEST(postgres_store_test, undecodable_bytes_are_reported_as_corrupt) {
  auto url = testing::fresh_postgres_database();
  postgres_store store{url};
  store.create(make_info("bad"));
  store.create(make_info("good"));
  store.append({batch("bad", 1, make_events("bad", 1, 2))});
  pg_exec(url, "UPDATE sessionhost.sessions SET snapshot = '\\xffffffffffffffffff'"
               " WHERE id = 'bad'");
  pg_exec(url, "UPDATE sessionhost.events SET envelope = '\\x0a'"
               " WHERE session_id = 'bad' AND seq = 2");
  EXPECT_STORE_ERROR(store.load("bad"), code::corrupt);
  EXPECT_STORE_ERROR(store.read_events("bad", 1, 10), code::corrupt);
  EXPECT_EQ(store.read_events("bad", 0, 1).size(), 1u);
  EXPECT_TRUE(store.load("good"));
  // A batched load fails only the bad one, which stays unclaimed.
  ASSERT_NO_FATAL_FAILURE(expect_only_bad_failed(store.load_activate_many({"bad", "good"})));
  EXPECT_EQ(pg_query_int(url, "SELECT epoch FROM sessionhost.sessions WHERE id = 'bad'"), 1);
}

// --- codec ------------------------------------------------------------------

TEST(codec, event_round_trips) {
  auto e = make_event("s1", 42, 9);
  e.ts = -5; // before 1970 is still a valid time
  EXPECT_EQ(decode_event(encode_event(e)), e);
  event empty;
  empty.data = "";
  EXPECT_EQ(decode_event(encode_event(empty)), empty);
}

TEST(codec, snapshot_round_trips_without_loaded) {
  auto i = make_info("s1", "r", "echo", session_state::terminating, 77);
  i.metadata = {{"x", "y"}, {"ü", "✓"}};
  i.peer = "p";
  i.peer_connected = true;
  i.last_seq = 10;
  i.epoch = 4;
  i.loaded = true;
  auto back = decode_snapshot(encode_snapshot(i));
  i.loaded = false;
  EXPECT_EQ(back, i);
  for (auto s : {session_state::created, session_state::spawning,
                 session_state::active, session_state::terminating,
                 session_state::cleaned}) {
    i.state = s;
    EXPECT_EQ(decode_snapshot(encode_snapshot(i)).state, s);
  }
}

// Snapshots are encoded through one message per thread, filled again each
// time: nothing of one session's snapshot may show up in the next one's.
TEST(codec, a_snapshot_carries_nothing_of_the_one_encoded_before_it) {
  auto full = make_info("s1", "r", "echo", session_state::active, 77);
  full.metadata = {{"x", "y"}, {"k", std::string(300, 'v')}};
  full.peer = "p";
  full.peer_connected = true;
  full.last_heartbeat = 5;
  full.message_count = 3;
  full.reconnects = 2;
  full.last_seq = 10;
  full.epoch = 4;
  auto bare = make_info("s2", "", "agent", session_state::created, 78);
  ASSERT_EQ(decode_snapshot(encode_snapshot(full)), full);
  EXPECT_EQ(decode_snapshot(encode_snapshot(bare)), bare);
  // A refused snapshot leaves nothing behind either.
  auto bad = full;
  bad.metadata = {{"ok", "fine"}, {"bad", std::string{"\xff", 1}}};
  EXPECT_STORE_ERROR(encode_snapshot(bad), code::invalid_argument);
  EXPECT_EQ(decode_snapshot(encode_snapshot(bare)), bare);
}

TEST(codec, garbage_is_corrupt) {
  for (std::string bad : {std::string{"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11},
                          std::string{"not a protobuf at all"},
                          std::string{"\x0a\x10short", 7}}) {
    EXPECT_STORE_ERROR(decode_event(bad), code::corrupt);
    EXPECT_STORE_ERROR(decode_snapshot(bad), code::corrupt);
  }
  // A snapshot without a state (e.g. empty bytes) is not a snapshot.
  EXPECT_STORE_ERROR(decode_snapshot(""), code::corrupt);
}

TEST(codec, invalid_utf8_is_refused_before_it_is_stored) {
  auto e = make_event("s1", 1);
  e.data = "{\"x\":\"\xc3\x28\"}";
  EXPECT_STORE_ERROR(encode_event(e), code::invalid_argument);
  auto i = make_info("s1");
  i.metadata = {{"k", "\xed\xa0\x80"}}; // a UTF-16 surrogate
  EXPECT_STORE_ERROR(encode_snapshot(i), code::invalid_argument);
  EXPECT_TRUE(is_valid_utf8("plain, ä, ✓, 😀"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf")); // overlong '/'
}

// --- open_store ---------------------------------------------------------------

TEST(open_store, picks_the_store_from_the_url) {
  temp_dir dir;
  auto data_dir = dir.file("nested/data");
  auto s = open_store("", data_dir);
  EXPECT_TRUE(std::dynamic_pointer_cast<sqlite_store>(s));
  EXPECT_TRUE(fs::exists(data_dir + "/sessionhost.db"));
  s->create(make_info("s1"));
  s.reset();
  EXPECT_TRUE(open_store("sqlite:" + data_dir + "/sessionhost.db", "")->load("s1"));
  EXPECT_TRUE(std::dynamic_pointer_cast<memory_store>(open_store("memory:", data_dir)));
  EXPECT_STORE_ERROR(open_store("mysql://x", data_dir), code::invalid_argument);
  EXPECT_STORE_ERROR(open_store("sqlite:", data_dir), code::invalid_argument);
  // Both PostgreSQL spellings reach the server.
  auto url = testing::fresh_postgres_database();
  auto pg = open_store(url, "");
  EXPECT_TRUE(std::dynamic_pointer_cast<postgres_store>(pg));
  pg->create(make_info("p1"));
  auto alias = "postgres://" + url.substr(std::string{"postgresql://"}.size());
  EXPECT_TRUE(open_store(alias, "")->load("p1"));
}

TEST(open_store, unreachable_postgres_is_an_io_error) {
  // Port 1 on loopback: nothing listens there.
  EXPECT_STORE_ERROR(open_store("postgresql://postgres@127.0.0.1:1/x?connect_timeout=2", ""),
                     code::io);
}

} // namespace
} // namespace sessionhost
