#pragma once
// What a session is at one moment: the answer to info(), and the snapshot a
// store keeps so the session can be listed and loaded again without its actor.

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/none.hpp>

#include "host/clock.hpp"
#include "host/lifecycle.hpp"

namespace sessionhost {

/// Free-form string metadata of a session, a hook call or a record.
using metadata_map = std::map<std::string, std::string>;

/// A session's state and bookkeeping (info(), list, the stored snapshot).
struct session_info {
  std::string id;            ///< the session id
  std::string type;          ///< session type name ("echo", …)
  std::string role;          ///< agent id; empty: none
  metadata_map metadata;     ///< given at create; "agent" after activate
  session_state state = session_state::created; ///< lifecycle state
  micros created_at = 0;     ///< when it was created
  micros updated_at = 0;     ///< last change of any field
  /// 0: never. Liveness, not state: a heartbeat is written with the next
  /// batch, never on its own, so info() may show one a crash would lose.
  micros last_heartbeat = 0;
  uint64_t message_count = 0; ///< messages received (message_atom)
  uint64_t reconnects = 0;   ///< times the peer came back
  std::string peer;          ///< identity of the attached peer; empty: none
  bool peer_connected = false; ///< whether the peer is attached now
  uint64_t last_seq = 0;     ///< highest durable seq (info() shows the
                             ///< session as of this seq)
  uint64_t epoch = 0;        ///< activation epoch that wrote this
  bool loaded = false;       ///< an actor holds it now (not stored)
};

/// Field-wise equality.
bool operator==(const session_info& x, const session_info& y);

/// CAF serialization (messages between nodes).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, session_info& x) {
  return f(caf::meta::type_name("sessionhost.session_info"), x.id, x.type,
           x.role, x.metadata, x.state, x.created_at, x.updated_at,
           x.last_heartbeat, x.message_count, x.reconnects, x.peer,
           x.peer_connected, x.last_seq, x.epoch, x.loaded);
}

/// What a create asks for: a session type, a role (empty: none) and
/// metadata. A batch create takes several.
struct session_spec {
  std::string type;      ///< session type name
  std::string role;      ///< agent id; empty: none
  metadata_map metadata; ///< free-form metadata
};

/// CAF serialization (messages between nodes).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, session_spec& x) {
  return f(caf::meta::type_name("sessionhost.session_spec"), x.type, x.role,
           x.metadata);
}

/// One id's answer in a batch load (session_host_actor's
/// `load_atom, std::vector<std::string>`): the session's info, or why that
/// id was not loaded. One bad id never fails the others.
struct load_result {
  std::string id;    ///< the id as asked for
  session_info info; ///< the loaded session, when `error` is empty
  /// none: loaded (or loaded already). Else the error a single load of this
  /// id answers: not_found (unknown or malformed id), stale_epoch / conflict
  /// (claimed elsewhere), unavailable (shutting down, store down), internal.
  caf::error error;
};

/// CAF serialization (messages between nodes).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, load_result& x) {
  return f(caf::meta::type_name("sessionhost.load_result"), x.id, x.info,
           x.error);
}

/// Which stored sessions to list or count; empty fields match everything.
struct session_filter {
  std::optional<session_state> state; ///< only sessions in this state
  std::string role;                   ///< only the session(s) with this role
  std::string type;                   ///< only sessions of this type
};

/// CAF serialization (messages between nodes).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, session_filter& x) {
  // CAF 0.17 cannot inspect std::optional: 0 = any state, 1 + state else.
  uint8_t state = x.state ? static_cast<uint8_t>(*x.state) + 1 : 0;
  auto load = caf::meta::load_callback([&]() -> caf::error {
    if (state == 0)
      x.state.reset();
    else
      x.state = static_cast<session_state>(state - 1);
    return caf::none;
  });
  return f(caf::meta::type_name("sessionhost.session_filter"), state, x.role,
           x.type, load);
}

/// Whether `info` passes `filter`.
bool matches(const session_filter& filter, const session_info& info);

} // namespace sessionhost
