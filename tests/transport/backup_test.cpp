// `sessionhost backup DEST` end to end: the real `sessionhost serve` keeps
// taking events over REST while the real `sessionhost backup` copies its
// database; the copy must be a sound SQLite file that `sessionhost serve`
// opens with every session and, per session, a gap-free prefix of its events
// that holds at least what was acknowledged before the backup started. Bad
// command lines and bad sources are refused with a clear message and write
// nothing. Every wait is bounded.
#include "serve_process.hpp"

#include <fcntl.h>
#include <sqlite3.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <gtest/gtest.h>

using namespace sessionhost::test;
using http::verb;
namespace fs = std::filesystem;

namespace {

struct command_result {
  int exit_code = -1; // -1: killed after the time limit, or died by a signal
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Runs `sessionhost ARGS…` to completion (at most `limit`), capturing its
/// stdout and stderr through files in `scratch`.
command_result run_sessionhost(const std::vector<std::string>& args,
                               const std::string& scratch,
                               std::chrono::seconds limit
                               = std::chrono::seconds(30)) {
  auto out_path = scratch + "/cmd.out", err_path = scratch + "/cmd.err";
  std::vector<std::string> argv_s{SESSIONHOST_EXE};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  pid_t pid = ::fork();
  if (pid == 0) {
    int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(o, 1);
    ::dup2(e, 2);
    std::vector<char*> argv;
    for (auto& a : argv_s)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  command_result r;
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) {
      r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  return r;
}

/// `PRAGMA integrity_check` of a database file, opened read-only.
std::string integrity_check(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr)
      != SQLITE_OK) {
    sqlite3_close(db);
    return "cannot open";
  }
  std::string out;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr)
      == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW)
      out += reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

/// Every file name in `dir`, sorted.
std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<json> all_events(uint16_t port, const std::string& id) {
  std::vector<json> out;
  uint64_t from = 0;
  for (int page = 0; page < 100; ++page) {
    auto r = http_call(port, verb::get, "/v1/sessions/" + id + "/events?from_seq="
                                          + std::to_string(from) + "&limit=10000");
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200 || r.j["events"].empty())
      break;
    for (auto& e : r.j["events"])
      out.push_back(e);
    from = out.back()["seq"].get<uint64_t>();
  }
  return out;
}

std::vector<json> all_sessions(uint16_t port) {
  std::vector<json> out;
  std::string cursor;
  for (int page = 0; page < 100; ++page) {
    auto r = http_call(port, verb::get, "/v1/sessions?limit=1000"
                                          + (cursor.empty() ? "" : "&cursor=" + cursor));
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200)
      break;
    for (auto& s : r.j["sessions"])
      out.push_back(s);
    if (r.j["next_cursor"].is_null())
      break;
    cursor = r.j["next_cursor"].get<std::string>();
  }
  return out;
}

} // namespace

