#pragma once
// A stored snapshot plus the events after it is the session: sessions write
// their snapshot only when their info changes, every `snapshot_every` events
// and at unload (session_actor.cpp), so a load folds the events after the
// snapshot back into it. Pure functions; thread safety is the store's.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "host/event.hpp"
#include "host/session_info.hpp"

namespace sessionhost {

class session_store;

/// Applies stored events after a snapshot to it (state, counters, peer,
/// last_seq, updated_at): the fold that makes "snapshot + events after it"
/// exact. Events at or below `info.last_seq` are skipped.
void replay_into(session_info& info, const std::vector<event>& events);

/// Replays into `info` the stored events after `info.last_seq` up to `tail`,
/// a page at a time from `read(after, limit)` (events with seq > after, at
/// most `limit`), and leaves `info.last_seq` at least `tail`. Events past
/// `tail` (appended since it was read) are left out. Fewer events than the
/// tail claims: what there is.
template <class ReadPage>
void fold_up_to(session_info& info, uint64_t tail, ReadPage&& read) {
  while (info.last_seq < tail) {
    std::vector<event> page =
      read(info.last_seq, std::min<uint64_t>(tail - info.last_seq, 1024));
    while (!page.empty() && page.back().seq > tail)
      page.pop_back();
    if (page.empty())
      break;
    replay_into(info, page);
  }
  info.last_seq = std::max(info.last_seq, tail);
}

/// Brings `info`, decoded from a snapshot that covers events up to
/// `covered`, up to `info.last_seq` (the stored tail) by replaying the
/// events in between from `store`. Throws what `read_events` throws.
void catch_up(session_store& store, session_info& info, uint64_t covered);

} // namespace sessionhost
