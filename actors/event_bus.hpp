#pragma once
// A session's event bus: its subscribers and the bound that keeps a slow one
// from stalling the session.
//
// CAF mailboxes are unbounded, so the bus bounds each subscriber itself:
// every batch goes out as a request, and the subscriber's (empty) reply is
// its credit. A subscriber with more than `window` delivered-but-unanswered
// events is dropped and told the seq it got up to (lagged_atom), so it can
// resubscribe and read the rest from the store. The client hub uses the same
// bus per session for its clients. Not thread-safe: owned by one actor.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/message.hpp>
#include <caf/send.hpp>

#include "actors/atoms.hpp"

namespace sessionhost {

class event_bus {
public:
  struct subscriber {
    caf::actor handle;
    uint64_t in_flight = 0; // events sent, not yet confirmed
    uint64_t last_seq = 0;  // highest seq sent to it
    bool credits = false;   // confirms by message (credit), not by reply
  };

  /// Adds a subscriber that has seen everything up to `last_seq`. Returns
  /// false when it is subscribed already. One that `credits` gets plain
  /// messages and calls for `credit` itself.
  bool add(caf::actor handle, uint64_t last_seq, bool credits = false);

  /// Removes a subscriber; returns whether it was there.
  bool remove(const caf::actor_addr& addr);

  bool contains(const caf::actor_addr& addr) const;
  size_t size() const noexcept { return subs_.size(); }
  bool empty() const noexcept { return subs_.empty(); }
  const std::vector<subscriber>& subscribers() const noexcept { return subs_; }

  /// A subscriber confirmed `n` events.
  void credit(const caf::actor_addr& addr, uint64_t n);

  /// Sends `msg` (n events, the last one `last_seq`) to every subscriber with
  /// room in its window, as a request whose reply calls `on_credit(addr, n)`.
  /// Subscribers past the window are removed and returned with the seq they
  /// got up to; the caller tells them (lagged_atom).
  template <class Self, class OnCredit>
  std::vector<std::pair<caf::actor, uint64_t>>
  deliver(Self* self, const caf::message& msg, uint64_t n, uint64_t last_seq,
          uint64_t window, OnCredit on_credit) {
    std::vector<std::pair<caf::actor, uint64_t>> dropped;
    auto i = subs_.begin();
    while (i != subs_.end()) {
      if (i->in_flight > 0 && i->in_flight + n > window) {
        dropped.emplace_back(std::move(i->handle), i->last_seq);
        i = subs_.erase(i);
        continue;
      }
      i->in_flight += n;
      i->last_seq = last_seq;
      if (i->credits) {
        caf::anon_send(i->handle, msg);
        ++i;
        continue;
      }
      auto addr = i->handle.address();
      self->request(i->handle, caf::infinite, msg)
        .then([=]() mutable { on_credit(addr, n); },
              [=](caf::error&) mutable { on_credit(addr, n); });
      ++i;
    }
    return dropped;
  }

private:
  std::vector<subscriber> subs_;
};

} // namespace sessionhost
