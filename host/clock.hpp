#pragma once
// Wall-clock time for sessions, injected (seed 001) so timer tests are
// deterministic: production uses `system_clock`, tests a `manual_clock` they
// advance together with CAF's test_coordinator.

#include <atomic>
#include <cstdint>
#include <memory>

namespace sessionhost {

/// Microseconds since the Unix epoch.
using micros = int64_t;

/// Source of wall-clock time. Implementations are thread-safe.
class clock {
public:
  virtual ~clock();
  /// The current time.
  virtual micros now() const noexcept = 0;
};

/// The real wall clock.
class system_clock final : public clock {
public:
  /// std::chrono::system_clock, in microseconds.
  micros now() const noexcept override;
};

/// A clock that moves only when told to (unit tests).
class manual_clock final : public clock {
public:
  /// Starts at `start` (November 2023 by default).
  explicit manual_clock(micros start = 1'700'000'000'000'000) : now_(start) {}
  /// The time it was last set or advanced to.
  micros now() const noexcept override { return now_.load(); }
  /// Moves the time forward by `delta`.
  void advance(micros delta) noexcept { now_ += delta; }
  /// Sets the time.
  void set(micros t) noexcept { now_ = t; }

private:
  std::atomic<micros> now_;
};

/// "2026-11-21T01:02:03.456789Z" (RFC 3339, UTC).
std::string format_rfc3339(micros t);

} // namespace sessionhost
