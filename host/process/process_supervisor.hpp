#pragma once
// The process supervisor: one thread that starts, feeds, reads, stops and
// reaps every child process of a host (the children of `process` sessions).
//
// Session actors must never block, so nothing about a child happens on an
// actor: spawn/write/terminate only queue a command (a mutex-guarded queue
// plus an eventfd) and return. The thread waits in epoll on each child's
// stdout and stderr, its stdin while output is queued for it, its exec-status
// pipe while it starts, and its pidfd (readable once it exits); on a wake-up
// it runs the commands. What happens to a child comes back through the
// child's event callback, always from the supervisor thread and, per child,
// in order: `spawned` or `spawn_failed`, then output lines, then `exited`
// (after the child was reaped, its pipes closed and its working directory
// removed) — nothing after that.
//
// Each child gets its own process group and working directory; terminate()
// sends SIGTERM to the group and SIGKILL after the grace period; when the
// leader exits, whatever is left of its group is killed before the leader is
// reaped. Output is flow-controlled: past `max_unconsumed` lines not yet
// marked consumed, the supervisor stops reading that child until the
// consumer catches up, so a chatty child cannot fill memory.
//
// Thread safety: every public member may be called from any thread.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "host/process/process_spec.hpp"

namespace sessionhost {

/// What a child did.
struct child_event {
  enum kind_t : uint8_t {
    spawned,      ///< exec succeeded; `pid`
    spawn_failed, ///< never ran; `text` says why (the child, if forked, is reaped)
    out_line,     ///< a stdout line (without the newline)
    err_line,     ///< a stderr line
    exited,       ///< reaped and cleaned up; `exit_code` or `signal`
  };
  kind_t kind = spawned;
  std::string text;
  pid_t pid = 0;
  int exit_code = -1; ///< when it exited normally, else -1
  int signal = 0;     ///< the signal that ended it, else 0
  bool requested = false; ///< exited after terminate() (not on its own)
};

/// Everything needed to start one child, resolved (no templates left).
struct launch_request {
  std::vector<std::string> argv;     ///< argv[0] searched in PATH if it has no '/'
  std::vector<std::string> env;      ///< "NAME=value"
  std::string working_dir;           ///< created (0700, owned by the user)
  bool remove_working_dir = true;    ///< after the child exits
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  process_limits limits;
  size_t max_line = 64 * 1024;
};

class process_supervisor {
public:
  using event_fn = std::function<void(child_event)>;

  /// Shared between a child's consumer and the supervisor (flow control).
  struct child_flow {
    std::atomic<int64_t> unconsumed{0};
    std::atomic<bool> paused{false};
  };

  /// A started child, as its owner holds it. Cheap to copy.
  struct handle {
    uint64_t id = 0;
    std::shared_ptr<child_flow> flow;
    explicit operator bool() const noexcept { return id != 0; }
  };

  /// Output lines a consumer may have outstanding before reading pauses.
  static constexpr int64_t max_unconsumed = 1024;

  /// Starts the thread.
  process_supervisor();
  /// stop().
  ~process_supervisor();
  process_supervisor(const process_supervisor&) = delete;
  process_supervisor& operator=(const process_supervisor&) = delete;

  /// Queues a start; the outcome arrives through `on_event`.
  handle spawn(launch_request req, event_fn on_event);
  /// Queues `line` plus '\n' for the child's stdin (dropped once it exited).
  void write_line(const handle& h, std::string line);
  /// SIGTERM to the child's process group, SIGKILL after `grace`. Idempotent.
  void terminate(const handle& h, std::chrono::milliseconds grace);
  /// Like terminate, and no event reaches the owner any more: for an owner
  /// that goes away (the child is still reaped and cleaned up).
  void abandon(const handle& h, std::chrono::milliseconds grace);
  /// The owner handled `n` output events.
  void consumed(const handle& h, int64_t n = 1);
  /// Removes a directory on the supervisor thread, then calls `done` there
  /// (for a working directory whose process did not survive a restart).
  void remove_dir(std::string path, std::function<void()> done);

  /// Kills every child (SIGKILL to each group), reaps them, removes their
  /// working directories and stops the thread. Idempotent; blocks (bounded).
  void stop();

  /// Children started and not yet reaped.
  size_t live() const noexcept { return live_.load(); }

private:
  struct child;
  struct command {
    enum kind_t { spawn, write, terminate, abandon, resume, remove_dir };
    explicit command(kind_t k) : kind(k) {}
    kind_t kind;
    uint64_t id = 0;
    std::string data;
    std::chrono::milliseconds grace{0};
    launch_request req;
    event_fn on_event;
    std::shared_ptr<child_flow> flow;
    std::function<void()> done;
  };

  void post(command cmd);
  void run();
  void run_commands();
  void start_child(command& cmd);
  void on_ready(uint64_t key, uint32_t events);
  void read_output(child& c, int which);
  void flush_stdin(child& c);
  void on_exec_status(child& c);
  void on_exit(child& c);
  void finish(child& c);
  void signal_group(child& c, int sig);
  void emit(child& c, child_event ev);
  void pause_if_needed(child& c);
  void update_interest(child& c);
  int next_timeout() const;
  void fire_deadlines();

  int epoll_ = -1;
  int wake_ = -1;
  std::thread thread_;
  std::atomic<size_t> live_{0};
  std::atomic<bool> stopping_{false};
  std::mutex stop_mtx_;
  bool stopped_ = false; // guarded by stop_mtx_

  std::mutex mtx_;
  std::deque<command> queue_; // guarded by mtx_
  uint64_t next_id_ = 1;      // guarded by mtx_

  // Supervisor thread only.
  std::unordered_map<uint64_t, std::unique_ptr<child>> children_;
};

} // namespace sessionhost
