#include "tests/support/postgres_fixture.hpp"

#include <pqxx/pqxx>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace sessionhost::testing {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("postgres fixture: " + what);
}

/// The PostgreSQL server binaries: $SESSIONHOST_PG_BIN, else the newest
/// /usr/lib/postgresql/<major>/bin (Debian keeps them off PATH).
std::string pg_bin_dir() {
  if (auto env = std::getenv("SESSIONHOST_PG_BIN"); env != nullptr && *env != 0)
    return env;
  std::string best;
  int best_major = -1;
  std::error_code ec;
  for (auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    auto name = entry.path().filename().string();
    char* end = nullptr;
    long major = std::strtol(name.c_str(), &end, 10);
    if (end != name.c_str() && *end == 0
        && fs::exists(entry.path() / "bin" / "initdb") && major > best_major) {
      best_major = static_cast<int>(major);
      best = (entry.path() / "bin").string();
    }
  }
  if (best.empty())
    fail("initdb not found (install the postgresql package or set "
         "SESSIONHOST_PG_BIN)");
  return best;
}

std::string runuser_path() {
  for (const char* p : {"/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"})
    if (::access(p, X_OK) == 0)
      return p;
  fail("running as root but runuser is missing");
}

/// Prefix that runs a command as the postgres user when we are root.
std::vector<std::string> as_postgres() {
  if (::geteuid() != 0)
    return {};
  return {runuser_path(), "-u", "postgres", "--"};
}

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Runs argv in `cwd` with stdout and stderr appended to `log`; returns the
/// exit status (or -1 when it did not exit normally).
int run(const std::vector<std::string>& argv, const std::string& cwd,
        const std::string& log) {
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0)
    fail(std::string{"fork: "} + std::strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int in = ::open("/dev/null", O_RDONLY);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    if (in >= 0)
      ::dup2(in, 0);
    // postgres cannot enter root's home; run inside the temp dir.
    if (::chdir(cwd.c_str()) != 0)
      ::_exit(126);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      fail(std::string{"waitpid: "} + std::strerror(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// A port nobody listens on right now (the kernel's pick for port 0).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    fail(std::string{"socket: "} + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    fail(std::string{"bind 127.0.0.1:0: "} + std::strerror(err));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Runs in the watchdog: wait until the pipe on stdin closes (the test
// process ended, however it ended), then stop the server and delete the dir.
constexpr const char* watchdog_script =
  "while read -r _; do :; done\n"
  "\"$@\" stop -D \"$DATA\" -m fast -w -t 30 >/dev/null 2>&1\n"
  "rm -rf \"$DIR\"\n";

} // namespace

postgres_server::postgres_server() {
  auto bin = pg_bin_dir();
  auto prefix = as_postgres();
  char tmpl[] = "/tmp/sessionhost-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr)
    fail(std::string{"mkdtemp: "} + std::strerror(errno));
  dir_ = tmpl;
  auto data = dir_ + "/data";
  // From here on the watchdog owns cleanup, so start it before anything can
  // fail. FD_CLOEXEC on our end keeps children we spawn (crash-test children)
  // from holding the pipe open.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    fs::remove_all(dir_);
    fail(std::string{"pipe: "} + std::strerror(errno));
  }
  std::vector<std::string> wd_argv = {"/bin/sh", "-c", watchdog_script, "watchdog"};
  for (auto& p : prefix)
    wd_argv.push_back(p);
  wd_argv.push_back(bin + "/pg_ctl");
  auto env_data = "DATA=" + data;
  auto env_dir = "DIR=" + dir_;
  std::vector<char*> wd_args;
  for (auto& a : wd_argv)
    wd_args.push_back(const_cast<char*>(a.c_str()));
  wd_args.push_back(nullptr);
  std::vector<char*> wd_env = {const_cast<char*>(env_data.c_str()),
                               const_cast<char*>(env_dir.c_str()),
                               const_cast<char*>("PATH=/usr/sbin:/usr/bin:/sbin:/bin"),
                               nullptr};
  watchdog_pid_ = ::fork();
  if (watchdog_pid_ < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    fs::remove_all(dir_);
    fail(std::string{"fork: "} + std::strerror(errno));
  }
  if (watchdog_pid_ == 0) {
    // Own session: a Ctrl-C to the test's process group must not kill the
    // cleanup along with the test.
    ::setsid();
    ::dup2(fds[0], 0);
    int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) {
      ::dup2(null, 1);
      ::dup2(null, 2);
    }
    ::execve("/bin/sh", wd_args.data(), wd_env.data());
    ::_exit(127);
  }
  ::close(fds[0]);
  watchdog_fd_ = fds[1];
  try {
    start(bin, prefix);
  } catch (...) {
    stop(); // the destructor does not run for a throwing constructor
    throw;
  }
}