TEST(backup_command, copies_a_live_database_while_rest_keeps_publishing) {
  temp_dir live, copy_dir, scratch;
  serve_process proc{live.path};
  ASSERT_NE(proc.port, 0) << "first line: " << proc.first_line();

  // What the publisher was told is durable: session id → last acked seq.
  std::mutex mtx;
  std::map<std::string, uint64_t> acked; // guarded by mtx
  std::atomic<uint64_t> total{0};
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  auto create = [&] {
    auto r = http_call(proc.port, verb::post, "/v1/sessions", R"({"type":"echo"})");
    if (r.status != 201) {
      ++failures;
      return;
    }
    std::lock_guard<std::mutex> guard{mtx};
    acked[r.j["id"].get<std::string>()] = r.j["last_seq"].get<uint64_t>();
  };
  for (int i = 0; i < 3; ++i)
    create();
  std::thread publisher{[&] {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (uint64_t n = 0; !stop && std::chrono::steady_clock::now() < deadline; ++n) {
      if (n % 40 == 39)
        create(); // new sessions appear while the copy is taken, too
      std::vector<std::string> ids;
      {
        std::lock_guard<std::mutex> guard{mtx};
        for (auto& [id, seq] : acked)
          ids.push_back(id);
      }
      if (ids.empty())
        break;
      auto& id = ids[n % ids.size()];
      auto r = http_call(proc.port, verb::post, "/v1/sessions/" + id + "/events",
                         json{{"type", "log"}, {"data", {{"n", n}}}}.dump());
      if (r.status != 202) {
        ++failures;
        continue;
      }
      std::lock_guard<std::mutex> guard{mtx};
      acked[id] = std::max(acked[id], r.j["seq"].get<uint64_t>());
      ++total;
    }
  }};
  for (int i = 0; i < 2000 && total < 150; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::map<std::string, uint64_t> before;
  {
    std::lock_guard<std::mutex> guard{mtx};
    before = acked;
  }
  auto dest = copy_dir.path + "/sessionhost.db";
  auto res = run_sessionhost({"backup", dest, "--data-dir=" + live.path},
                             scratch.path);
  // Keep publishing a little after the copy, then stop.
  auto after = total.load();
  for (int i = 0; i < 2000 && total < after + 50; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop = true;
  publisher.join();
  EXPECT_EQ(failures, 0);
  EXPECT_GE(total, 150u);
  ASSERT_EQ(res.exit_code, 0) << res.err;
  EXPECT_NE(res.out.find("to " + dest), std::string::npos) << res.out;
  EXPECT_EQ(files_in(copy_dir.path), std::vector<std::string>{"sessionhost.db"});
  EXPECT_EQ(integrity_check(dest), "ok");

  // The live server's events, to compare the copy's prefix with.
  std::map<std::string, std::vector<json>> live_events;
  for (auto& [id, seq] : before)
    live_events[id] = all_events(proc.port, id);
  EXPECT_EQ(proc.terminate(), 0);

  // The copy is a database `sessionhost serve` opens as it is.
  serve_process restored{copy_dir.path};
  ASSERT_NE(restored.port, 0) << "first line: " << restored.first_line();
  std::map<std::string, json> listed;
  for (auto& s : all_sessions(restored.port))
    listed[s["id"].get<std::string>()] = s;
  for (auto& [id, acked_seq] : before) {
    SCOPED_TRACE("session " + id);
    ASSERT_EQ(listed.count(id), 1u) << "a session created before the backup is missing";
    auto evs = all_events(restored.port, id);
    // A gap-free prefix 1..k of the live stream, k ≥ what was acked before.
    ASSERT_GE(evs.size(), acked_seq);
    ASSERT_LE(evs.size(), live_events[id].size());
    for (size_t i = 0; i < evs.size(); ++i) {
      ASSERT_EQ(evs[i]["seq"], i + 1);
      ASSERT_EQ(evs[i], live_events[id][i]);
    }
    EXPECT_EQ(listed[id]["last_seq"], evs.size());
  }
  EXPECT_EQ(restored.terminate(), 0);
}

TEST(backup_command, refuses_bad_command_lines_and_writes_nothing) {
  temp_dir data, out, scratch;
  struct bad {
    std::vector<std::string> args;
    int exit_code;
    std::string says;
  };
  auto dest = out.path + "/copy.db";
  std::vector<bad> cases{
    {{"backup"}, 2, "missing DEST"},
    {{"backup", "--data-dir=" + data.path}, 2, "missing DEST"},
    {{"backup", dest, "--store=postgresql://u@127.0.0.1/db"}, 2, "pg_dump"},
    {{"backup", dest, "--store=memory:"}, 2, "nothing to back up"},
    {{"backup", dest, "--store=redis://x"}, 2, "unknown store URL"},
    {{"backup", dest, "--bogus=1"}, 2, "unknown option"},
    {{"backup", dest, dest + "2"}, 2, "unexpected argument"},
    // No database in the data dir: nothing is created there either.
    {{"backup", dest, "--data-dir=" + data.path}, 1, "no database at"},
    {{"backup", dest, "--data-dir=" + data.path + "/nope"}, 1, "no database at"},
    {{"backup", out.path + "/no/such/dir/copy.db", "--data-dir=" + data.path}, 1,
     "is not a directory"},
  };
  for (auto& c : cases) {
    auto r = run_sessionhost(c.args, scratch.path);
    std::string line;
    for (auto& a : c.args)
      line += a + " ";
    EXPECT_EQ(r.exit_code, c.exit_code) << line << "\n" << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << line << "\n" << r.err;
    EXPECT_TRUE(files_in(out.path).empty()) << line;
    EXPECT_TRUE(files_in(data.path).empty()) << line;
  }

  // A file that is not a sessionhost database: refused, left as it was.
  {
    std::ofstream f{data.path + "/sessionhost.db"};
    f << "not a database at all, just some text that is long enough\n";
  }
  auto r = run_sessionhost({"backup", dest, "--data-dir=" + data.path},
                           scratch.path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a sessionhost database"), std::string::npos) << r.err;
  EXPECT_TRUE(files_in(out.path).empty());
  EXPECT_EQ(slurp(data.path + "/sessionhost.db"),
            "not a database at all, just some text that is long enough\n");
}

TEST(backup_command, never_overwrites_an_existing_destination) {
  temp_dir data, out, scratch;
  {
    // A real database to copy, written by a server that has stopped.
    serve_process proc{data.path};
    ASSERT_NE(proc.port, 0) << "first line: " << proc.first_line();
    auto c = http_call(proc.port, verb::post, "/v1/sessions", R"({"type":"echo"})");
    ASSERT_EQ(c.status, 201) << c.body;
    EXPECT_EQ(proc.terminate(), 0);
  }
  auto dest = out.path + "/copy.db";
  {
    std::ofstream f{dest};
    f << "precious";
  }
  auto r = run_sessionhost({"backup", dest, "--data-dir=" + data.path},
                           scratch.path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("exists"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(dest), "precious");
  EXPECT_EQ(files_in(out.path), std::vector<std::string>{"copy.db"});

  // --store=sqlite:PATH names the source file directly; a stopped server's
  // database is copied just as well.
  auto second = out.path + "/second.db";
  r = run_sessionhost({"backup", "--store=sqlite:" + data.path + "/sessionhost.db",
                       second},
                      scratch.path);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(integrity_check(second), "ok");
  EXPECT_EQ(files_in(out.path), (std::vector<std::string>{"copy.db", "second.db"}));
}
