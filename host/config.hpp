#pragma once
// The host's tunables, read from CAF's own configuration system (config file
// `caf-application.ini` or `--config-file`, and `--sessionhost.*` flags), so
// there is no hand-written parser. Every key lives in group "sessionhost".

#include <chrono>
#include <cstddef>
#include <string>

#include <caf/actor_system_config.hpp>

namespace sessionhost {

/// What follows a missed heartbeat (after heartbeat_timeout, session_close).
enum class heartbeat_policy { reconnect_grace, terminate };

/// What follows a reconnect grace period that ended without a reconnect.
enum class grace_policy { keep, terminate };

/// The host's tunables; the defaults are production values.
struct host_config {
  /// A peer that sends nothing for this long has timed out.
  std::chrono::milliseconds heartbeat_timeout{30'000};
  /// What follows a missed heartbeat.
  heartbeat_policy on_heartbeat_timeout = heartbeat_policy::reconnect_grace;
  /// How long a dropped or timed-out peer may come back as a reconnect.
  std::chrono::milliseconds reconnect_grace{30'000};
  /// What follows a grace period without a reconnect.
  grace_policy on_grace_expired = grace_policy::keep;
  /// No subscribers, no peer, no activity for this long: unload. 0 = never.
  std::chrono::milliseconds idle_timeout{300'000};
  /// Not-yet-durable events a session may hold; past it publish fails with
  /// `overloaded`.
  size_t max_backlog = 4096;
  /// Delivered but unconfirmed events per subscriber; past it the subscriber
  /// is dropped (and told where to resume), so it never stalls the session.
  size_t subscriber_window = 8192;
  /// How long a publish's idempotency key is remembered: a retried publish
  /// with the same key within it returns the first seq (0 = not at all).
  std::chrono::milliseconds idempotency_window{std::chrono::minutes(10)};
  /// Most events the persistence listener writes in one transaction.
  size_t commit_batch_limit = 16'384;
  /// Group-commit delay: at a moderate rate, where each commit would carry
  /// one event, the persistence listener waits this long for more before
  /// committing (see persistence_options::commit_delay). 0 = never.
  std::chrono::microseconds commit_delay{0};
  /// A session's stored snapshot is rewritten when its info changes and at
  /// unload; else once per this many events (loading replays the events
  /// after it). 1 = with every batch.
  size_t snapshot_every = 1'000;
  /// Retention (host/store/retention.hpp): events older than this may be
  /// deleted (0 = keep every event) …
  std::chrono::milliseconds retention_max_age{0};
  /// … except the newest this many of each session.
  uint64_t retention_keep_events = 0;
  /// CLEANED sessions are removed this long after their last update
  /// (0 = keep them).
  std::chrono::milliseconds cleaned_grace{std::chrono::hours(24 * 7)};
  /// How often the retention actor purges (0 = never).
  std::chrono::milliseconds retention_interval{std::chrono::minutes(10)};
  /// A host shutdown gives up (answers `unavailable`) once a whole period
  /// of this length passed in which no session finished unloading (it
  /// looks once per period); embedded_host::stop() then stops the rest
  /// without their final snapshot (every acknowledged event is durable
  /// already). While sessions keep unloading it waits, however many.
  std::chrono::milliseconds shutdown_timeout{60'000};
  /// spdlog level: trace, debug, info, warn, error, off.
  std::string log_level = "info";

  /// Reads the `sessionhost.*` keys; missing keys keep the defaults above.
  /// Unknown policy names throw std::invalid_argument.
  static host_config from(const caf::actor_system_config& cfg);
};

/// A CAF config with the `sessionhost.*` options declared, our message types
/// and our error category registered. Use it (or call `declare_options` and
/// `register_types` on your own config) before starting an actor system.
class sessionhost_config : public caf::actor_system_config {
public:
  /// Declares the options, registers the types and the error category.
  sessionhost_config();
};

/// Applies `log_level` to spdlog's default logger.
void apply_log_level(const std::string& level);

} // namespace sessionhost
