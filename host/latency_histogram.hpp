#pragma once
// A latency histogram for /metrics (Prometheus buckets): where the time of a
// publish goes, stage by stage. Observed per event on hot paths, so an
// observation is three relaxed atomic additions and a binary search over the
// bounds: no allocation, no lock. Thread-safe; readers see each counter
// atomically (not all of them at one instant).

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <ostream>

namespace sessionhost {

struct latency_histogram {
  /// Upper bounds of the buckets in microseconds (then +Inf): fine from
  /// 50 µs to 5 ms, where a publish's stages spend their time, coarse above.
  static constexpr std::array<int64_t, 30> bounds_us{
    50,     100,    150,    200,     250,     300,     400,    500,
    600,    700,    800,    900,     1'000,   1'250,   1'500,  1'750,
    2'000,  2'500,  3'000,  4'000,   5'000,   7'500,   10'000, 25'000,
    50'000, 100'000, 250'000, 500'000, 1'000'000, 5'000'000};
  /// Per bucket (not cumulative); the last one is +Inf.
  std::array<std::atomic<uint64_t>, bounds_us.size() + 1> buckets{};
  std::atomic<uint64_t> sum_us{0};

  /// Counts one latency of `us` microseconds (negative: 0, as clocks of two
  /// threads may disagree by a little).
  void observe(int64_t us) noexcept {
    if (us < 0)
      us = 0;
    auto i = static_cast<size_t>(
      std::lower_bound(bounds_us.begin(), bounds_us.end(), us)
      - bounds_us.begin());
    buckets[i].fetch_add(1, std::memory_order_relaxed);
    sum_us.fetch_add(static_cast<uint64_t>(us), std::memory_order_relaxed);
  }

  /// Writes it in the Prometheus text format as `name` (in seconds), with
  /// its HELP and TYPE lines.
  void write_prometheus(std::ostream& out, const char* name,
                        const char* help) const {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name
        << " histogram\n";
    uint64_t cum = 0;
    for (size_t i = 0; i < buckets.size(); ++i) {
      cum += buckets[i].load(std::memory_order_relaxed);
      out << name << "_bucket{le=\"";
      if (i < bounds_us.size())
        out << static_cast<double>(bounds_us[i]) / 1e6;
      else
        out << "+Inf";
      out << "\"} " << cum << '\n';
    }
    out << name << "_sum "
        << static_cast<double>(sum_us.load(std::memory_order_relaxed)) / 1e6
        << '\n'
        << name << "_count " << cum << '\n'; // the +Inf bucket, always
  }
};

} // namespace sessionhost
