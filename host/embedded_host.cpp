#include "host/embedded_host.hpp"

#include <chrono>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <spdlog/spdlog.h>

#include "actors/client_hub.hpp"
#include "actors/persistence_listener.hpp"
#include "actors/retention_actor.hpp"
#include "host/error.hpp"
#include "host/session_host.hpp"
#include "host/store/memory_store.hpp"

namespace sessionhost {

embedded_host::embedded_host(caf::actor_system& sys, host_options opts)
  : sys_(sys) {
  apply_log_level(opts.config.log_level);
  store_ = opts.store ? opts.store : std::make_shared<memory_store>();
  obs_ = std::make_shared<observability_hub>();
  hooks_ = std::make_shared<hook_registry>();
  types_ = opts.types ? opts.types : session_type_registry::with_builtins();
  persistence_options popts;
  popts.batch_limit = opts.config.commit_batch_limit;
  popts.detached = opts.detached_persistence;
  popts.commit_delay = opts.config.commit_delay;
  persistence_ = spawn_persistence_listener(sys, store_, obs_, popts);
  auto svc = std::make_shared<session_services>();
  svc->config = opts.config;
  svc->clock = opts.clock ? opts.clock : std::make_shared<system_clock>();
  svc->hooks = hooks_;
  svc->types = types_;
  svc->obs = obs_;
  svc->persistence = persistence_;
  svc->store = store_;
  auto retention = retention_options_of(opts.config);
  retention.detached = opts.detached_persistence;
  retention_ = spawn_retention_actor(sys, store_, svc->clock, obs_, retention);
  auto ids = opts.ids ? opts.ids : std::make_shared<uuid_generator>();
  host_ = spawn_session_host(
    sys, host_args{svc, store_, ids, opts.detached_persistence});
  client_window_ = opts.client_window;
  hub_ = spawn_client_hub(sys, host_,
                          client_hub_options{opts.client_window,
                                             opts.config.subscriber_window});
}

embedded_host::~embedded_host() {
  try {
    stop();
  } catch (const std::exception& e) {
    spdlog::error("embedded_host: stop failed: {}", e.what());
  }
}

hook_id embedded_host::register_on_session_open(hook_fn fn) {
  return hooks_->add(hook_kind::session_open, "", std::move(fn));
}

hook_id embedded_host::register_on_session_close(hook_fn fn) {
  return hooks_->add(hook_kind::session_close, "", std::move(fn));
}

hook_id embedded_host::register_on_heartbeat_timeout(hook_fn fn) {
  return hooks_->add(hook_kind::heartbeat_timeout, "", std::move(fn));
}

caf::expected<std::vector<load_result>>
embedded_host::load(const std::vector<std::string>& ids, caf::timespan timeout) {
  caf::scoped_actor self{sys_};
  caf::expected<std::vector<load_result>> out{
    make_error(errc::internal, "no answer")};
  self->request(host_, timeout, load_atom::value, ids)
    .receive([&](std::vector<load_result>& got) { out = std::move(got); },
             [&](caf::error& err) { out = std::move(err); });
  return out;
}

hook_id embedded_host::add_session_hook(hook_kind kind,
                                        const std::string& session_id,
                                        hook_fn fn) {
  // Added disabled; the session (or the host, if it is not loaded) enables
  // it, so "fire at once if connected" happens exactly once.
  auto id = hooks_->add(kind, session_id, std::move(fn), false);
  caf::scoped_actor self{sys_};
  caf::error failure;
  self->request(host_, std::chrono::seconds(30), add_hook_atom::value,
                session_id, id)
    .receive([](bool) {}, [&](caf::error& err) { failure = err; });
  if (failure) {
    hooks_->remove(kind, id);
    throw std::runtime_error("cannot register hook: " + message_of(failure));
  }
  return id;
}

hook_id embedded_host::register_on_session_open(const std::string& session_id,
                                                hook_fn fn) {
  return add_session_hook(hook_kind::session_open, session_id, std::move(fn));
}

hook_id embedded_host::register_on_session_close(const std::string& session_id,
                                                 hook_fn fn) {
  return add_session_hook(hook_kind::session_close, session_id, std::move(fn));
}

hook_id
embedded_host::register_on_heartbeat_timeout(const std::string& session_id,
                                             hook_fn fn) {
  return add_session_hook(hook_kind::heartbeat_timeout, session_id,
                          std::move(fn));
}

bool embedded_host::unregister_on_session_open(hook_id id) {
  return hooks_->remove(hook_kind::session_open, id);
}

bool embedded_host::unregister_on_session_close(hook_id id) {
  return hooks_->remove(hook_kind::session_close, id);
}

bool embedded_host::unregister_on_heartbeat_timeout(hook_id id) {
  return hooks_->remove(hook_kind::heartbeat_timeout, id);
}

size_t embedded_host::clear_session_hooks(const std::string& session_id) {
  return hooks_->clear(session_id);
}

void embedded_host::clear_session_hooks() {
  hooks_->clear_all();
}

void embedded_host::stop() {
  if (stopped_)
    return;
  stopped_ = true;
  {
    // Bounded by the host: it gives up once a whole
    // config.shutdown_timeout passed without a session finishing its
    // unload, however many sessions there are. A host that ends first
    // (killed, or gone already) never answers: its down message ends the
    // wait instead.
    caf::scoped_actor self{sys_};
    self->monitor(host_);
    self->send(host_, shutdown_atom::value);
    bool waiting = true;
    self->receive_while([&] { return waiting; })(
      [&](uint64_t) { waiting = false; },
      [&](caf::error& err) {
        spdlog::error("embedded_host: shutdown: {}", message_of(err));
        waiting = false;
      },
      [&](caf::down_msg& dm) {
        spdlog::error("embedded_host: the host ended before its shutdown "
                      "answered ({})", caf::to_string(dm.reason));
        waiting = false;
      });
  }
  // The hub takes its linked broadcast listener along.
  caf::anon_send_exit(hub_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(host_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(persistence_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(retention_, caf::exit_reason::user_shutdown);
}

} // namespace sessionhost
