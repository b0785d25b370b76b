// kill -9 against the durable stores: store_crash_child appends as fast as it
// can and reports each acknowledged seq; we SIGKILL it at random moments,
// restart it on the same data, and check that nothing acknowledged was lost,
// that the stream has no gap or duplicate, that the snapshot matches the
// events, and that a restarted writer's epoch fences out the old one.

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

#include <pqxx/pqxx>

#include "host/store/open_store.hpp"
#include "tests/support/postgres_fixture.hpp"

namespace sessionhost {
namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int runs_per_store = 25;
const std::string session_id = "crash-1";

/// What one child run printed before it died.
struct run_output {
  uint64_t epoch = 0;
  std::optional<uint64_t> start;
  std::vector<uint64_t> acks;
  std::vector<uint64_t> snapshot_acks;
  bool fenced = false;
  int exit_code = -1; // -1: killed by a signal
  int signal = 0;
};

/// One running store_crash_child with its stdout on a pipe.
class child_process {
public:
  child_process(const std::string& url, uint64_t seed) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe failed");
    std::vector<std::string> argv = {STORE_CRASH_CHILD, url, session_id,
                                     std::to_string(seed), "30"};
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0)
      throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    fd_ = fds[0];
  }

  ~child_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0)
      ::close(fd_);
  }

  /// Collects output until `until` or until the child exits.
  void read_until(clock_type::time_point until) {
    while (!eof_) {
      auto left = std::chrono::duration_cast<milliseconds>(until - clock_type::now());
      if (left.count() <= 0)
        return;
      pollfd p{fd_, POLLIN, 0};
      int rc = ::poll(&p, 1, static_cast<int>(left.count()));
      if (rc > 0)
        read_some();
    }
  }

  /// Reads until the line `prefix…` shows up, the child exits, or `until`.
  bool wait_for(const std::string& prefix, clock_type::time_point until) {
    while (clock_type::now() < until && !eof_) {
      if (buffer_.find("\n" + prefix) != std::string::npos
          || buffer_.rfind(prefix, 0) == 0)
        return true;
      read_until(std::min(until, clock_type::now() + milliseconds(5)));
    }
    return buffer_.find("\n" + prefix) != std::string::npos
           || buffer_.rfind(prefix, 0) == 0;
  }

  /// SIGKILL, then everything it wrote before dying.
  run_output kill_and_collect() {
    ::kill(pid_, SIGKILL);
    return collect();
  }

  /// Waits (bounded) for the child to exit on its own.
  run_output wait_and_collect(clock_type::time_point until) {
    read_until(until);
    if (!eof_)
      ::kill(pid_, SIGKILL); // overdue: counts as a failure below
    return collect();
  }

private:
  void read_some() {
    char buf[4096];
    auto n = ::read(fd_, buf, sizeof(buf));
    if (n > 0)
      buffer_.append(buf, static_cast<size_t>(n));
    else if (n == 0)
      eof_ = true;
  }

  run_output collect() {
    while (!eof_)
      read_some(); // the child is dead or exiting: EOF comes
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    run_output out;
    if (WIFEXITED(status))
      out.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
      out.signal = WTERMSIG(status);
    // Only complete lines count: a line cut by the kill was not printed.
    std::istringstream in{buffer_.substr(0, buffer_.rfind('\n') + 1)};
    std::string word;
    while (in >> word) {
      if (word == "epoch") {
        in >> out.epoch;
      } else if (word == "start") {
        uint64_t s = 0;
        in >> s;
        out.start = s;
      } else if (word == "ack") {
        uint64_t seq = 0;
        std::string snap;
        in >> seq >> snap;
        out.acks.push_back(seq);
        if (snap == "snap")
          out.snapshot_acks.push_back(seq);
      } else if (word == "fenced") {
        out.fenced = true;
      }
    }
    return out;
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
};

/// Runs before the stored data is checked, once every writer was killed.
using settle_fn = std::function<void()>;

