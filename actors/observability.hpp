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

#include "host/session_info.hpp"

namespace sessionhost {

struct lifecycle_record {
  micros ts = 0;
  std::string session_id;
  std::string name;
  metadata_map metadata;
};

/// Monotonic counters (read with .load()).
struct host_counters {
  std::atomic<uint64_t> events_published{0};
  std::atomic<uint64_t> events_persisted{0};
  std::atomic<uint64_t> subscribers_dropped{0};
  std::atomic<uint64_t> publishes_refused{0};
  std::atomic<uint64_t> store_failures{0};
  std::atomic<uint64_t> hook_failures{0};
};

class observability_hub {
public:
  explicit observability_hub(size_t capacity = 100'000) : capacity_(capacity) {}

  void record(lifecycle_record rec);

  /// Every retained record, oldest first.
  std::vector<lifecycle_record> records() const;

  /// The retained records of one session, oldest first.
  std::vector<lifecycle_record> records_for(const std::string& session_id) const;

  /// Just the names of one session's records, oldest first (handy in tests).
  std::vector<std::string> names_for(const std::string& session_id) const;

  void clear();

  host_counters counters;
  /// False while the store refuses writes (set by the persistence listener).
  std::atomic<bool> store_healthy{true};

private:
  size_t capacity_;
  mutable std::mutex mtx_;
  std::deque<lifecycle_record> records_; // guarded by mtx_
};

} // namespace sessionhost
