#pragma once
// The session type of a declared process type: each session runs one child
// process (seed 001's relay runs one agent process per session).
//
// Lifecycle: on_start moves CREATED → SPAWNING and asks the supervisor to
// start the child; once it runs (exec succeeded) → ACTIVE. A start that fails
// (binary missing, exec refused, working directory not creatable) publishes
// `error` {"code":"spawn_failed"}, → TERMINATING → CLEANED. The child ending
// on its own, or the session being terminated (SIGTERM to its group, SIGKILL
// after the grace), ends in CLEANED once it was reaped and its working
// directory removed.
//
// Turns: a message is written to the child's stdin as one line and opens a
// block (`block:start`); every stdout line is a `block:delta` of the open
// block (a line with no block open opens one); the block completes
// (`block:complete` with the whole text) when the child has been quiet for
// `turn-quiet`, prints the `turn-end-line`, the next message arrives or the
// child exits. stderr lines are `log` events {"stream":"stderr"}.
//
// A loaded session whose state says it was running lost its process with the
// host that ran it: it publishes `error` {"code":"process_lost"}, removes the
// working directory and ends CLEANED.

#include <memory>
#include <string>

#include "host/process/process_spec.hpp"
#include "host/process/process_supervisor.hpp"
#include "host/session_type.hpp"

namespace sessionhost {

/// One session of a process type. Runs inside its session actor.
class process_session final : public session_type {
public:
  process_session(std::shared_ptr<const process_spec> spec,
                  std::shared_ptr<process_supervisor> supervisor);
  /// A child still running (the session stopped without terminating it)
  /// is terminated and forgotten.
  ~process_session() override;

  void on_start(session_context& ctx) override;
  void on_message(session_context& ctx, const std::string& data) override;
  void on_timer(session_context& ctx, uint64_t timer_id) override;
  void on_stop(session_context& ctx, const std::string& reason) override;
  void on_external(session_context& ctx, uint64_t tag,
                   const std::string& data) override;
  /// While the child (or its working directory) is not cleaned up.
  bool holds_resources() const override { return holding_; }

private:
  void spawn(session_context& ctx);
  void on_line(session_context& ctx, const std::string& line);
  void open_block(session_context& ctx);
  void complete_block(session_context& ctx, const char* reason);
  void arm_quiet(session_context& ctx, micros after);
  void finish(session_context& ctx, const std::string& reason);

  std::shared_ptr<const process_spec> spec_;
  std::shared_ptr<process_supervisor> sup_;
  process_supervisor::handle child_;
  std::string working_dir_;
  bool holding_ = false;
  // The open block, if any.
  bool block_open_ = false;
  uint64_t blocks_ = 0;
  std::string text_;
  uint64_t lines_ = 0;
  bool truncated_ = false;
  micros last_output_ = 0;
  bool quiet_armed_ = false;
};

} // namespace sessionhost
