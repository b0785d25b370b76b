// The client broadcast listener: a subscriber of the buses of the sessions
// the hub has clients for, forwarding their events to the hub.
#include "actors/client_broadcast_listener.hpp"

#include <algorithm>
#include <unordered_map>

#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "host/error.hpp"

namespace sessionhost {

namespace {

struct cbl_state {
  static inline const char* name = "sessionhost.client_broadcast_listener";
  session_host_actor host;
  client_hub_actor hub;
  uint64_t credit_every = 1;
  struct watched_session {
    session_actor handle;
    uint64_t uncredited = 0; // events forwarded, not yet confirmed to it
  };
  std::unordered_map<std::string, watched_session> watched;
  std::unordered_map<caf::actor_addr, std::string> by_addr;
};

using self_pointer = client_broadcast_listener_actor::stateful_pointer<cbl_state>;

void drop(self_pointer self, const std::string& id) {
  auto& st = self->state;
  auto i = st.watched.find(id);
  if (i == st.watched.end())
    return;
  self->demonitor(i->second.handle.address());
  st.by_addr.erase(i->second.handle.address());
  st.watched.erase(i);
}

client_broadcast_listener_actor::behavior_type
cbl_behavior(self_pointer self, session_host_actor host, client_hub_actor hub,
             uint64_t credit_every) {
  self->state.host = std::move(host);
  self->state.hub = std::move(hub);
  self->state.credit_every = std::max<uint64_t>(credit_every, 1);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    auto i = st.by_addr.find(dm.source);
    if (i == st.by_addr.end())
      return;
    auto id = i->second;
    drop(self, id);
    self->send(st.hub, unwatch_atom::value, id);
  });
  return {
    [self](watch_atom, const std::string& id) -> caf::result<uint64_t> {
      auto rp = self->make_response_promise<uint64_t>();
      self->request(self->state.host, caf::infinite, get_session_atom::value, id)
        .then(
          [self, rp, id](session_actor& h) mutable {
            // With credits: a reply per batch would be a turn of the
            // session per publish; a credit every `credit_every` is not.
            self->request(h, caf::infinite, subscribe_atom::value,
                          caf::actor_cast<caf::actor>(self), true)
              .then(
                [self, rp, id, h](uint64_t last) mutable {
                  auto& st = self->state;
                  if (!st.watched.count(id)) {
                    st.watched.emplace(id, cbl_state::watched_session{h});
                    st.by_addr[h.address()] = id;
                    self->monitor(h);
                  }
                  rp.deliver(last);
                },
                [rp](caf::error& err) mutable { rp.deliver(err); });
          },
          [rp](caf::error& err) mutable { rp.deliver(err); });
      return rp;
    },
    [self](unwatch_atom, const std::string& id) {
      auto& st = self->state;
      auto i = st.watched.find(id);
      if (i == st.watched.end())
        return;
      // Fire and forget: the session's reply (bool) has no taker here.
      caf::anon_send(i->second.handle, unsubscribe_atom::value,
                     caf::actor_cast<caf::actor>(self));
      drop(self, id);
    },
    [self](events_atom, std::string& id, std::vector<event>& events) {
      auto& st = self->state;
      auto i = st.watched.find(id);
      if (i == st.watched.end())
        return;
      auto& w = i->second;
      w.uncredited += events.size();
      if (w.uncredited >= st.credit_every) {
        caf::anon_send(w.handle, credit_atom::value,
                       caf::actor_cast<caf::actor>(self), w.uncredited);
        w.uncredited = 0;
      }
      self->send(st.hub, broadcast_atom::value, std::move(id),
                 std::move(events));
    },
    [self](lagged_atom, const std::string& id, uint64_t) {
      // The hub could not keep up: its clients resume from the store.
      drop(self, id);
      self->send(self->state.hub, unwatch_atom::value, id);
    },
    [self](unloaded_atom, const std::string& id, uint64_t last) {
      // Not a lag: the clients are told, and do not load it again.
      drop(self, id);
      self->send(self->state.hub, unloaded_atom::value, id, last);
    },
  };
}

} // namespace

client_broadcast_listener_actor
spawn_client_broadcast_listener(caf::local_actor* parent,
                                session_host_actor host, client_hub_actor hub,
                                uint64_t credit_every) {
  return parent->spawn<caf::linked>(cbl_behavior, std::move(host),
                                    std::move(hub), credit_every);
}

} // namespace sessionhost
