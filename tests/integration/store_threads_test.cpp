// A store write never holds the scheduler: on ONE CAF worker (a `serve`
// pinned to one CPU), while a create's commit or a load's claim is held in
// the store, the host and every loaded session still answer; once the store
// call returns, the create or load is answered and durable, and a shutdown
// that came meanwhile answers too. The store is SQLite behind a gate the test
// opens. Every wait is bounded.

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include "call.hpp"
#include "reply.hpp"

#include "host/embedded_host.hpp"
#include "host/error.hpp"
#include "host/store/open_store.hpp"
#include "tests/support/temp_dir.hpp"

using namespace sessionhost;
using namespace std::chrono_literals;

namespace {

/// A real store whose create commits and load claims can be held: once
/// `hold` is called, each such call waits (at most 60 s) until `release`.
class gated_store : public session_store {
public:
  explicit gated_store(store_ptr inner) : inner_(std::move(inner)) {}

  void hold() {
    std::lock_guard<std::mutex> guard{mtx_};
    held_ = true;
  }
  void release() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      held_ = false;
    }
    cv_.notify_all();
  }
  /// Waits (at most `limit`) until a store call is held at the gate.
  bool wait_for_held_call(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> guard{mtx_};
    return cv_.wait_for(guard, limit, [this] { return waiting_ > 0; });
  }

  void create(const session_info& info) override {
    gate();
    inner_->create(info);
  }
  void create_many(const std::vector<session_info>& infos) override {
    gate();
    inner_->create_many(infos);
  }
  void create_started(const std::vector<append_batch>& sessions) override {
    gate();
    inner_->create_started(sessions);
  }
  std::vector<activation>
  load_activate_many(const std::vector<std::string>& ids) override {
    gate();
    return inner_->load_activate_many(ids);
  }
  void append(const std::vector<append_batch>& batches) override {
    inner_->append(batches);
  }
  std::vector<event> read_events(const std::string& id, uint64_t after_seq,
                                 size_t limit) override {
    return inner_->read_events(id, after_seq, limit);
  }
  std::optional<session_info> load(const std::string& id) override {
    return inner_->load(id);
  }
  uint64_t activate(const std::string& id) override {
    gate();
    return inner_->activate(id);
  }
  std::vector<uint64_t>
  activate_many(const std::vector<std::string>& ids) override {
    gate();
    return inner_->activate_many(ids);
  }
  std::optional<std::string> find_by_role(const std::string& role) override {
    return inner_->find_by_role(role);
  }
  session_page list(const session_filter& filter, const std::string& cursor,
                    size_t limit) override {
    return inner_->list(filter, cursor, limit);
  }
  uint64_t count(const session_filter& filter) override {
    return inner_->count(filter);
  }
  void remove(const std::string& id) override { inner_->remove(id); }
  purge_result purge(const retention_policy& policy, micros now) override {
    return inner_->purge(policy, now);
  }

private:
  void gate() {
    std::unique_lock<std::mutex> guard{mtx_};
    if (!held_)
      return;
    ++waiting_;
    cv_.notify_all();
    cv_.wait_for(guard, 60s, [this] { return !held_; });
    --waiting_;
  }

  store_ptr inner_;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool held_ = false;
  int waiting_ = 0;
};

class store_threads : public ::testing::Test {
protected:
  static caf::actor_system_config& init(caf::actor_system_config& c) {
    c.set("scheduler.max-threads", 1); // as `serve` pinned to one CPU
    c.set("logger.file-verbosity", caf::atom("quiet"));
    return c;
  }

  store_threads()
    : sys(init(cfg)),
      self(sys),
      store(std::make_shared<gated_store>(
        open_store("sqlite:" + dir.file("s.db"), ""))) {
    host_options opts;
    opts.store = store;
    opts.config.idle_timeout = 0ms;
    host = std::make_unique<embedded_host>(sys, opts);
  }

  ~store_threads() override {
    store->release(); // whatever happened, nothing stays held
    host.reset();
  }

  template <class T, class Handle, class... Ts>
  test::reply<T> call(const Handle& h, Ts&&... xs) {
    return test::call<T>(self, h, std::forward<Ts>(xs)...);
  }

  session_info create(const std::string& type) {
    auto r = call<session_info>(host->host(), create_atom::value, type,
                                std::string{}, metadata_map{});
    EXPECT_TRUE(r) << (r ? "" : message_of(r.error()));
    return r ? *r : session_info{};
  }

