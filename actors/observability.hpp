#pragma once
// The observability hub (seed 000's ObservabilityHub): every lifecycle event
// (session_open, session_close, heartbeat_timeout, session:start,
// session:end, status:changed) is recorded with its session_id and metadata
// so operators and tests can read them back; plus the counters /metrics
// reports. The record log is a bounded ring: old records fall off, counters
// never do. Thread-safe.

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "host/latency_histogram.hpp"
#include "host/session_info.hpp"

namespace sessionhost {

/// One lifecycle event of one session, as recorded.
struct lifecycle_record {
  /// When it happened (the host's clock).
  micros ts = 0;
  /// The session it happened to.
  std::string session_id;
  /// The event name: session_open, status:changed, …
  std::string name;
  /// Its metadata ("reason", "state", "peer", …).
  metadata_map metadata;
};

/// Monotonic counters (read with .load()).
struct host_counters {
  /// Events emitted by sessions.
  std::atomic<uint64_t> events_published{0};
  /// Events the persistence listener made durable.
  std::atomic<uint64_t> events_persisted{0};
  /// Subscribers dropped for lagging.
  std::atomic<uint64_t> subscribers_dropped{0};
  /// Publishes refused with `overloaded`.
  std::atomic<uint64_t> publishes_refused{0};
  /// Store writes that failed (and were retried).
  std::atomic<uint64_t> store_failures{0};
  /// Hooks that threw.
  std::atomic<uint64_t> hook_failures{0};
  /// Rows the retention actor deleted: events (by either rule) and CLEANED
  /// sessions past their grace period.
  std::atomic<uint64_t> events_purged{0};
  std::atomic<uint64_t> sessions_purged{0};
};

/// Lifecycle records and counters of one host. Thread-safe.
class observability_hub {
public:
  /// Keeps at most `capacity` records.
  explicit observability_hub(size_t capacity = 100'000) : capacity_(capacity) {}

  /// Appends a record (dropping the oldest past the capacity).
  void record(lifecycle_record rec);

  /// Every retained record, oldest first.
  std::vector<lifecycle_record> records() const;

  /// The retained records of one session, oldest first.
  std::vector<lifecycle_record> records_for(const std::string& session_id) const;

  /// Just the names of one session's records, oldest first (handy in tests).
  std::vector<std::string> names_for(const std::string& session_id) const;

  /// Drops every record (counters stay).
  void clear();

  /// The counters, updated by the host's actors.
  host_counters counters;
  /// From each event's `ts` (its append) to the store's commit of it
  /// returned (observed by the persistence listener, per event).
  latency_histogram publish_to_durable;
  /// The store's write of one group commit (its transaction and sync), per
  /// commit: what of publish_to_durable is the store's own.
  latency_histogram store_commit;
  /// False while the store refuses writes (set by the persistence listener).
  std::atomic<bool> store_healthy{true};

private:
  size_t capacity_;
  mutable std::mutex mtx_;
  std::deque<lifecycle_record> records_; // guarded by mtx_
};

} // namespace sessionhost
