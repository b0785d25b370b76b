#pragma once
// The producer idempotency keys a session remembers (docs/PROTOCOL.md,
// "Idempotent publishes"): key → seq of the publish that first carried it,
// for a window of time. The key also travels in the stored event, so after
// an unload or a restart the first keyed publish of an activation reads the
// window's events back from the store (`recover`) before it is checked.
// Not thread-safe: owned by one session actor; a session that never sees a
// key never allocates one.

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>

#include "host/clock.hpp"
#include "host/store/session_store.hpp"

namespace sessionhost {

class idempotency_window {
public:
  /// Keys are kept `window` microseconds after their event's ts.
  explicit idempotency_window(micros window) : window_(window) {}

  /// The seq first published with `key`, if that was within the window.
  std::optional<uint64_t> find(const std::string& key, micros now);

  /// Remembers `key` for the event `seq` published at `ts`.
  void remember(const std::string& key, uint64_t seq, micros ts);

  /// Reads the keys of stored events of session `id` up to `last_seq` that
  /// are still within the window (newest first, at most `max_events`
  /// events read). Throws store_error. Call once per activation.
  void recover(session_store& store, const std::string& id, uint64_t last_seq,
               micros now, uint64_t max_events = 100'000);

  /// Whether `recover` ran in this activation.
  bool recovered() const noexcept { return recovered_; }

  size_t size() const noexcept { return seqs_.size(); }

private:
  void expire(micros now);

  micros window_;
  bool recovered_ = false;
  std::unordered_map<std::string, uint64_t> seqs_;
  std::deque<std::pair<micros, std::string>> by_time_; // oldest first
};

} // namespace sessionhost
