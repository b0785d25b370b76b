// Process-backed session types with real child processes: each session runs
// one child under the host's process supervisor. Checked from the outside as
// a user would: the session's events in the store, its state, and /proc
// (descriptors of this process, children and zombies) and the file system
// (working directories) after the sessions ended. Every wait is bounded.

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "real_system.hpp"

#include "host/config.hpp"
#include "host/event.hpp"
#include "host/process/process_spec.hpp"
#include "host/process/process_types.hpp"

using namespace std::chrono_literals;
using json = nlohmann::json;

namespace sessionhost {
namespace {

/// Descriptors this process holds now.
size_t fds_now() {
  size_t n = 0;
  if (auto d = ::opendir("/proc/self/fd")) {
    while (auto e = ::readdir(d))
      if (e->d_name[0] != '.')
        ++n;
    ::closedir(d);
  }
  return n - 1; // the directory stream itself
}

/// Descriptors this process keeps: the fewest of a few looks 10 ms apart.
/// A leaked descriptor is in every look; one another thread holds for a
/// moment is not (UBSan's vptr check opens and closes a pipe to probe
/// memory, so under the sanitizers any thread may hold two for an instant).
size_t open_fds() {
  auto fewest = fds_now();
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    fewest = std::min(fewest, fds_now());
  }
  return fewest;
}

/// Children of this process (any state) and how many are zombies.
std::pair<size_t, size_t> children_of_us() {
  size_t all = 0, zombies = 0;
  auto me = ::getpid();
  for (auto& p : std::filesystem::directory_iterator("/proc")) {
    auto name = p.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    std::ifstream in{p.path() / "stat"};
    std::string line;
    if (!std::getline(in, line))
      continue;
    // pid (comm) state ppid …: comm may hold spaces, so parse after ')'.
    auto close = line.rfind(')');
    if (close == std::string::npos)
      continue;
    char state = 0;
    long ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %ld", &state, &ppid) != 2)
      continue;
    if (ppid == me) {
      ++all;
      if (state == 'Z')
        ++zombies;
    }
  }
  return {all, zombies};
}

size_t entries_in(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); ++it)
    ++n;
  return n;
}

struct temp_dir {
  temp_dir() {
    char tmpl[] = "/tmp/sessionhost-process-XXXXXX";
    path = ::mkdtemp(tmpl);
    ::chmod(path.c_str(), 0755);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string path;
};

/// Reads process types from INI text through CAF's config parser, as
/// `sessionhost serve --config-file=…` does.
std::vector<process_spec> specs_from_ini(const std::string& ini,
                                         const std::string& dir) {
  auto file = dir + "/types.ini";
  std::ofstream{file} << ini;
  sessionhost_config cfg;
  std::string prog = "process_tests", arg = "--config-file=" + file;
  char* argv[] = {prog.data(), arg.data(), nullptr};
  if (auto err = cfg.parse(2, argv))
    throw std::invalid_argument("config: " + to_string(err));
  return process_specs_from(cfg, dir);
}

/// The `user` line a type needs here: as root, children run as nobody.
std::string user_line() {
  return ::geteuid() == 0 ? "user = \"nobody\"\n" : "";
}

class process_test : public test::real_system {
protected:
  process_test() { opts.config.max_backlog = 100000; }

  ~process_test() override {
    host.reset(); // terminates what still runs, then
    procs.reset(); // the supervisor stops
  }

  void start_with(const std::string& entries) {
    procs = std::make_unique<process_types>(
      specs_from_ini("[sessionhost.process-types]\n" + entries, dir.path));
    auto types = session_type_registry::with_builtins();
    procs->install(*types);
    opts.types = types;
    start();
  }

  /// A type section with the working directories under work/.
  std::string type_ini(const std::string& name, const std::string& command,
                       const std::string& extra = "") {
    return name + " = {\ncommand = " + command
           + "\nworking-dir = \"${data_dir}/work/${session_id}\"\n"
           + user_line() + extra + "\n}\n";
  }

  std::string work() const { return dir.path + "/work"; }

  std::vector<event> events_of(const std::string& id) {
    return store->read_events(id, 0, 1000000);
  }

  std::vector<event> events_of(const std::string& id, const std::string& type) {
    std::vector<event> out;
    for (auto& e : events_of(id))
      if (e.type == type)
        out.push_back(e);
    return out;
  }

  session_state stored_state(const std::string& id) {
    auto s = store->load(id);
    return s ? s->state : session_state::created;
  }

  bool reaches(const std::string& id, session_state st,
               std::chrono::milliseconds limit = 10s) {
    return eventually([&] { return stored_state(id) == st; }, limit);
  }

