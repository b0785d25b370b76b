#pragma once
// A stored snapshot plus the events after it is the session: sessions write
// their snapshot only when their info changes, every `snapshot_every` events
// and at unload (session_actor.cpp), so a load folds the events after the
// snapshot back into it. Pure functions; thread safety is the store's.

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

/// Brings `info`, decoded from a snapshot that covers events up to
/// `covered`, up to `info.last_seq` (the stored tail) by replaying the
/// events in between from `store`. Throws what `read_events` throws.
void catch_up(session_store& store, session_info& info, uint64_t covered);

} // namespace sessionhost
