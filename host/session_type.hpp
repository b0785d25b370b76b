#pragma once
// Session types: what a session does with its input. A type is registered by
// name; the host creates one instance per session. Type code never touches
// the actor: it acts through a session_context, which the session actor
// implements, and runs inside the session actor (so it needs no locking and
// must not block).
//
// Built-ins: `echo` (spawns nothing, so it is ACTIVE at once; each message →
// block:start, block:delta × n, block:complete, status:changed) and `agent`
// (an outside agent drives the lifecycle with begin_spawn / activate, as in
// seed 001's relay).

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "host/lifecycle.hpp"
#include "host/session_info.hpp"

namespace sessionhost {

/// Hands input from outside the session actor (another thread, an I/O
/// callback) to the session's type: each post becomes one
/// `session_type::on_external(ctx, tag, data)` call inside the actor, in the
/// order one thread posted them. Thread-safe, never blocks, cheap to copy. It
/// does not keep the session alive: posting to a session that has stopped
/// does nothing and returns false.
class session_poster {
public:
  using post_fn = std::function<bool(uint64_t, std::string)>;
  session_poster() = default;
  explicit session_poster(post_fn fn) : fn_(std::move(fn)) {}
  /// Queues (tag, data) for the type; false if the session is gone.
  bool post(uint64_t tag, std::string data) const {
    return fn_ && fn_(tag, std::move(data));
  }
  explicit operator bool() const noexcept { return static_cast<bool>(fn_); }

private:
  post_fn fn_;
};

/// What type code may do to its session. Valid only during the call it is
/// passed to; never keep it.
class session_context {
public:
  virtual ~session_context();
  /// The session as it is now (state, message_count, metadata, …).
  virtual const session_info& info() const = 0;
  /// The host's (injected) clock.
  virtual micros now() const = 0;
  /// Publishes an event (JSON text payload); returns its seq. Subscribers get
  /// it once it is durable. Text that is not JSON is published as a JSON
  /// string of that text.
  virtual uint64_t publish(const std::string& type, const std::string& data) = 0;
  /// Moves the lifecycle (emits status:changed); errors on an invalid pair.
  virtual caf::error transition(lifecycle_event ev, const std::string& reason) = 0;
  /// Calls the type's on_timer(timer_id) after `delay` (not after the session
  /// was unloaded or closed; a new activation must set its timers again in
  /// on_start).
  virtual void set_timer(std::chrono::milliseconds delay, uint64_t timer_id) = 0;
  /// A poster for input from outside the actor (see session_poster); it may
  /// be kept and used from any thread for as long as the session lives.
  virtual session_poster poster() = 0;
};

/// What a session does with its input: subclass it, register a factory by
/// name in a session_type_registry, create sessions of that type. All
/// callbacks run inside the session actor: no locking, never block.
class session_type {
public:
  virtual ~session_type();
  /// Whether nothing needs spawning: the host makes a new session ACTIVE at
  /// once (CREATED → SPAWNING → ACTIVE) before create returns.
  virtual bool spawns_nothing() const { return false; }
  /// On every activation (creation and each load).
  virtual void on_start(session_context&) {}
  /// Whether on_start does nothing, ever: then a session's actor starts with
  /// its first message, and a create answers as soon as the session is
  /// stored (a cheaper activation). False unless overridden.
  virtual bool quiet_start() const { return false; }
  /// After a message was recorded (message_count, `message` event).
  virtual void on_message(session_context&, const std::string& /*data*/) {}
  /// A timer set with session_context::set_timer fired.
  virtual void on_timer(session_context&, uint64_t /*timer_id*/) {}
  /// When the session is terminated, before it is cleaned.
  virtual void on_stop(session_context&, const std::string& /*reason*/) {}
  /// Input posted through session_context::poster() (from any thread).
  virtual void on_external(session_context&, uint64_t /*tag*/,
                           const std::string& /*data*/) {}
  /// Whether the type holds something outside the session actor right now
  /// (a child process, say). While it does: the session is never passivated;
  /// an explicit unload is refused with `conflict`; a host shutdown
  /// terminates the session first and unloads it once CLEANED; and after
  /// on_stop the session stays TERMINATING until the type moves it to
  /// CLEANED itself (`ctx.transition(lifecycle_event::clean, …)`) — a
  /// cleanup request (the host's terminate) waits for that.
  virtual bool holds_resources() const { return false; }
};

/// Makes one session_type instance per activation of a session.
using session_type_factory = std::function<std::unique_ptr<session_type>()>;

/// Session types by name. Thread-safe.
class session_type_registry {
public:
  /// A registry with the built-in types (echo, agent).
  static std::shared_ptr<session_type_registry> with_builtins();

  /// Adds or replaces a type.
  void add(const std::string& name, session_type_factory factory);
  /// Whether `name` is registered.
  bool contains(const std::string& name) const;
  /// A new instance, or nullptr for an unknown name.
  std::unique_ptr<session_type> make(const std::string& name) const;
  /// Every registered name, sorted.
  std::vector<std::string> names() const;

private:
  mutable std::mutex mtx_;
  std::map<std::string, session_type_factory> factories_; // guarded by mtx_
};

} // namespace sessionhost
