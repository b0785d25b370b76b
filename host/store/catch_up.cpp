#include "host/store/catch_up.hpp"

#include <nlohmann/json.hpp>

#include "host/lifecycle.hpp"
#include "host/store/session_store.hpp"

namespace sessionhost {

using json = nlohmann::json;

void replay_into(session_info& info, const std::vector<event>& events) {
  for (auto& e : events) {
    if (e.seq <= info.last_seq)
      continue;
    info.last_seq = e.seq;
    info.updated_at = e.ts;
    if (e.type == event_type::message) {
      ++info.message_count;
      continue;
    }
    if (e.type != event_type::status_changed
        && e.type != event_type::session_open
        && e.type != event_type::session_close)
      continue;
    auto data = json::parse(e.data, nullptr, false);
    if (!data.is_object())
      continue;
    if (e.type == event_type::status_changed) {
      if (auto s = parse_session_state(data.value("state", "")))
        info.state = *s;
    } else if (e.type == event_type::session_open) {
      info.peer = data.value("peer", info.peer);
      info.peer_connected = true;
      if (data.contains("reconnects"))
        info.reconnects = std::stoull(data.value("reconnects", "0"));
    } else {
      info.peer_connected = false;
    }
  }
}

void catch_up(session_store& store, session_info& info, uint64_t covered) {
  auto tail = info.last_seq;
  if (covered >= tail)
    return;
  info.last_seq = covered;
  // Only up to the tail read with the snapshot: a concurrent append may
  // have added more since.
  fold_up_to(info, tail, [&](uint64_t after, uint64_t limit) {
    return store.read_events(info.id, after, static_cast<size_t>(limit));
  });
}

} // namespace sessionhost
