#pragma once
// What a store may forget: the retention rules `session_store::purge`
// applies, and what one purge removed.
//
//   event rule    (max_event_age > 0): an event whose `ts` is older than
//                 now - max_event_age is deleted, unless it is one of the
//                 newest `keep_events` events of its session or its seq is
//                 above the seq the stored snapshot covers (those events are
//                 still needed to rebuild the session).
//   cleaned rule  (cleaned_grace > 0): a CLEANED session whose `updated_at`
//                 is older than now - cleaned_grace is removed with all its
//                 events.
//
// Purging is done in chunks of at most `chunk_rows` rows per transaction, so
// a writer (the persistence listener) never waits for more than one chunk.
//
// Thread safety: plain values.

#include <chrono>
#include <cstdint>
#include <cstddef>

namespace sessionhost {

struct retention_policy {
  /// Events older than this may be deleted; zero disables the event rule.
  std::chrono::microseconds max_event_age{0};
  /// The newest events of every session that the event rule never deletes.
  uint64_t keep_events = 0;
  /// CLEANED sessions untouched for longer than this are removed; zero
  /// disables the cleaned rule.
  std::chrono::microseconds cleaned_grace{0};
  /// Most rows deleted in one transaction (>= 1).
  size_t chunk_rows = 5'000;
  /// Most rows one purge call deletes; 0: no limit. A caller that must stay
  /// responsive (the retention actor) purges in several calls.
  uint64_t max_rows = 0;

  /// True when at least one rule is on.
  bool enabled() const noexcept {
    return max_event_age.count() > 0 || cleaned_grace.count() > 0;
  }
};

/// What one purge deleted.
struct purge_result {
  uint64_t events = 0;   // event rows, by either rule
  uint64_t sessions = 0; // sessions removed by the cleaned rule
  /// True when `max_rows` stopped the purge before it was done.
  bool truncated = false;
};

} // namespace sessionhost
