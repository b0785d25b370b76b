#pragma once
// Lifecycle hooks for C++ embedders (seed 000): session_open, session_close,
// heartbeat_timeout. C++ cannot compare callables, so registering returns a
// hook_id that unregisters it.
//
// The host owns one hook_registry; hooks are either host-wide (every session,
// including ones loaded later) or bound to one session id. Because the
// registry is keyed by id and not by actor, unloading and loading a session
// never loses its hooks. Hooks run inside the session actor that emits, in
// registration order (host-wide first); a hook that throws is logged and
// skipped. Thread-safe: registration may happen from any thread while
// sessions fire hooks.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "host/session_info.hpp"

namespace sessionhost {

/// Which lifecycle moment a hook is for.
enum class hook_kind : uint8_t { session_open, session_close, heartbeat_timeout };

/// "session_open", "session_close", "heartbeat_timeout".
const char* to_string(hook_kind k) noexcept;

/// What a hook may do to the session that fires it, synchronously, while it
/// runs. Emissions it causes are published and recorded, but hooks are not
/// re-entered for them (the emission guard of seed 000).
class session_control {
public:
  virtual ~session_control();
  /// Publishes an event on the session's bus (durable before delivery);
  /// returns its seq. Text that is not JSON is published as a JSON string
  /// of that text.
  virtual uint64_t publish(const std::string& type, const std::string& data) = 0;
  /// Detaches the peer with `reason` ("manual", …).
  virtual void detach_peer(const std::string& reason) = 0;
};

/// What a hook is told.
struct hook_event {
  /// The session that fires.
  std::string session_id;
  /// Which hook this is.
  hook_kind kind;
  metadata_map metadata;            ///< "reason", "reconnects", "peer", …
  session_control* control = nullptr; ///< valid only during the call
};

/// A hook. Runs inside the session actor: must not block.
using hook_fn = std::function<void(const hook_event&)>;
/// Names a registered hook (to unregister it); never 0.
using hook_id = uint64_t;

/// The hooks of one host, host-wide and per session. Thread-safe.
class hook_registry {
public:
  /// Adds a hook; `session_id` empty means host-wide. A disabled hook is
  /// invisible until `enable` (used so the session that owns it can enable
  /// and fire it at once in one step).
  hook_id add(hook_kind kind, std::string session_id, hook_fn fn,
              bool enabled = true);

  /// Makes a hook added disabled visible. Returns false for unknown ids.
  bool enable(hook_id id);

  /// Removes one hook of that kind. Returns whether it was there.
  bool remove(hook_kind kind, hook_id id);

  /// Removes every hook bound to `session_id`; returns how many.
  size_t clear(const std::string& session_id);

  /// Removes every hook, host-wide and per session.
  void clear_all();

  /// The enabled hooks that apply to `session_id`: host-wide first, then the
  /// session's own, each in registration order.
  std::vector<std::shared_ptr<const hook_fn>>
  collect(hook_kind kind, const std::string& session_id) const;

  /// One enabled hook of that kind by id (to fire a fresh open-hook).
  std::shared_ptr<const hook_fn> get(hook_kind kind, hook_id id) const;

  /// How many hooks are registered (enabled or not).
  size_t size() const;

private:
  struct entry {
    hook_id id;
    hook_kind kind;
    std::string session_id;
    bool enabled;
    std::shared_ptr<const hook_fn> fn;
  };
  mutable std::mutex mtx_;
  std::vector<entry> entries_; ///< guarded by mtx_, ordered by id
  hook_id next_id_ = 1;        ///< guarded by mtx_
};

} // namespace sessionhost
