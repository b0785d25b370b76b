#include "host/session_host.hpp"

#include <algorithm>
#include <functional>
#include <set>
#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>
#include <spdlog/spdlog.h>

#include "actors/session_actor.hpp"
#include "host/error.hpp"

namespace sessionhost {

namespace {

struct host_state {
  static inline const char* name = "sessionhost.session_host";

  struct entry {
    session_actor handle;
    session_state state;
    std::string peer;
  };

  host_args args;
  std::unordered_map<std::string, entry> loaded;
  std::unordered_map<caf::actor_addr, std::string> by_addr;
  std::unordered_map<std::string, std::set<std::string>> by_peer;
  // Sessions being unloaded, with the operations waiting to load them again.
  std::unordered_map<std::string, std::vector<std::function<void()>>> unloading;
  bool shutting_down = false;
  // Every live session actor, shared with the exit path.
  std::shared_ptr<std::unordered_map<caf::actor_addr, caf::actor>> spawned;
};

using self_pointer = session_host_actor::stateful_pointer<host_state>;
using session_cont = std::function<void(const session_actor&)>;
using error_cont = std::function<void(const caf::error&)>;

caf::error from_store(const store_error& e) {
  using code = store_error::code;
  switch (e.error_code()) {
    case code::conflict: return make_error(errc::conflict, e.what());
    case code::not_found: return make_error(errc::not_found, e.what());
    case code::stale_epoch: return make_error(errc::stale_epoch, e.what());
    case code::invalid_argument: return make_error(errc::bad_request, e.what());
    case code::io: return make_error(errc::unavailable, e.what());
    default: return make_error(errc::internal, e.what());
  }
}

void index_peer(host_state& st, const std::string& id, const std::string& peer) {
  auto& e = st.loaded[id];
  if (!e.peer.empty()) {
    auto i = st.by_peer.find(e.peer);
    if (i != st.by_peer.end()) {
      i->second.erase(id);
      if (i->second.empty())
        st.by_peer.erase(i);
    }
  }
  e.peer = peer;
  if (!peer.empty())
    st.by_peer[peer].insert(id);
}

void forget(host_state& st, const std::string& id) {
  auto i = st.loaded.find(id);
  if (i == st.loaded.end())
    return;
  index_peer(st, id, "");
  auto addr = i->second.handle.address();
  st.spawned->erase(addr);
  st.by_addr.erase(addr);
  st.loaded.erase(i);
}

session_actor adopt(self_pointer self, session_info info,
                    std::vector<event> replay, bool is_new) {
  auto& st = self->state;
  auto id = info.id;
  auto state = info.state;
  auto handle = spawn_session(self->system(),
                              session_start{std::move(info), std::move(replay),
                                            st.args.services,
                                            session_host_actor{self}, is_new});
  self->monitor(handle);
  st.spawned->emplace(handle.address(), caf::actor_cast<caf::actor>(handle));
  st.loaded[id] = host_state::entry{handle, state, ""};
  st.by_addr[handle.address()] = id;
  return handle;
}

// Finds a loaded session or loads it from the store (activation on demand).
caf::expected<session_actor> resolve(self_pointer self, const std::string& id) {
  auto& st = self->state;
  if (!valid_session_id(id))
    return make_error(errc::not_found, "malformed session id");
  if (auto i = st.loaded.find(id); i != st.loaded.end())
    return i->second.handle;
  if (st.shutting_down)
    return make_error(errc::unavailable, "host is shutting down");
  try {
    auto snap = st.args.store->load(id);
    if (!snap)
      return make_error(errc::not_found, "no session " + id);
    auto epoch = st.args.store->activate(id);
    std::vector<event> replay;
    for (;;) {
      auto page = st.args.store->read_events(
        id, replay.empty() ? snap->last_seq : replay.back().seq, 4096);
      if (page.empty())
        break;
      replay.insert(replay.end(), page.begin(), page.end());
    }
    snap->epoch = epoch;
    return adopt(self, std::move(*snap), std::move(replay), false);
  } catch (const store_error& e) {
    spdlog::error("host: cannot load session {}: {}", id, e.what());
    if (e.error_code() == store_error::code::corrupt)
      return make_error(errc::internal,
                        "session " + id + " cannot be loaded: " + e.what());
    return from_store(e);
  }
}

// Runs `ok` with the session's handle, loading it first; waits for an unload
// in progress to finish so the session is never loaded twice.
void with_session(self_pointer self, const std::string& id, session_cont ok,
                  error_cont fail) {
  auto& st = self->state;
  if (auto i = st.unloading.find(id); i != st.unloading.end()) {
    i->second.push_back([self, id, ok, fail] {
      with_session(self, id, ok, fail);
    });
    return;
  }
  auto h = resolve(self, id);
  if (h)
    ok(*h);
  else
    fail(h.error());
}

// Unloads a loaded session: it flushes, snapshots and stops; then whatever
// waited for it runs.
void unload(self_pointer self, const std::string& id,
            std::function<void(caf::expected<session_info>)> done) {
  auto& st = self->state;
  auto i = st.loaded.find(id);
  if (i == st.loaded.end()) {
    done(make_error(errc::not_found, "session " + id + " is not loaded"));
    return;
  }
  auto handle = i->second.handle;
  st.unloading[id];
  self->request(handle, caf::infinite, unload_atom::value)
    .then(
      [self, id, done](session_info& info) {
        auto& st = self->state;
        forget(st, id);
        auto waiting = std::move(st.unloading[id]);
        st.unloading.erase(id);
        done(std::move(info));
        for (auto& w : waiting)
          w();
      },
      [self, id, done](caf::error& err) {
        auto& st = self->state;
        forget(st, id);
        auto waiting = std::move(st.unloading[id]);
        st.unloading.erase(id);
        done(err);
        for (auto& w : waiting)
          w();
      });
}

caf::error check_create(const std::string& type, const std::string& role,
                        const metadata_map& md) {
  auto name_ok = [](const std::string& s, size_t max) {
    if (s.empty() || s.size() > max)
      return false;
    for (char c : s)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'
            || c == '.' || c == ':'))
        return false;
    return true;
  };
  if (!name_ok(type, max_type_name))
    return make_error(errc::bad_request,
                      "type must be 1-64 characters of [A-Za-z0-9_.:-]");
  if (!role.empty() && !name_ok(role, max_role))
    return make_error(errc::bad_request,
                      "role must be 1-128 characters of [A-Za-z0-9_.:-]");
  if (md.size() > max_metadata_entries)
    return make_error(errc::bad_request, "at most 64 metadata entries");
  for (auto& [k, v] : md)
    if (k.empty() || k.size() > max_metadata_key
        || v.size() > max_metadata_value)
      return make_error(errc::bad_request,
                        "metadata keys must have 1-128 characters, values at "
                        "most 4096");
  return caf::none;
}