void crash_many_times(const std::string& url, const settle_fn& settle = {}) {
  auto seed = static_cast<unsigned>(std::random_device{}());
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng{seed};
  std::uniform_int_distribution<int> delay_ms{20, 200};

  uint64_t max_acked = 0;
  uint64_t max_snapshot_acked = 0;
  uint64_t last_epoch = 0;
  uint64_t first_epoch = 0;
  int runs_with_acks = 0;
  for (int run = 0; run < runs_per_store; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    child_process child{url, rng()};
    // Even runs kill a writer at work (after its first ack, however slow the
    // start under load); odd runs kill at any moment, start-up included.
    if (run % 2 == 0)
      child.wait_for("ack ", clock_type::now() + std::chrono::seconds(10));
    child.read_until(clock_type::now() + milliseconds(delay_ms(rng)));
    auto out = child.kill_and_collect();
    ASSERT_EQ(out.signal, SIGKILL) << "the child exited on its own with "
                                   << out.exit_code << " (see its stderr)";
    if (out.epoch != 0) {
      // Every run claims a newer epoch than any before it.
      EXPECT_GT(out.epoch, last_epoch);
      last_epoch = out.epoch;
      if (first_epoch == 0)
        first_epoch = out.epoch;
    }
    if (out.start) {
      // A restarted writer continues after everything acknowledged before.
      EXPECT_GE(*out.start, max_acked);
    }
    for (auto seq : out.acks)
      max_acked = std::max(max_acked, seq);
    for (auto seq : out.snapshot_acks)
      max_snapshot_acked = std::max(max_snapshot_acked, seq);
    runs_with_acks += out.acks.empty() ? 0 : 1;
  }
  // The kills must have hit a writer at work, not only start-ups.
  EXPECT_GE(runs_with_acks, runs_per_store / 2);
  EXPECT_GT(max_acked, 0u);

  // Fencing between live processes: a second child takes over while the
  // first is writing; the first must stop with "fenced".
  {
    child_process old_writer{url, rng()};
    ASSERT_TRUE(old_writer.wait_for("ack ", clock_type::now() + std::chrono::seconds(10)));
    child_process new_writer{url, rng()};
    ASSERT_TRUE(new_writer.wait_for("ack ", clock_type::now() + std::chrono::seconds(10)));
    auto old_out = old_writer.wait_and_collect(clock_type::now() + std::chrono::seconds(10));
    EXPECT_TRUE(old_out.fenced);
    EXPECT_EQ(old_out.exit_code, 3);
    auto new_out = new_writer.kill_and_collect();
    EXPECT_GT(new_out.epoch, old_out.epoch);
    ASSERT_TRUE(new_out.start);
    // The new writer started after everything the old one acknowledged.
    for (auto seq : old_out.acks)
      EXPECT_LE(seq, *new_out.start);
    for (auto* out : {&old_out, &new_out}) {
      for (auto seq : out->acks)
        max_acked = std::max(max_acked, seq);
      for (auto seq : out->snapshot_acks)
        max_snapshot_acked = std::max(max_snapshot_acked, seq);
    }
    last_epoch = new_out.epoch;
  }

  // Now look at what is stored.
  if (settle)
    settle();
  auto store = open_store(url, "");
  auto info = store->load(session_id);
  ASSERT_TRUE(info);
  auto stored_last = info->last_seq;
  EXPECT_GE(stored_last, max_acked); // nothing acknowledged was lost
  EXPECT_EQ(info->epoch, last_epoch);
  uint64_t expected = 1;
  uint64_t prev_epoch = 0;
  for (int page = 0; page < 100'000; ++page) {
    auto evs = store->read_events(session_id, expected - 1, 1000);
    if (evs.empty())
      break;
    for (auto& e : evs) {
      ASSERT_EQ(e.seq, expected) << "gap or duplicate";
      ASSERT_NE(e.data.find("{\"n\":" + std::to_string(e.seq) + ","), std::string::npos)
        << e.data;
      // Later runs write with later epochs, never the other way round.
      EXPECT_GE(e.epoch, prev_epoch);
      prev_epoch = e.epoch;
      ++expected;
    }
  }
  EXPECT_EQ(expected - 1, stored_last); // seqs are exactly 1..N
  // The snapshot is one the writers wrote with its events: its counter is
  // its own seq, at most the stored last seq, and no older than the newest
  // acknowledged snapshot.
  ASSERT_TRUE(info->metadata.count("snapshot_seq"));
  auto snapshot_seq = std::stoull(info->metadata.at("snapshot_seq"));
  EXPECT_EQ(info->message_count, snapshot_seq);
  EXPECT_LE(info->message_count, stored_last);
  EXPECT_GE(info->message_count, max_snapshot_acked);

  // The old epochs stay fenced out, and their attempt writes nothing.
  for (auto old : {first_epoch, last_epoch - 1}) {
    append_batch b;
    b.session_id = session_id;
    b.epoch = old;
    event e;
    e.session_id = session_id;
    e.seq = stored_last + 1;
    e.type = "late";
    e.epoch = old;
    b.events.push_back(e);
    try {
      store->append({b});
      ADD_FAILURE() << "append with old epoch " << old << " succeeded";
    } catch (const store_error& err) {
      EXPECT_EQ(err.error_code(), store_error::code::stale_epoch) << err.what();
    }
  }
  EXPECT_EQ(store->load(session_id)->last_seq, stored_last);
}

TEST(store_crash, sqlite_survives_kill_9) {
  char tmpl[] = "/tmp/sessionhost-crash-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  struct cleanup {
    std::string dir;
    ~cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } guard{tmpl};
  crash_many_times("sqlite:" + guard.dir + "/crash.db");
}

// A killed client's last COMMIT can still complete on the server after the
// client is gone (its backend notices only when it answers), so the checks
// wait until no backend but their own is left on the database; reading
// earlier saw the session row before that last commit and its events after.
void wait_for_the_killed_writers_backends(const std::string& url) {
  pqxx::connection c{url};
  for (int i = 0; i < 1000; ++i) { // bounded: 10 s
    pqxx::nontransaction tx{c};
    auto r = tx.exec("SELECT count(*) FROM pg_stat_activity"
                     " WHERE datname = current_database()"
                     " AND backend_type = 'client backend'"
                     " AND pid <> pg_backend_pid()");
    if (r[0][0].as<long>() == 0)
      return;
    std::this_thread::sleep_for(milliseconds(10));
  }
  ADD_FAILURE() << "a killed writer's backend is still running after 10 s";
}

TEST(store_crash, postgres_survives_kill_9) {
  auto url = testing::fresh_postgres_database();
  crash_many_times(url, [&] { wait_for_the_killed_writers_backends(url); });
}

} // namespace
} // namespace sessionhost
