#include "actors/idempotency_window.hpp"

#include <algorithm>
#include <vector>

namespace sessionhost {

std::optional<uint64_t> idempotency_window::find(const std::string& key,
                                                 micros now) {
  expire(now);
  auto i = seqs_.find(key);
  if (i == seqs_.end())
    return std::nullopt;
  return i->second;
}

void idempotency_window::remember(const std::string& key, uint64_t seq,
                                  micros ts) {
  if (!seqs_.emplace(key, seq).second)
    return; // the first publish with a key wins
  // Recovered keys arrive newest first; keep the deque ordered by time.
  if (by_time_.empty() || by_time_.back().first <= ts) {
    by_time_.emplace_back(ts, key);
  } else {
    auto pos = std::upper_bound(
      by_time_.begin(), by_time_.end(), ts,
      [](micros t, const std::pair<micros, std::string>& e) { return t < e.first; });
    by_time_.emplace(pos, ts, key);
  }
}

void idempotency_window::expire(micros now) {
  while (!by_time_.empty() && by_time_.front().first + window_ < now) {
    seqs_.erase(by_time_.front().second);
    by_time_.pop_front();
  }
}

void idempotency_window::recover(session_store& store, const std::string& id,
                                 uint64_t last_seq, micros now,
                                 uint64_t max_events) {
  recovered_ = true;
  constexpr uint64_t page = 1000;
  auto cutoff = now - window_;
  uint64_t hi = last_seq, read = 0;
  while (hi > 0 && read < max_events) {
    auto lo = hi > page ? hi - page : 0;
    auto events = store.read_events(id, lo, hi - lo);
    read += events.size();
    for (auto i = events.rbegin(); i != events.rend(); ++i)
      if (!i->idempotency_key.empty() && i->ts >= cutoff)
        remember(i->idempotency_key, i->seq, i->ts);
    if (events.empty() || events.front().ts < cutoff)
      break;
    hi = lo;
  }
}

} // namespace sessionhost