void postgres_server::init_data(
  const std::string& bin, const std::string& data, const std::string& log,
  const std::function<int(std::vector<std::string>)>& as_server_user) {
  auto initdb = [&] {
    // --no-sync only skips syncing initdb's own files (a crashed test
    // machine reruns the test); the server itself runs with fsync on.
    if (as_server_user({bin + "/initdb", "-D", data, "--auth=trust", "-U",
                        "postgres", "--encoding=UTF8", "--no-locale", "--no-sync"})
        != 0)
      fail("initdb failed:\n" + read_file(log));
  };
  // initdb costs a second or more of CPU and I/O per server; a pristine copy
  // kept in the build tree (SESSIONHOST_PG_CACHE_DIR) is reused instead.
  std::string cache;
#ifdef SESSIONHOST_PG_CACHE_DIR
  cache = SESSIONHOST_PG_CACHE_DIR;
#endif
  if (cache.empty()) {
    initdb();
    return;
  }
  // Keyed by the binaries and by the initdb options above ("v1").
  char key[32];
  std::snprintf(key, sizeof(key), "%016zx-v1", std::hash<std::string>{}(bin));
  auto tmpl = cache + "/initdb-" + key;
  std::error_code ec;
  fs::create_directories(cache, ec);
  int lock = ::open((tmpl + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock < 0) {
    initdb();
    return;
  }
  // One process creates the copy while the others wait for it.
  ::flock(lock, LOCK_EX);
  struct unlock {
    int fd;
    ~unlock() { ::close(fd); } // releases the flock
  } guard{lock};
  if (fs::exists(tmpl + "/PG_VERSION")) {
    // cp -a keeps the server user's ownership and the 0700 mode.
    if (run({"/bin/cp", "-a", tmpl, data}, dir_, log) == 0)
      return;
    fs::remove_all(data, ec);
    initdb();
    return;
  }
  initdb();
  auto partial = tmpl + ".partial";
  fs::remove_all(partial, ec);
  if (run({"/bin/cp", "-a", data, partial}, dir_, log) == 0
      && run({"/bin/sync", "-f", partial}, dir_, log) == 0)
    fs::rename(partial, tmpl, ec);
  else
    fs::remove_all(partial, ec);
}

void postgres_server::start(const std::string& bin,
                            const std::vector<std::string>& prefix) {
  auto data = dir_ + "/data";
  // Two logs: ours (commands' output, written through a descriptor we open)
  // and the server's own, which pg_ctl creates as the server user.
  auto log = dir_ + "/commands.log";
  auto server_log = dir_ + "/server.log";
  if (::geteuid() == 0) {
    auto pw = ::getpwnam("postgres");
    if (pw == nullptr)
      fail("running as root but there is no postgres user");
    if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0)
      fail(std::string{"chown: "} + std::strerror(errno));
  }
  auto cmd = [&](std::vector<std::string> args) {
    auto argv = prefix;
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, dir_, log);
  };
  init_data(bin, data, log, cmd);
  // The port is free when picked but could be taken before postgres binds
  // it: try a few.
  for (int attempt = 0; attempt < 5 && port_ == 0; ++attempt) {
    int port = free_port();
    std::string opts = "-p " + std::to_string(port) + " -k " + dir_
                       + " -c listen_addresses=127.0.0.1 -c fsync=on"
                         " -c synchronous_commit=on -c max_connections=60";
    if (cmd({bin + "/pg_ctl", "start", "-D", data, "-l", server_log, "-w", "-t", "30",
             "-o", opts})
        == 0)
      port_ = port;
  }
  if (port_ == 0)
    fail("pg_ctl start failed:\n" + read_file(log) + read_file(server_log));
}

postgres_server::~postgres_server() {
  stop();
}

void postgres_server::stop_in_background() noexcept {
  wait_for_stop_ = false;
}

void postgres_server::stop() noexcept {
  // Closing the pipe lets the watchdog stop the server and delete the dir.
  if (watchdog_fd_ >= 0)
    ::close(watchdog_fd_);
  watchdog_fd_ = -1;
  if (watchdog_pid_ > 0 && wait_for_stop_) {
    int status = 0;
    while (::waitpid(watchdog_pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  watchdog_pid_ = -1;
}

std::string postgres_server::url(const std::string& name) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + name;
}

std::string postgres_server::create_database() {
  std::string name;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    name = "t_" + std::to_string(++next_db_);
  }
  pqxx::connection c{url("postgres")};
  pqxx::nontransaction tx{c};
  tx.exec0("CREATE DATABASE " + tx.quote_name(name));
  return url(name);
}

postgres_server& shared_postgres() {
  // Started on first use so binaries that never touch PostgreSQL (or only
  // list their tests) do not pay for a server; destroyed at exit.
  static postgres_server& server = [] () -> postgres_server& {
    static postgres_server s;
    // At exit nothing needs the server any more: let the watchdog finish the
    // shutdown checkpoint and the removal while the process ends.
    s.stop_in_background();
    return s;
  }();
  return server;
}

std::string fresh_postgres_database() {
  return shared_postgres().create_database();
}

} // namespace sessionhost::testing
