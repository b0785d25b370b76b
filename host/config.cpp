#include "host/config.hpp"

#include <stdexcept>

#include <caf/config_option_adder.hpp>
#include <caf/settings.hpp>
#include <spdlog/spdlog.h>

#include "actors/types.hpp"
#include "host/error.hpp"

namespace sessionhost {

namespace {

std::chrono::milliseconds ms_or(const caf::actor_system_config& cfg,
                                caf::string_view key,
                                std::chrono::milliseconds fallback) {
  auto ts = caf::get_or(cfg, key, caf::timespan{fallback});
  return std::chrono::duration_cast<std::chrono::milliseconds>(ts);
}

} // namespace

host_config host_config::from(const caf::actor_system_config& cfg) {
  host_config out;
  out.heartbeat_timeout = ms_or(cfg, "sessionhost.heartbeat-timeout",
                                out.heartbeat_timeout);
  out.reconnect_grace = ms_or(cfg, "sessionhost.reconnect-grace",
                              out.reconnect_grace);
  out.idle_timeout = ms_or(cfg, "sessionhost.idle-timeout", out.idle_timeout);
  auto hb = caf::get_or(cfg, "sessionhost.heartbeat-policy",
                        std::string{"reconnect-grace"});
  if (hb == "reconnect-grace")
    out.on_heartbeat_timeout = heartbeat_policy::reconnect_grace;
  else if (hb == "terminate")
    out.on_heartbeat_timeout = heartbeat_policy::terminate;
  else
    throw std::invalid_argument("sessionhost.heartbeat-policy must be "
                                "reconnect-grace or terminate, not " + hb);
  auto gp = caf::get_or(cfg, "sessionhost.grace-policy", std::string{"keep"});
  if (gp == "keep")
    out.on_grace_expired = grace_policy::keep;
  else if (gp == "terminate")
    out.on_grace_expired = grace_policy::terminate;
  else
    throw std::invalid_argument("sessionhost.grace-policy must be keep or "
                                "terminate, not " + gp);
  out.max_backlog = caf::get_or(cfg, "sessionhost.max-backlog", out.max_backlog);
  out.subscriber_window = caf::get_or(cfg, "sessionhost.subscriber-window",
                                      out.subscriber_window);
  out.idempotency_window = ms_or(cfg, "sessionhost.idempotency-window",
                                 out.idempotency_window);
  out.commit_batch_limit = caf::get_or(cfg, "sessionhost.commit-batch-limit",
                                       out.commit_batch_limit);
  out.commit_delay = std::chrono::duration_cast<std::chrono::microseconds>(
    caf::get_or(cfg, "sessionhost.commit-delay",
                caf::timespan{out.commit_delay}));
  if (out.commit_delay.count() < 0 || out.commit_delay > std::chrono::seconds(1))
    throw std::invalid_argument("sessionhost.commit-delay must be between 0s "
                                "and 1s");
  out.snapshot_every = caf::get_or(cfg, "sessionhost.snapshot-every",
                                   out.snapshot_every);
  out.retention_max_age = ms_or(cfg, "sessionhost.retention-max-age",
                                out.retention_max_age);
  out.retention_keep_events = caf::get_or(cfg, "sessionhost.retention-keep-events",
                                          out.retention_keep_events);
  out.cleaned_grace = ms_or(cfg, "sessionhost.cleaned-grace", out.cleaned_grace);
  out.retention_interval = ms_or(cfg, "sessionhost.retention-interval",
                                 out.retention_interval);
  out.shutdown_timeout = ms_or(cfg, "sessionhost.shutdown-timeout",
                              out.shutdown_timeout);
  if (out.shutdown_timeout.count() <= 0)
    throw std::invalid_argument("sessionhost.shutdown-timeout must be above "
                                "0s");
  out.log_level = caf::get_or(cfg, "sessionhost.log-level", out.log_level);
  return out;
}

sessionhost_config::sessionhost_config() {
  host_config d;
  opt_group{custom_options_, "sessionhost"}
    .add<caf::timespan>("heartbeat-timeout",
                        "a peer silent this long has timed out (e.g. 30s)")
    .add<std::string>("heartbeat-policy",
                      "after a heartbeat timeout: reconnect-grace or terminate")
    .add<caf::timespan>("reconnect-grace",
                        "how long a lost peer may reconnect (e.g. 30s)")
    .add<std::string>("grace-policy",
                      "when the grace period ends: keep or terminate")
    .add<caf::timespan>("idle-timeout",
                        "unload a session idle this long (0s: never)")
    .add<size_t>("max-backlog", "not-yet-durable events per session")
    .add<size_t>("subscriber-window", "unconfirmed events per subscriber")
    .add<caf::timespan>("idempotency-window",
                        "how long publish idempotency keys are remembered "
                        "(default 10min; 0s: off)")
    .add<size_t>("commit-batch-limit", "most events per store transaction")
    .add<caf::timespan>("commit-delay",
                        "at moderate rates, wait this long for more events "
                        "before a commit (e.g. 250us; 0s: never)")
    .add<size_t>("snapshot-every",
                 "rewrite a session's stored snapshot at least every this "
                 "many events (default 1000; also on change and unload)")
    .add<caf::timespan>("retention-max-age",
                        "delete events older than this (0s: keep all)")
    .add<uint64_t>("retention-keep-events",
                   "newest events per session retention always keeps")
    .add<caf::timespan>("cleaned-grace",
                        "remove CLEANED sessions this long after their last "
                        "update (default 7 days; 0s: keep)")
    .add<caf::timespan>("retention-interval",
                        "how often retention runs (default 10min; 0s: never)")
    .add<caf::timespan>("shutdown-timeout",
                        "a shutdown gives up once this long passed without "
                        "a session finishing its unload (default 60s)")
    .add<std::string>("log-level", "trace, debug, info, warn, error, off");
  register_types(*this);
  register_error_category(*this);
}

void apply_log_level(const std::string& level) {
  spdlog::set_level(spdlog::level::from_str(level));
}

} // namespace sessionhost
