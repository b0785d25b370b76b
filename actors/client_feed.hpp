#pragma once
// A client the hub writes to itself, in its own turn (a WebSocket
// connection's subscription to one session: ws_connection.cpp), instead of
// sending the client a message per batch: one actor turn fewer per client
// and batch, and a fan-out's writes back to back.
//
// Thread safety: `take` is called on the hub's thread while the client's own
// actor works on its side of the subscription; the implementation guards
// what they share with a lock of its own.

#include <memory>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>

#include "host/event.hpp"

namespace sessionhost {

class client_feed {
public:
  virtual ~client_feed() = default;
  /// A batch of live events of the session, in seq order, durable. Returns
  /// false when the client no longer takes any (closed, unsubscribed, over
  /// its bound): the hub forgets it without a word.
  virtual bool take(const std::vector<event>& events) = 0;
};

using client_feed_ptr = std::shared_ptr<client_feed>;

} // namespace sessionhost

// Local only: a feed is a pointer into this process.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(sessionhost::client_feed_ptr)
