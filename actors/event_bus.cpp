#include "actors/event_bus.hpp"

#include <algorithm>

namespace sessionhost {

bool event_bus::add(caf::actor handle, uint64_t last_seq) {
  if (contains(handle.address()))
    return false;
  subs_.push_back(subscriber{std::move(handle), 0, last_seq});
  return true;
}

bool event_bus::remove(const caf::actor_addr& addr) {
  auto i = std::find_if(subs_.begin(), subs_.end(), [&](const subscriber& s) {
    return s.handle.address() == addr;
  });
  if (i == subs_.end())
    return false;
  subs_.erase(i);
  return true;
}

bool event_bus::contains(const caf::actor_addr& addr) const {
  return std::any_of(subs_.begin(), subs_.end(), [&](const subscriber& s) {
    return s.handle.address() == addr;
  });
}

void event_bus::credit(const caf::actor_addr& addr, uint64_t n) {
  for (auto& s : subs_)
    if (s.handle.address() == addr) {
      s.in_flight = s.in_flight > n ? s.in_flight - n : 0;
      return;
    }
}

} // namespace sessionhost