  /// Time left until `deadline`, never negative.
  static std::chrono::milliseconds left_until(std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    return std::max(left, std::chrono::milliseconds{0});
  }

  /// The first of `ids` not in `st` once `limit`, one bound for all of them,
  /// ran out; empty when every one got there.
  std::string first_not_reaching(const std::vector<std::string>& ids,
                                 session_state st,
                                 std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (auto& id : ids)
      if (!reaches(id, st, left_until(deadline)))
        return id;
    return {};
  }

  /// The stdout lines a session published, checking on the way that every
  /// delta sits inside a block:start / block:complete pair of its block.
  std::vector<std::string> deltas_of(const std::string& id,
                                     bool* well_formed = nullptr) {
    std::vector<std::string> out;
    std::string open;
    bool ok = true;
    for (auto& e : events_of(id)) {
      auto d = json::parse(e.data, nullptr, false);
      if (e.type == event_type::block_start) {
        ok &= open.empty();
        open = d.value("block_id", "");
      } else if (e.type == event_type::block_delta) {
        ok &= !open.empty() && d.value("block_id", "") == open;
        out.push_back(d.value("delta", ""));
      } else if (e.type == event_type::block_complete) {
        ok &= d.value("block_id", "") == open;
        open.clear();
      }
    }
    if (well_formed)
      *well_formed = ok;
    return out;
  }

  test::reply<session_info> terminate(const std::string& id) {
    return call<session_info>(host->host(), terminate_atom::value, id,
                              std::string{"done"});
  }

