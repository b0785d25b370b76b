#include "actors/client_hub.hpp"

#include <algorithm>
#include <memory>
#include <set>
#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "actors/client_broadcast_listener.hpp"
#include "actors/event_bus.hpp"
#include "host/error.hpp"

namespace sessionhost {

namespace {

struct hub_state {
  static inline const char* name = "sessionhost.client_hub";

  struct session_clients {
    event_bus bus;
    bool watching = false;
    uint64_t last_seq = 0; // last seq forwarded for this session
    struct waiter {
      caf::actor client;
      caf::typed_response_promise<uint64_t> rp;
      bool credits;
      client_feed_ptr feed; // set: written to directly
    };
    // Clients the hub writes to itself (client_feed.hpp).
    struct fed {
      caf::actor client;
      client_feed_ptr feed;
    };
    std::vector<fed> feeds;
    bool empty() const noexcept {
      return bus.empty() && feeds.empty() && waiting.empty();
    }
    std::vector<waiter> waiting; // subscribed before the listener watched
  };

  client_hub_options opts;
  client_broadcast_listener_actor listener;
  std::unordered_map<std::string, session_clients> sessions;
  std::unordered_map<caf::actor_addr, std::set<std::string>> by_client;
};

using self_pointer = client_hub_actor::stateful_pointer<hub_state>;

void add_client(self_pointer self, hub_state::session_clients& sc,
                const std::string& id, const caf::actor& client,
                bool credits, client_feed_ptr feed) {
  if (feed) {
    auto i = std::find_if(sc.feeds.begin(), sc.feeds.end(),
                          [&](auto& f) { return f.client == client; });
    if (i != sc.feeds.end()) {
      i->feed = std::move(feed); // the client's newer subscription
      return;
    }
    if (sc.bus.contains(client.address()))
      return;
    sc.feeds.push_back({client, std::move(feed)});
  } else if (!sc.bus.add(client, sc.last_seq, credits)) {
    return;
  }
  auto& subs = self->state.by_client[client.address()];
  if (subs.empty())
    self->monitor(client);
  subs.insert(id);
}

// Removes a client from the bus or the feeds; returns whether it was there.
bool remove_client(hub_state::session_clients& sc, const caf::actor_addr& a) {
  if (sc.bus.remove(a))
    return true;
  auto i = std::find_if(sc.feeds.begin(), sc.feeds.end(),
                        [&](auto& f) { return f.client.address() == a; });
  if (i == sc.feeds.end())
    return false;
  sc.feeds.erase(i);
  return true;
}

void forget_client(self_pointer self, const caf::actor_addr& client,
                   const std::string& id) {
  auto& st = self->state;
  auto i = st.by_client.find(client);
  if (i == st.by_client.end())
    return;
  i->second.erase(id);
  if (i->second.empty()) {
    self->demonitor(client);
    st.by_client.erase(i);
  }
}

// No client left for a session: stop receiving it.
void maybe_unwatch(self_pointer self, const std::string& id) {
  auto& st = self->state;
  auto i = st.sessions.find(id);
  if (i == st.sessions.end() || !i->second.empty())
    return;
  if (i->second.watching)
    self->send(st.listener, unwatch_atom::value, id);
  st.sessions.erase(i);
}

// The session is no longer received: every client is forgotten and told
// (`tell(subscriber)`); subscriptions under way fail with unavailable.
template <class Tell>
void drop_session(self_pointer self, const std::string& id, Tell tell) {
  auto& st = self->state;
  auto i = st.sessions.find(id);
  if (i == st.sessions.end())
    return;
  auto subs = i->second.bus.subscribers();
  // A fed client is told the last seq the hub handed it.
  for (auto& f : i->second.feeds)
    subs.push_back({std::move(f.client), 0, i->second.last_seq, false});
  i->second.feeds.clear();
  i->second.watching = false;
  for (auto& s : subs) {
    forget_client(self, s.handle.address(), id);
    tell(s);
  }
  auto waiting = std::move(i->second.waiting);
  st.sessions.erase(i);
  for (auto& w : waiting)
    w.rp.deliver(make_error(errc::unavailable, "session " + id
                                                 + " went away, retry"));
}

caf::result<uint64_t> subscribe(self_pointer self, caf::actor client,
                                const std::string& id, bool credits,
                                client_feed_ptr feed = nullptr) {
  auto& st = self->state;
  if (!client)
    return make_error(errc::bad_request, "invalid client");
  auto& sc = st.sessions[id];
  if (sc.watching) {
    add_client(self, sc, id, client, credits, std::move(feed));
    return sc.last_seq;
  }
  auto rp = self->make_response_promise<uint64_t>();
  sc.waiting.push_back({client, rp, credits, std::move(feed)});
  if (sc.waiting.size() > 1)
    return rp; // a watch request is under way
  self->request(st.listener, caf::infinite, watch_atom::value, id)
    .then(
      [self, id](uint64_t last) {
        auto& st = self->state;
        auto& sc = st.sessions[id];
        sc.watching = true;
        sc.last_seq = last;
        auto waiting = std::move(sc.waiting);
        sc.waiting.clear();
        for (auto& w : waiting) {
          add_client(self, sc, id, w.client, w.credits, std::move(w.feed));
          w.rp.deliver(last);
        }
        maybe_unwatch(self, id); // every waiter may be gone already
      },
      [self, id](caf::error& err) {
        auto& st = self->state;
        auto i = st.sessions.find(id);
        if (i == st.sessions.end())
          return;
        auto waiting = std::move(i->second.waiting);
        i->second.waiting.clear();
        for (auto& w : waiting)
          w.rp.deliver(err);
        maybe_unwatch(self, id);
      });
  return rp;
}

client_hub_actor::behavior_type hub_behavior(self_pointer self,
                                             session_host_actor host,
                                             client_hub_options opts) {
  self->state.opts = opts;
  // The listener confirms as often as a client does (api.cpp's
  // credit_every), inside the sessions' window.
  self->state.listener = spawn_client_broadcast_listener(
    self, std::move(host), client_hub_actor{self},
    std::clamp<uint64_t>(opts.session_window / 16, 1, 64));
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    auto i = st.by_client.find(dm.source);
    if (i == st.by_client.end())
      return;
    auto ids = std::move(i->second);
    st.by_client.erase(i);
    for (auto& id : ids) {
      if (auto j = st.sessions.find(id); j != st.sessions.end())
        remove_client(j->second, dm.source);
      maybe_unwatch(self, id);
    }
  });
  return {
    [self](hub_subscribe_atom, caf::actor client,
           const std::string& id) -> caf::result<uint64_t> {
      return subscribe(self, std::move(client), id, false);
    },
    [self](hub_subscribe_atom, caf::actor client, const std::string& id,
           bool credits) -> caf::result<uint64_t> {
      return subscribe(self, std::move(client), id, credits);
    },
    [self](hub_subscribe_atom, caf::actor client, const std::string& id,
           client_feed_ptr& feed) -> caf::result<uint64_t> {
      if (!feed)
        return make_error(errc::bad_request, "invalid client feed");
      return subscribe(self, std::move(client), id, true, std::move(feed));
    },
    [self](hub_credit_atom, const caf::actor& client, const std::string& id,
           uint64_t n) {
      auto& st = self->state;
      if (auto i = st.sessions.find(id); i != st.sessions.end() && client)
        i->second.bus.credit(client.address(), n);
    },
    [self](hub_unsubscribe_atom, caf::actor client, const std::string& id) {
      auto& st = self->state;
      auto i = st.sessions.find(id);
      if (!client || i == st.sessions.end()
          || !remove_client(i->second, client.address()))
        return false;
      forget_client(self, client.address(), id);
      maybe_unwatch(self, id);
      return true;
    },
    [self](broadcast_atom, std::string& id, std::vector<event>& events) {
      auto& st = self->state;
      auto i = st.sessions.find(id);
      if (i == st.sessions.end() || !i->second.watching || events.empty())
        return;
      auto& sc = i->second;
      auto last = events.back().seq;
      auto n = static_cast<uint64_t>(events.size());
      sc.last_seq = last;
      // Fed clients first, each written to in this turn: no message, no
      // turn of their own. One that takes no more is forgotten (it closed,
      // or its connection was closed for being too slow).
      for (auto f = sc.feeds.begin(); f != sc.feeds.end();) {
        if (f->feed->take(events)) {
          ++f;
          continue;
        }
        forget_client(self, f->client.address(), id);
        f = sc.feeds.erase(f);
      }
      if (sc.bus.empty())
        return maybe_unwatch(self, id);
      // One message for every other client of the session.
      auto msg = caf::make_message(events_atom::value, id, std::move(events));
      // The id shared by every client's credit handler: a copy each would
      // be an allocation per client and batch.
      auto sid = std::make_shared<const std::string>(id);
      auto dropped = sc.bus.deliver(
        self, msg, n, last, st.opts.client_window,
        [self, sid](const caf::actor_addr& a, uint64_t k) {
          auto& st = self->state;
          if (auto j = st.sessions.find(*sid); j != st.sessions.end())
            j->second.bus.credit(a, k);
        });
      for (auto& [client, upto] : dropped) {
        forget_client(self, client.address(), id);
        caf::anon_send(client, lagged_atom::value, id, upto);
      }
      maybe_unwatch(self, id);
    },
    [self](client_count_atom, const std::string& id) -> uint64_t {
      auto& st = self->state;
      auto i = st.sessions.find(id);
      return i == st.sessions.end()
               ? 0
               : i->second.bus.size() + i->second.feeds.size();
    },
    [self](unwatch_atom, const std::string& id) {
      // The listener lost the session (gone without unloading, or it
      // lagged): every client resumes from the seq it got up to.
      drop_session(self, id, [&](const event_bus::subscriber& s) {
        caf::anon_send(s.handle, lagged_atom::value, id, s.last_seq);
      });
    },
    [self](unloaded_atom, const std::string& id, uint64_t last) {
      // Unloaded on purpose: tell the clients, do not make them reload it.
      drop_session(self, id, [&](const event_bus::subscriber& s) {
        caf::anon_send(s.handle, unloaded_atom::value, id, last);
      });
    },
  };
}

} // namespace

client_hub_actor spawn_client_hub(caf::actor_system& sys,
                                  session_host_actor host,
                                  client_hub_options opts) {
  return sys.spawn(hub_behavior, std::move(host), opts);
}

} // namespace sessionhost
