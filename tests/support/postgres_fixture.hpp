#pragma once
// A throwaway PostgreSQL server for tests and benchmarks: `initdb` into a
// fresh directory under /tmp, `pg_ctl start` on a free 127.0.0.1 port with the
// unix socket inside that directory and fsync on, one database per caller.
// PostgreSQL refuses to run as root, so as root every server command runs via
// `runuser -u postgres` on a directory owned by postgres.
//
// A pristine initdb result is cached under SESSIONHOST_PG_CACHE_DIR (a
// compile definition pointing into the build tree) and copied for each server.
//
// Cleanup does not depend on the test process ending well: a small watchdog
// process (a shell waiting on a pipe from us) stops the server with
// `pg_ctl stop -m fast` and removes the directory once the pipe closes, which
// happens on a normal exit and on a crash alike.
//
// Thread safety: `shared_postgres()` and `create_database()` may be called
// from any thread.

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <sys/types.h>

namespace sessionhost::testing {

/// One running server; stopped and deleted by the destructor.
class postgres_server {
public:
  /// Starts the server. Throws `std::runtime_error` (with the server log)
  /// when PostgreSQL is not installed or does not start — never skips.
  postgres_server();
  ~postgres_server();

  postgres_server(const postgres_server&) = delete;
  postgres_server& operator=(const postgres_server&) = delete;

  /// The TCP port on 127.0.0.1.
  int port() const noexcept { return port_; }

  /// The temporary directory holding data, socket and log.
  const std::string& dir() const noexcept { return dir_; }

  /// URL of database `name` (libpq URI, user postgres, trust auth).
  std::string url(const std::string& name) const;

  /// Creates an empty database with a fresh name and returns its URL.
  std::string create_database();

  /// Lets the destructor return at once instead of waiting until the server
  /// is stopped and its directory removed; the watchdog still does both.
  void stop_in_background() noexcept;

private:
  void start(const std::string& bin, const std::vector<std::string>& prefix);
  void init_data(const std::string& bin, const std::string& data,
                 const std::string& log,
                 const std::function<int(std::vector<std::string>)>& as_server_user);
  void stop() noexcept;

  std::string dir_;
  int port_ = 0;
  int watchdog_fd_ = -1; // write end of the watchdog's pipe
  pid_t watchdog_pid_ = -1;
  bool wait_for_stop_ = true;
  std::mutex mtx_;
  int next_db_ = 0; // guarded by mtx_
};

/// The server of this process, started on first use and stopped at exit (by
/// the watchdog, in the background: the process does not wait for it).
postgres_server& shared_postgres();

/// Shorthand: a fresh database on `shared_postgres()`, as a URL.
std::string fresh_postgres_database();

} // namespace sessionhost::testing