  temp_dir dir;
  std::unique_ptr<process_types> procs;
};

// -- configuration -----------------------------------------------------------

TEST(process_spec_test, reads_a_declared_type_from_caf_ini) {
  temp_dir dir;
  auto specs = specs_from_ini(
    "[sessionhost.process-types.agent-x]\n"
    "command = [\"/bin/sh\", \"-c\", \"exec cat ${X:-y}\", \"${session_id}\"]\n"
    "env = { LANG = \"C.UTF-8\", WHERE = \"${data_dir}/x\" }\n"
    "inherit-env = [\"TZ\"]\n" + user_line() +
    "grace = 750ms\nturn-quiet = 0s\nturn-end-line = \"<END>\"\nstdin = \"json\"\n"
    "limits = { cpu-seconds = 30, address-space = \"1G\", open-files = 64 }\n",
    dir.path);
  ASSERT_EQ(specs.size(), 1u);
  auto& s = specs[0];
  EXPECT_EQ(s.name, "agent-x");
  EXPECT_EQ(s.command, (std::vector<std::string>{"/bin/sh", "-c", "exec cat ${X:-y}",
                                                 "${session_id}"}))
    << "a shell's own ${…} is left alone";
  EXPECT_EQ(s.working_dir, dir.path + "/process/${session_id}");
  EXPECT_EQ(s.env.at("WHERE"), dir.path + "/x");
  EXPECT_EQ(s.inherit_env, (std::vector<std::string>{"TZ"}));
  EXPECT_EQ(s.grace, 750ms);
  EXPECT_EQ(s.turn_quiet, 0ms);
  EXPECT_EQ(s.turn_end_line, "<END>");
  EXPECT_EQ(s.input, stdin_format::json);
  EXPECT_EQ(s.limits.cpu_seconds, 30u);
  EXPECT_EQ(s.limits.address_space, 1ull << 30);
  EXPECT_EQ(s.limits.open_files, 64u);
  EXPECT_FALSE(s.limits.processes);
  EXPECT_EQ(expand_template("${data_dir}/${type}/${session_id}", "s1", "t"),
            "${data_dir}/t/s1");
}

TEST(process_spec_test, a_bad_declaration_is_refused_with_the_key_named) {
  temp_dir dir;
  auto refused = [&](const std::string& body) -> std::string {
    try {
      specs_from_ini("[sessionhost.process-types.bad]\n" + body, dir.path);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "accepted";
  };
  auto u = user_line();
  EXPECT_NE(refused(u + "command = []\n").find("bad.command"), std::string::npos);
  EXPECT_NE(refused(u + "command = [\"cat\"]\ncomand = 1\n").find("bad.comand: unknown key"),
            std::string::npos);
  EXPECT_NE(refused(u + "command = \"cat\"\n").find("list of quoted strings"),
            std::string::npos);
  EXPECT_NE(refused(u + "command = [\"cat\"]\nworking-dir = \"rel/${session_id}\"\n")
              .find("absolute"),
            std::string::npos);
  EXPECT_NE(refused(u + "command = [\"cat\"]\nworking-dir = \"/tmp/shared\"\n")
              .find("${session_id}"),
            std::string::npos);
  EXPECT_NE(refused(u + "command = [\"cat\"]\nlimits = { stack = 1 }\n").find("unknown limit"),
            std::string::npos);
  EXPECT_NE(refused("command = [\"cat\"]\nuser = \"root\"\n").find("never runs as root"),
            std::string::npos);
  EXPECT_NE(refused("command = [\"cat\"]\nuser = \"no-such-user-xyz\"\n").find("no user"),
            std::string::npos);
  if (::geteuid() == 0) {
    EXPECT_NE(refused("command = [\"cat\"]\n").find("runs as root"),
              std::string::npos);
  }
  // Two dotted sections: CAF would keep only the last one.
  try {
    specs_from_ini("[sessionhost.process-types.a]\ncommand = [\"cat\"]\n" + u
                     + "[sessionhost.process-types.b]\ncommand = [\"cat\"]\n" + u,
                   dir.path);
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string{e.what()}.find("keeps only the last"), std::string::npos);
  }
}

// -- sessions ----------------------------------------------------------------

TEST_F(process_test, two_hundred_sessions_echo_in_order_and_leave_nothing_behind) {
  start_with(type_ini("cat", "[\"cat\"]", "turn-quiet = 100ms\ngrace = 2s"));
  auto fds_before = open_fds();
  constexpr int sessions = 200, lines = 3;
  std::vector<std::string> ids;
  for (int i = 0; i < sessions; ++i) {
    auto c = create("cat");
    ASSERT_TRUE(c) << message_of(c.error());
    EXPECT_TRUE(c->state == session_state::spawning
                || c->state == session_state::active)
      << "replied once SPAWNING (or already running)";
    ids.push_back(c->id);
  }
  // The supervisor forks one child after another: under ASan on a busy
  // two-core machine 200 forks took 11 s, so the group has one bound.
  auto stuck = first_not_reaching(ids, session_state::active, 60s);
  ASSERT_TRUE(stuck.empty()) << stuck << " still " << to_string(stored_state(stuck));
  EXPECT_EQ(procs->supervisor().live(), size_t{sessions});
  for (int k = 0; k < lines; ++k)
    for (int i = 0; i < sessions; ++i) {
      auto line = "line " + std::to_string(i) + "." + std::to_string(k);
      ASSERT_TRUE(call<uint64_t>(session(ids[i]), message_atom::value,
                                 json(line).dump()));
    }
  auto echoed_by = std::chrono::steady_clock::now() + 60s;
  for (int i = 0; i < sessions; ++i) {
    std::vector<std::string> want;
    for (int k = 0; k < lines; ++k)
      want.push_back("line " + std::to_string(i) + "." + std::to_string(k));
    ASSERT_TRUE(eventually([&] { return deltas_of(ids[i]).size() == want.size(); },
                           left_until(echoed_by)))
      << ids[i];
    bool well_formed = false;
    EXPECT_EQ(deltas_of(ids[i], &well_formed), want);
    EXPECT_TRUE(well_formed) << "every delta inside its block";
  }
  for (auto& id : ids) {
    auto t = terminate(id);
    ASSERT_TRUE(t) << message_of(t.error());
    EXPECT_EQ(t->state, session_state::cleaned) << "answered once reaped";
  }
  // cat ends on SIGTERM: a requested exit, a log event, no error.
  auto exits = events_of(ids[0], event_type::log);
  ASSERT_FALSE(exits.empty());
  EXPECT_EQ(json::parse(exits.back().data)["signal"], 15);
  EXPECT_TRUE(events_of(ids[0], event_type::error).empty());
  EXPECT_EQ(procs->supervisor().live(), 0u);
  EXPECT_EQ(children_of_us(), std::make_pair(size_t{0}, size_t{0}))
    << "no child left, no zombie";
  EXPECT_EQ(open_fds(), fds_before) << "every pipe and pidfd closed";
  EXPECT_EQ(entries_in(work()), 0u) << "every working directory removed";
}

TEST_F(process_test, a_command_that_cannot_start_gives_an_error_and_a_cleaned_session) {
  auto script = dir.path + "/agent.sh";
  std::ofstream{script} << "#!/bin/sh\nexec cat\n";
  ::chmod(script.c_str(), 0755);
  start_with(type_ini("vanishing", "[\"" + script + "\"]")
             + type_ini("missing", "[\"no-such-agent-binary\"]"));
  std::filesystem::remove(script); // the binary vanished after start-up
  auto fds_before = open_fds();
  for (auto type : {"vanishing", "missing"}) {
    auto c = create(type);
    ASSERT_TRUE(c) << message_of(c.error());
    ASSERT_TRUE(reaches(c->id, session_state::cleaned)) << type;
    auto errors = events_of(c->id, event_type::error);
    ASSERT_EQ(errors.size(), 1u);
    auto e = json::parse(errors[0].data);
    EXPECT_EQ(e["code"], "spawn_failed");
    std::vector<std::string> states;
    for (auto& s : events_of(c->id, event_type::status_changed))
      states.push_back(json::parse(s.data)["state"]);
    EXPECT_EQ(states, (std::vector<std::string>{"SPAWNING", "TERMINATING",
                                                "CLEANED"}));
    auto want = std::string{type} == "vanishing" ? "exec " + script + ": No such file"
                                                 : std::string{"not found in PATH"};
    EXPECT_NE(e["message"].get<std::string>().find(want), std::string::npos)
      << e.dump();
  }
  EXPECT_EQ(procs->supervisor().live(), 0u);
  EXPECT_EQ(children_of_us(), std::make_pair(size_t{0}, size_t{0}));
  EXPECT_EQ(open_fds(), fds_before);
  EXPECT_EQ(entries_in(work()), 0u);
}

TEST_F(process_test, a_child_that_ignores_sigterm_is_killed_after_the_grace) {
  start_with(type_ini("stubborn",
                      "[\"/bin/sh\", \"-c\", \"trap '' TERM; echo ready; "
                      "while :; do sleep 1; done\"]",
                      "grace = 300ms"));
  auto c = create("stubborn");
  ASSERT_TRUE(c);
  ASSERT_TRUE(eventually([&] { return deltas_of(c->id).size() == 1; }))
    << "the trap is set once it says ready";
  auto t = terminate(c->id);
  ASSERT_TRUE(t) << message_of(t.error());
  EXPECT_EQ(t->state, session_state::cleaned);
  auto exits = events_of(c->id, event_type::log);
  ASSERT_FALSE(exits.empty());
  EXPECT_EQ(json::parse(exits.back().data)["signal"], 9) << exits.back().data;
  EXPECT_EQ(children_of_us(), std::make_pair(size_t{0}, size_t{0}))
    << "the sleeping grandchild went with its group";
}

TEST_F(process_test, a_child_exiting_on_its_own_ends_the_session) {
  start_with(type_ini("short", "[\"/bin/sh\", \"-c\", \"echo hello; echo oops >&2; exit 3\"]"));
  auto c = create("short");
  ASSERT_TRUE(c);
  ASSERT_TRUE(reaches(c->id, session_state::cleaned));
  EXPECT_EQ(deltas_of(c->id), (std::vector<std::string>{"hello"}));
  auto logs = events_of(c->id, event_type::log);
  ASSERT_FALSE(logs.empty());
  auto err_line = json::parse(logs[0].data);
  EXPECT_EQ(err_line["stream"], "stderr");
  EXPECT_EQ(err_line["message"], "oops");
  auto errors = events_of(c->id, event_type::error);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(json::parse(errors[0].data)["code"], "process_failed");
  EXPECT_EQ(json::parse(errors[0].data)["exit_code"], 3);
  auto done = events_of(c->id, event_type::block_complete);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(json::parse(done[0].data)["reason"], "exit");
  EXPECT_EQ(entries_in(work()), 0u);
}

TEST_F(process_test, the_child_runs_as_configured_in_its_own_group_and_directory) {
  ::setenv("SH_TEST_SECRET", "hunter2", 1);
  start_with(type_ini(
    "probe",
    "[\"/bin/sh\", \"-c\", \"id -u; pwd; ulimit -n; "
    "echo sid=$SESSIONHOST_SESSION_ID secret=${SH_TEST_SECRET:-none}; "
    "cut -d' ' -f5 /proc/$$/stat; echo $$; cat\"]",
    "limits = { open-files = 32 }\nturn-quiet = 0s"));
  auto c = create("probe");
  ASSERT_TRUE(c);
  ASSERT_TRUE(eventually([&] { return deltas_of(c->id).size() >= 6; }));
  auto out = deltas_of(c->id);
  ASSERT_EQ(out.size(), 6u);
  if (::geteuid() == 0)
    EXPECT_EQ(out[0], "65534") << "root's children run as nobody";
  else
    EXPECT_EQ(out[0], std::to_string(::geteuid()));
  EXPECT_EQ(out[1], work() + "/" + c->id);
  EXPECT_EQ(out[2], "32");
  EXPECT_EQ(out[3], "sid=" + c->id + " secret=none")
    << "the server's environment does not leak";
  EXPECT_EQ(out[4], out[5]) << "its own process group";
  // A running process cannot move: unloading it is refused.
  auto u = call<session_info>(host->host(), unload_atom::value, c->id);
  ASSERT_FALSE(u);
  EXPECT_EQ(code_of(u.error()), errc::conflict);
  EXPECT_EQ(stored_state(c->id), session_state::active);
  // A line break would be two lines: refused as an error event.
  ASSERT_TRUE(call<uint64_t>(session(c->id), message_atom::value,
                             json("a\nb").dump()));
  ASSERT_TRUE(eventually([&] { return !events_of(c->id, event_type::error).empty(); }));
  EXPECT_EQ(json::parse(events_of(c->id, event_type::error)[0].data)["code"],
            "bad_input");
  ::unsetenv("SH_TEST_SECRET");
}

TEST_F(process_test, turns_end_on_the_delimiter_line_and_floods_arrive_whole) {
  start_with(type_ini("turns",
                      "[\"/bin/sh\", \"-c\", \"while read l; do echo got $l; "
                      "echo END; done\"]",
                      "turn-end-line = \"END\"\nturn-quiet = 0s")
             + type_ini("flood", "[\"seq\", \"1\", \"5000\"]"));
  auto c = create("turns");
  ASSERT_TRUE(c);
  ASSERT_TRUE(reaches(c->id, session_state::active));
  auto s = session(c->id);
  // One turn at a time: a message while a turn is open would close it.
  ASSERT_TRUE(call<uint64_t>(s, message_atom::value, json("one").dump()));
  ASSERT_TRUE(eventually([&] {
    return events_of(c->id, event_type::block_complete).size() == 1;
  }));
  ASSERT_TRUE(call<uint64_t>(s, message_atom::value, json({{"k", 2}}).dump()));
  ASSERT_TRUE(eventually([&] {
    return events_of(c->id, event_type::block_complete).size() == 2;
  }));
  auto done = events_of(c->id, event_type::block_complete);
  EXPECT_EQ(json::parse(done[0].data)["text"], "got one");
  EXPECT_EQ(json::parse(done[0].data)["reason"], "end_line");
  EXPECT_EQ(json::parse(done[1].data)["text"], "got {\"k\":2}");
  EXPECT_EQ(deltas_of(c->id), (std::vector<std::string>{"got one", "got {\"k\":2}"}))
    << "the delimiter is not published";
  // More output than the supervisor lets wait unconsumed: paused and
  // resumed, nothing lost, nothing reordered.
  auto f = create("flood");
  ASSERT_TRUE(f);
  ASSERT_TRUE(reaches(f->id, session_state::cleaned, 30s));
  auto lines = deltas_of(f->id);
  ASSERT_EQ(lines.size(), 5000u);
  for (size_t i = 0; i < lines.size(); ++i)
    ASSERT_EQ(lines[i], std::to_string(i + 1));
}

TEST_F(process_test, host_shutdown_ends_running_sessions_and_a_lost_one_is_cleaned) {
  start_with(type_ini("cat", "[\"cat\"]"));
  auto c = create("cat");
  ASSERT_TRUE(c);
  ASSERT_TRUE(reaches(c->id, session_state::active));
  // A session the store says was running when its host died (kill -9).
  session_info lost;
  lost.id = "lost-1";
  lost.type = "cat";
  lost.state = session_state::active;
  lost.epoch = 1;
  store->create(lost);
  std::filesystem::create_directories(work() + "/lost-1/sub");
  auto l = call<session_info>(host->host(), load_atom::value, std::string{"lost-1"});
  ASSERT_TRUE(l);
  ASSERT_TRUE(reaches("lost-1", session_state::cleaned));
  EXPECT_EQ(json::parse(events_of("lost-1", event_type::error)[0].data)["code"],
            "process_lost");
  EXPECT_FALSE(std::filesystem::exists(work() + "/lost-1"));
  host.reset(); // stop: the running session is terminated, then unloaded
  EXPECT_EQ(stored_state(c->id), session_state::cleaned);
  auto states = events_of(c->id, event_type::status_changed);
  EXPECT_EQ(json::parse(states[states.size() - 2].data)["reason"],
            "host shutdown");
  EXPECT_EQ(procs->supervisor().live(), 0u);
  EXPECT_EQ(children_of_us(), std::make_pair(size_t{0}, size_t{0}));
  EXPECT_EQ(entries_in(work()), 0u);
}

} // namespace
} // namespace sessionhost
