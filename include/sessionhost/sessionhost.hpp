#pragma once
// The umbrella header of sessionhost for embedders:
//
//   #include <sessionhost/sessionhost.hpp>
//
// brings in everything a C++ program needs to run sessionhost inside its own
// caf::actor_system (docs/EMBEDDING.md):
//
//   host/embedded_host.hpp      embedded_host, host_options: spawn and stop
//                               the host's actors; seed 000's hook calls
//   host/session_type.hpp       session_type, session_context,
//                               session_type_registry: your own session types
//   actors/actors.hpp           the typed actor interfaces (session_host_actor,
//                               session_actor, client_hub_actor, …)
//   actors/atoms.hpp            their message tags (create_atom, …)
//   actors/hooks.hpp            hook_event, hook_fn, hook_id, session_control
//   actors/observability.hpp    lifecycle records and counters
//   actors/types.hpp            register_types for your own CAF config
//   host/config.hpp             host_config, sessionhost_config
//   host/session_info.hpp       session_info, session_filter, metadata_map
//   host/event.hpp              event and the event type names
//   host/lifecycle.hpp          session_state, lifecycle_event, next_state
//   host/error.hpp              errc and the CAF error category
//   host/process/process_types.hpp
//                               process types declared in the config: one
//                               child process per session (PROCESS_TYPES.md)
//   host/clock.hpp              clock, system_clock, manual_clock
//   host/id_generator.hpp       id_generator, uuid_generator, …
//   host/store/session_store.hpp, memory_store.hpp, open_store.hpp
//                               the store interface, the in-memory store and
//                               open_store(url) for SQLite / PostgreSQL
//   transport/http_frontend.hpp http_frontend: REST + WebSocket
//                               (docs/PROTOCOL.md) in front of your host
//
// Every header is also usable on its own ("host/embedded_host.hpp", …): the
// installed include directories are <prefix>/include and
// <prefix>/include/sessionhost. Link `sessionhost::sessionhost`.

#include "actors/actors.hpp"
#include "actors/atoms.hpp"
#include "actors/hooks.hpp"
#include "actors/observability.hpp"
#include "actors/types.hpp"
#include "host/clock.hpp"
#include "host/config.hpp"
#include "host/embedded_host.hpp"
#include "host/error.hpp"
#include "host/event.hpp"
#include "host/id_generator.hpp"
#include "host/lifecycle.hpp"
#include "host/process/process_types.hpp"
#include "host/session_info.hpp"
#include "host/session_type.hpp"
#include "host/store/memory_store.hpp"
#include "host/store/open_store.hpp"
#include "host/store/session_store.hpp"
#include "transport/http_frontend.hpp"

