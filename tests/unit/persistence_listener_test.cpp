// The persistence listener's group-commit delay (`commit_delay`): events
// that reach an idle listener within the delay share one store transaction,
// and each is still acknowledged only once it is stored.
#include "real_system.hpp"

#include <mutex>

using namespace sessionhost;
using namespace std::chrono_literals;

namespace {

/// A memory store that records the sessions of every `append` (one
/// transaction each).
class recording_store : public session_store {
public:
  void create(const session_info& info) override { inner_.create(info); }
  void create_many(const std::vector<session_info>& infos) override {
    inner_.create_many(infos);
  }
  void create_started(const std::vector<append_batch>& sessions) override {
    inner_.create_started(sessions);
  }
  void append(const std::vector<append_batch>& batches) override {
    inner_.append(batches);
    std::vector<std::string> ids;
    for (auto& b : batches)
      if (!b.events.empty())
        ids.push_back(b.session_id);
    std::lock_guard<std::mutex> guard{mtx_};
    appends_.push_back(std::move(ids));
  }
  std::vector<event> read_events(const std::string& id, uint64_t after_seq,
                                 size_t limit) override {
    return inner_.read_events(id, after_seq, limit);
  }
  std::optional<session_info> load(const std::string& id) override {
    return inner_.load(id);
  }
  uint64_t activate(const std::string& id) override {
    return inner_.activate(id);
  }
  std::vector<uint64_t>
  activate_many(const std::vector<std::string>& ids) override {
    return inner_.activate_many(ids);
  }
  std::optional<std::string> find_by_role(const std::string& role) override {
    return inner_.find_by_role(role);
  }
  session_page list(const session_filter& filter, const std::string& cursor,
                    size_t limit) override {
    return inner_.list(filter, cursor, limit);
  }
  uint64_t count(const session_filter& filter) override {
    return inner_.count(filter);
  }
  void remove(const std::string& id) override { inner_.remove(id); }
  purge_result purge(const retention_policy& policy, micros now) override {
    return inner_.purge(policy, now);
  }

  /// The sessions with events in each append so far.
  std::vector<std::vector<std::string>> appends() {
    std::lock_guard<std::mutex> guard{mtx_};
    return appends_;
  }

private:
  memory_store inner_;
  std::mutex mtx_;
  std::vector<std::vector<std::string>> appends_;
};

class commit_delay : public ::testing::Test {
protected:
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::shared_ptr<recording_store> store = std::make_shared<recording_store>();
  std::unique_ptr<embedded_host> host;

  void start(std::chrono::microseconds delay) {
    cfg.set("scheduler.max-threads", 2);
    sys = std::make_unique<caf::actor_system>(cfg);
    host_options opts;
    opts.store = store;
    opts.config.idle_timeout = 0ms;
    opts.config.commit_delay = delay;
    host = std::make_unique<embedded_host>(*sys, opts);
  }

  ~commit_delay() override {
    host.reset();
    sys.reset();
  }

  /// A new agent session, active, with its first events stored.
  session_actor active_session(caf::scoped_actor& self, const std::string& name) {
    std::string id;
    session_actor s;
    auto fail = [](caf::error& e) { ADD_FAILURE() << caf::to_string(e); };
    self->request(host->host(), 10s, create_atom::value, std::string{"agent"},
                  name, metadata_map{})
      .receive([&](session_info& info) { id = info.id; }, fail);
    self->request(host->host(), 10s, get_session_atom::value, id)
      .receive([&](session_actor& h) { s = h; }, fail);
    self->request(s, 10s, begin_spawn_atom::value)
      .receive([](session_info&) {}, fail);
    self->request(s, 10s, activate_atom::value, std::string{"agent"})
      .receive([](session_info&) {}, fail);
    return s;
  }
};

} // namespace

TEST_F(commit_delay, events_arriving_within_the_delay_share_one_commit) {
  start(300ms); // far longer than sending two messages takes
  caf::scoped_actor self{*sys};
  auto a = active_session(self, "a");
  auto b = active_session(self, "b");
  auto before = store->appends().size();
  // Both messages are sent before either is acknowledged: the listener,
  // idle after small commits, waits for the second before committing.
  auto ra = self->request(a, 10s, message_atom::value, std::string{"{}"});
  auto rb = self->request(b, 10s, message_atom::value, std::string{"{}"});
  uint64_t seq_a = 0, seq_b = 0;
  auto fail = [](caf::error& e) { ADD_FAILURE() << caf::to_string(e); };
  ra.receive([&](uint64_t seq) { seq_a = seq; }, fail);
  rb.receive([&](uint64_t seq) { seq_b = seq; }, fail);
  ASSERT_GT(seq_a, 0u);
  ASSERT_GT(seq_b, 0u);
  auto appends = store->appends();
  ASSERT_EQ(appends.size(), before + 1) << "one transaction for both";
  EXPECT_EQ(appends.back().size(), 2u);
  // Acknowledged means stored: each session's acknowledged seq is there.
  for (auto& [s, seq] : {std::pair{a, seq_a}, std::pair{b, seq_b}}) {
    std::string id;
    self->request(s, 10s, info_atom::value)
      .receive([&](session_info& info) { id = info.id; }, fail);
    auto evs = store->read_events(id, seq - 1, 10);
    ASSERT_FALSE(evs.empty());
    EXPECT_EQ(evs.front().seq, seq);
  }
}

TEST(commit_delay_config, out_of_range_is_refused) {
  sessionhost_config cfg;
  const char* argv[] = {"test", "--sessionhost.commit-delay=2s"};
  ASSERT_FALSE(cfg.parse(2, const_cast<char**>(argv)));
  EXPECT_THROW(host_config::from(cfg), std::invalid_argument);
}
