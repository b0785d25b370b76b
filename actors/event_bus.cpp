#include "actors/event_bus.hpp"

#include <algorithm>

#include <caf/actor_cast.hpp>

namespace sessionhost {

namespace {

// Compared by control block: address() would build (and drop) a weak
// reference per subscriber and comparison (per credit, per delivery).
bool same(const caf::actor& a, const caf::actor_addr& b) {
  return caf::actor_cast<caf::actor_control_block*>(a)
         == caf::actor_cast<caf::actor_control_block*>(b);
}

} // namespace

bool event_bus::add(caf::actor handle, uint64_t last_seq, bool credits) {
  if (contains(handle.address()))
    return false;
  subs_.push_back(subscriber{std::move(handle), 0, last_seq, credits});
  return true;
}

bool event_bus::remove(const caf::actor_addr& addr) {
  auto i = std::find_if(subs_.begin(), subs_.end(), [&](const subscriber& s) {
    return same(s.handle, addr);
  });
  if (i == subs_.end())
    return false;
  subs_.erase(i);
  return true;
}

bool event_bus::contains(const caf::actor_addr& addr) const {
  return std::any_of(subs_.begin(), subs_.end(), [&](const subscriber& s) {
    return same(s.handle, addr);
  });
}

void event_bus::credit(const caf::actor_addr& addr, uint64_t n) {
  for (auto& s : subs_)
    if (same(s.handle, addr)) {
      s.in_flight = s.in_flight > n ? s.in_flight - n : 0;
      return;
    }
}

} // namespace sessionhost