  /// What a user checks of a loaded session while the store is held: the
  /// host locates it and the session itself answers.
  void expect_answers(const std::string& id) {
    auto h = call<session_actor>(host->host(), get_session_atom::value, id);
    ASSERT_TRUE(h) << "the host answers: " << message_of(h.error());
    auto info = call<session_info>(*h, info_atom::value);
    ASSERT_TRUE(info) << "the session answers: " << message_of(info.error());
    EXPECT_EQ(info->id, id);
  }

  sessionhost::testing::temp_dir dir;
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  std::shared_ptr<gated_store> store;
  std::unique_ptr<embedded_host> host;
};

} // namespace

TEST_F(store_threads, a_held_create_commit_stalls_no_loaded_session) {
  auto a = create("echo");
  store->hold();
  auto pending = self->request(host->host(), 30s, create_atom::value,
                               std::string{"echo"}, std::string{},
                               metadata_map{});
  ASSERT_TRUE(store->wait_for_held_call(10s)) << "the create reached the store";
  expect_answers(a.id);
  store->release();
  test::reply<session_info> b{make_error(errc::internal, "no reply")};
  pending.receive([&](session_info& x) { b = std::move(x); },
                  [&](caf::error& e) { b = std::move(e); });
  ASSERT_TRUE(b) << message_of(b.error());
  EXPECT_EQ(b->state, session_state::active);
  auto stored = store->load(b->id);
  ASSERT_TRUE(stored) << "acknowledged, so stored";
  EXPECT_EQ(stored->state, session_state::active);
}

TEST_F(store_threads, a_held_load_claim_stalls_no_loaded_session) {
  auto a = create("echo");
  auto b = create("echo");
  ASSERT_TRUE(call<session_info>(host->host(), unload_atom::value, b.id));
  auto epoch = store->load(b.id)->epoch;
  store->hold();
  auto pending = self->request(host->host(), 30s, load_atom::value, b.id);
  ASSERT_TRUE(store->wait_for_held_call(10s)) << "the load reached the store";
  expect_answers(a.id);
  store->release();
  test::reply<session_info> loaded{make_error(errc::internal, "no reply")};
  pending.receive([&](session_info& x) { loaded = std::move(x); },
                  [&](caf::error& e) { loaded = std::move(e); });
  ASSERT_TRUE(loaded) << message_of(loaded.error());
  EXPECT_TRUE(loaded->loaded);
  EXPECT_EQ(store->load(b.id)->epoch, epoch + 1) << "claimed, durably";
  EXPECT_EQ(loaded->epoch, epoch + 1);
}

TEST_F(store_threads, a_shutdown_during_a_held_load_answers_it_and_the_load) {
  auto a = create("echo");
  auto b = create("echo");
  ASSERT_TRUE(call<session_info>(host->host(), unload_atom::value, b.id));
  store->hold();
  auto load = self->request(host->host(), 30s, load_atom::value, b.id);
  ASSERT_TRUE(store->wait_for_held_call(10s));
  auto shutdown = self->request(host->host(), 30s, shutdown_atom::value);
  store->release();
  test::reply<uint64_t> ended{make_error(errc::internal, "no reply")};
  shutdown.receive([&](uint64_t n) { ended = n; },
                   [&](caf::error& e) { ended = std::move(e); });
  ASSERT_TRUE(ended) << message_of(ended.error());
  EXPECT_EQ(*ended, 1u) << "the one loaded session ended";
  // Claimed while the host went down: refused, never started.
  test::reply<session_info> loaded{make_error(errc::internal, "no reply")};
  load.receive([&](session_info& x) { loaded = std::move(x); },
               [&](caf::error& e) { loaded = std::move(e); });
  ASSERT_FALSE(loaded);
  EXPECT_EQ(code_of(loaded.error()), errc::unavailable);
  EXPECT_TRUE(store->load(a.id)) << "the ended session is stored";
}

TEST_F(store_threads, a_killed_host_takes_its_store_threads_along) {
  // The writer and the loader are busy in the store when the host is
  // killed; the system still ends (the fixture's destructor) once they
  // return.
  create("echo");
  store->hold();
  self->send(host->host(), create_atom::value, std::string{"echo"},
             std::string{}, metadata_map{});
  ASSERT_TRUE(store->wait_for_held_call(10s));
  caf::anon_send_exit(host->host(), caf::exit_reason::kill);
  store->release();
}