session_host_actor::behavior_type host_behavior(self_pointer self,
                                                host_args args) {
  self->state.args = std::move(args);
  // Sessions do not outlive their host (a killed host would otherwise leave
  // them running, and ~actor_system waiting for them). The state is gone by
  // the time attached functors run, so they get their own list.
  auto sessions = std::make_shared<std::unordered_map<caf::actor_addr, caf::actor>>();
  self->state.spawned = sessions;
  self->attach_functor([sessions](const caf::error&) {
    for (auto& [addr, s] : *sessions)
      caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    auto i = st.by_addr.find(dm.source);
    if (i == st.by_addr.end())
      return;
    auto id = i->second;
    if (!st.unloading.count(id)) // an unload cleans up after itself
      forget(st, id);
  });
  return {
    [self](create_atom, const std::string& type, const std::string& role,
           const metadata_map& md) -> caf::result<session_info> {
      auto& st = self->state;
      if (st.shutting_down)
        return make_error(errc::unavailable, "host is shutting down");
      if (auto err = check_create(type, role, md))
        return err;
      auto& types = st.args.services->types;
      if (types && !types->contains(type))
        return make_error(errc::bad_request, "unknown session type " + type);
      session_info info;
      info.id = st.args.ids->next();
      info.type = type;
      info.role = role;
      info.metadata = md;
      info.created_at = info.updated_at = st.args.services->clock->now();
      info.epoch = 1;
      try {
        if (!role.empty())
          if (auto holder = st.args.store->find_by_role(role))
            return make_error(errc::conflict, "role " + role
                                                + " is held by session "
                                                + *holder);
        st.args.store->create(info);
      } catch (const store_error& e) {
        return from_store(e);
      }
      auto handle = adopt(self, info, {}, true);
      // Replies once the type's first steps (e.g. → ACTIVE) are durable.
      return self->delegate(handle, sync_atom::value);
    },
    [self](get_session_atom, const std::string& id) -> caf::result<session_actor> {
      auto rp = self->make_response_promise<session_actor>();
      with_session(
        self, id, [rp](const session_actor& h) mutable { rp.deliver(h); },
        [rp](const caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
    [self](get_by_role_atom, const std::string& role) -> caf::result<session_actor> {
      std::optional<std::string> id;
      try {
        id = self->state.args.store->find_by_role(role);
      } catch (const store_error& e) {
        return from_store(e);
      }
      if (!id)
        return make_error(errc::not_found, "no live session has role " + role);
      auto rp = self->make_response_promise<session_actor>();
      with_session(
        self, *id, [rp](const session_actor& h) mutable { rp.deliver(h); },
        [rp](const caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
    [self](find_by_peer_atom, const std::string& peer) {
      auto& st = self->state;
      std::vector<std::string> out;
      if (auto i = st.by_peer.find(peer); i != st.by_peer.end())
        out.assign(i->second.begin(), i->second.end());
      return out;
    },
    [self](load_atom, const std::string& id) -> caf::result<session_info> {
      auto rp = self->make_response_promise<session_info>();
      with_session(
        self, id,
        [self, rp](const session_actor& h) mutable {
          rp.delegate(h, info_atom::value);
        },
        [rp](const caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
    [self](unload_atom, const std::string& id) -> caf::result<session_info> {
      auto& st = self->state;
      if (!valid_session_id(id))
        return make_error(errc::not_found, "malformed session id");
      if (!st.loaded.count(id) && !st.unloading.count(id)) {
        // Not loaded: unloading is done already; report what is stored.
        try {
          auto snap = st.args.store->load(id);
          if (!snap)
            return make_error(errc::not_found, "no session " + id);
          return *snap;
        } catch (const store_error& e) {
          return from_store(e);
        }
      }
      auto rp = self->make_response_promise<session_info>();
      if (st.unloading.count(id)) {
        // Already on its way out: answer with what the store then holds.
        st.unloading[id].push_back([self, id, rp]() mutable {
          try {
            auto snap = self->state.args.store->load(id);
            if (snap)
              rp.deliver(*snap);
            else
              rp.deliver(make_error(errc::not_found, "no session " + id));
          } catch (const store_error& e) {
            rp.deliver(from_store(e));
          }
        });
        return rp;
      }
      unload(self, id, [rp](caf::expected<session_info> x) mutable {
        if (x)
          rp.deliver(std::move(*x));
        else
          rp.deliver(x.error());
      });
      return rp;
    },
    [self](is_loaded_atom, const std::string& id) {
      return self->state.loaded.count(id) > 0;
    },
    [self](loaded_ids_atom) {
      std::vector<std::string> out;
      for (auto& [id, e] : self->state.loaded)
        out.push_back(id);
      return out;
    },
    [self](list_atom, const session_filter& filter, const std::string& cursor,
           uint64_t limit) -> caf::result<session_page> {
      auto& st = self->state;
      if (limit == 0 || limit > 1000)
        return make_error(errc::bad_request, "limit must be 1 to 1000");
      try {
        auto page = st.args.store->list(filter, cursor, limit);
        for (auto& s : page.sessions)
          s.loaded = st.loaded.count(s.id) > 0;
        return page;
      } catch (const store_error& e) {
        return from_store(e);
      }
    },
    [self](count_atom, const session_filter& filter) -> caf::result<uint64_t> {
      try {
        return self->state.args.store->count(filter);
      } catch (const store_error& e) {
        return from_store(e);
      }
    },
    [self](terminate_atom, const std::string& id,
           const std::string& reason) -> caf::result<session_info> {
      auto rp = self->make_response_promise<session_info>();
      with_session(
        self, id,
        [self, rp, reason](const session_actor& h) mutable {
          self->request(h, caf::infinite, terminate_atom::value, reason)
            .then(
              [self, rp, h](session_info&) mutable {
                // Built-in types own nothing to clean: finish at once.
                rp.delegate(h, cleanup_atom::value);
              },
              [rp](caf::error& err) mutable { rp.deliver(err); });
        },
        [rp](const caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
    [self](shutdown_atom) -> caf::result<uint64_t> {
      auto& st = self->state;
      st.shutting_down = true;
      auto rp = self->make_response_promise<uint64_t>();
      auto ids = std::vector<std::string>{};
      for (auto& [id, e] : st.loaded)
        if (!st.unloading.count(id))
          ids.push_back(id);
      auto total = static_cast<uint64_t>(ids.size());
      auto left = std::make_shared<size_t>(ids.size());
      auto finish = [self, rp, total]() mutable {
        // Everything the sessions wrote is durable; report how many ended.
        self->request(self->state.args.services->persistence, caf::infinite,
                      sync_atom::value)
          .then([rp, total](bool) mutable { rp.deliver(total); },
                [rp, total](caf::error&) mutable { rp.deliver(total); });
      };
      if (ids.empty()) {
        finish();
        return rp;
      }
      for (auto& id : ids)
        unload(self, id, [left, finish](caf::expected<session_info>) mutable {
          if (--*left == 0)
            finish();
        });
      return rp;
    },
    [self](healthy_atom) {
      auto& st = self->state;
      return !st.shutting_down && st.args.services->obs->store_healthy.load();
    },
    [self](add_hook_atom, const std::string& id, hook_id hid) -> caf::result<bool> {
      auto& st = self->state;
      auto i = st.loaded.find(id);
      if (i == st.loaded.end() || st.unloading.count(id))
        return st.args.services->hooks->enable(hid);
      return self->delegate(i->second.handle, hook_added_atom::value, hid);
    },
    [self](state_changed_atom, const std::string& id, session_state s) {
      auto& st = self->state;
      if (auto i = st.loaded.find(id); i != st.loaded.end())
        i->second.state = s;
    },
    [self](peer_changed_atom, const std::string& id, const std::string& peer,
           bool) {
      auto& st = self->state;
      if (st.loaded.count(id))
        index_peer(st, id, peer);
    },
    [self](idle_atom, const std::string& id, uint64_t) {
      auto& st = self->state;
      if (!st.loaded.count(id) || st.unloading.count(id) || st.shutting_down)
        return;
      spdlog::debug("host: passivating idle session {}", id);
      unload(self, id, [](caf::expected<session_info>) {});
    },
  };
}

} // namespace

session_host_actor spawn_session_host(caf::actor_system& sys, host_args args) {
  return sys.spawn(host_behavior, std::move(args));
}

} // namespace sessionhost
