// REST routes of `sessionhost serve` (docs/PROTOCOL.md): each request runs in
// its own short-lived event-based actor, which asks the host's actors and
// answers through the server's callback. Blocking store reads (GET events)
// happen on that actor, never on the io thread.
#include "transport/api.hpp"

#include <algorithm>
#include <map>
#include <sstream>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "host/embedded_host.hpp"
#include "host/error.hpp"
#include "transport/api_context.hpp"
#include "transport/json_codec.hpp"

namespace sessionhost::transport {

using nlohmann::json;

namespace {

using query_map = std::map<std::string, std::string>;

http_response json_response(int status, const json& body) {
  return {status, "application/json",
          body.dump(-1, ' ', false, json::error_handler_t::replace)};
}

http_response error_response(errc code, const std::string& message) {
  return {http_status(code), "application/json", error_body(code, message)};
}

http_response error_response(const caf::error& err) {
  if (err == caf::sec::request_timeout)
    return error_response(errc::unavailable, "the host did not answer in time");
  return error_response(code_of(err), message_of(err));
}

/// Everything one request needs, shared by its continuations.
struct call {
  std::shared_ptr<api_context> ctx;
  caf::event_based_actor* self;
  respond_fn respond;
  const token_scope* scope = nullptr; // null: no authentication

  void fail(const caf::error& err) const { respond(error_response(err)); }
  void fail(errc code, const std::string& msg) const {
    respond(error_response(code, msg));
  }
  auto on_error() const {
    auto r = respond;
    return [r](caf::error& err) { r(error_response(err)); };
  }

  /// Locates (loading on demand) a session, then runs `f(session_actor)`.
  template <class F>
  void with_session(const std::string& id, F f) const {
    auto r = respond;
    self->request(ctx->host, ctx->timeout, get_session_atom::value, id)
      .then([f](session_actor& s) mutable { f(s); },
            [r](caf::error& err) { r(error_response(err)); });
  }
};

/// Parses a JSON object body; answers 400 and returns false otherwise.
bool parse_object(const call& c, const std::string& body, json& out) {
  out = json::parse(body, nullptr, false);
  if (out.is_discarded()) {
    c.fail(errc::bad_request, "the body is not valid JSON");
    return false;
  }
  if (!out.is_object()) {
    c.fail(errc::bad_request, "the body must be a JSON object");
    return false;
  }
  return true;
}

void create_session(const call& c, const std::string& body) {
  json j;
  if (!parse_object(c, body, j))
    return;
  auto type = j.find("type");
  if (type == j.end() || !type->is_string() || type->get<std::string>().empty())
    return c.fail(errc::bad_request, "\"type\" must be a non-empty string");
  std::string role;
  if (auto r = j.find("role"); r != j.end() && !r->is_null()) {
    if (!r->is_string())
      return c.fail(errc::bad_request, "\"role\" must be a string");
    role = r->get<std::string>();
  }
  metadata_map md;
  if (auto m = j.find("metadata"); m != j.end() && !m->is_null()) {
    if (!m->is_object())
      return c.fail(errc::bad_request,
                    "\"metadata\" must be an object of strings");
    for (auto& [k, v] : m->items()) {
      if (!v.is_string())
        return c.fail(errc::bad_request,
                      "\"metadata\" values must be strings (key " + k + ")");
      md.emplace(k, v.get<std::string>());
    }
  }
  if (c.scope && !c.scope->unlimited() && c.scope->roles.count(role) == 0)
    return c.fail(errc::forbidden,
                  "this token may only create sessions with its roles");
  auto r = c.respond;
  c.self
    ->request(c.ctx->host, c.ctx->timeout, create_atom::value,
              type->get<std::string>(), role, md)
    .then([r](session_info& info) { r(json_response(201, to_json(info))); },
          c.on_error());
}

void list_sessions(const call& c, const query_map& q) {
  session_filter filter;
  if (auto i = q.find("state"); i != q.end() && !i->second.empty()) {
    auto st = parse_session_state(i->second);
    if (!st)
      return c.fail(errc::bad_request, "unknown state " + i->second
                                         + " (CREATED, SPAWNING, ACTIVE, "
                                           "TERMINATING, CLEANED)");
    filter.state = *st;
  }
  if (auto i = q.find("role"); i != q.end())
    filter.role = i->second;
  if (auto i = q.find("type"); i != q.end())
    filter.type = i->second;
  uint64_t limit = 100;
  if (auto i = q.find("limit"); i != q.end()) {
    if (!parse_u64(i->second, limit) || limit == 0 || limit > 1000)
      return c.fail(errc::bad_request, "limit must be 1 to 1000");
  }
  std::string cursor;
  if (auto i = q.find("cursor"); i != q.end())
    cursor = i->second;
  auto r = c.respond;
  auto scope = c.scope;
  c.self
    ->request(c.ctx->host, c.ctx->timeout, list_atom::value, filter, cursor,
              limit)
    .then(
      [r, scope](session_page& page) {
        json arr = json::array();
        for (auto& s : page.sessions)
          if (!scope || scope->allows(s.id, s.role))
            arr.push_back(to_json(s));
        json body{{"sessions", std::move(arr)},
                  {"next_cursor", page.next_cursor.empty()
                                    ? json(nullptr)
                                    : json(page.next_cursor)}};
        if (!page.unreadable.empty())
          body["unreadable"] = page.unreadable;
        r(json_response(200, body));
      },
      c.on_error());
}

/// The session as it is: asked from its actor when loaded, else read from
/// the store (so a GET does not load it).
void get_session(const call& c, const std::string& id) {
  auto cc = c;
  c.self->request(c.ctx->host, c.ctx->timeout, is_loaded_atom::value, id)
    .then(
      [cc, id](bool loaded) {
        if (loaded) {
          cc.with_session(id, [cc](session_actor& s) {
            auto r = cc.respond;
            cc.self->request(s, cc.ctx->timeout, info_atom::value)
              .then([r](session_info& info) {
                      r(json_response(200, to_json(info)));
                    },
                    cc.on_error());
          });
          return;
        }
        try {
          auto info = cc.ctx->store->load(id);
          if (!info)
            return cc.fail(errc::not_found, "no session " + id);
          info->loaded = false;
          cc.respond(json_response(200, to_json(*info)));
        } catch (const store_error& e) {
          cc.fail(errc::internal, e.what());
        }
      },
      c.on_error());
}

void post_message(const call& c, const std::string& id,
                  const std::string& body) {
  json j;
  if (!parse_object(c, body, j))
    return;
  auto data = j.find("data");
  if (data == j.end())
    return c.fail(errc::bad_request, "\"data\" is missing");
  // Parsed from the body: checked once, by that parse.
  auto text = json_text::write(*data);
  auto cc = c;
  c.with_session(id, [cc, text](session_actor& s) {
    auto r = cc.respond;
    cc.self->request(s, cc.ctx->timeout, message_atom::value, text)
      .then([r](uint64_t seq) { r(json_response(202, json{{"seq", seq}})); },
            cc.on_error());
  });
}

void post_event(const call& c, const std::string& id, const std::string& body) {
  json j;
  if (!parse_object(c, body, j))
    return;
  auto type = j.find("type");
  if (type == j.end() || !type->is_string() || type->get<std::string>().empty())
    return c.fail(errc::bad_request, "\"type\" must be a non-empty string");
  json_text text; // parsed from the body: checked once, by that parse
  if (auto data = j.find("data"); data != j.end())
    text = json_text::write(*data);
  std::string key;
  if (auto k = j.find("idempotency_key"); k != j.end() && !k->is_null()) {
    if (!k->is_string() || k->get<std::string>().empty())
      return c.fail(errc::bad_request,
                    "\"idempotency_key\" must be a non-empty string");
    key = k->get<std::string>();
  }
  auto cc = c;
  auto t = type->get<std::string>();
  c.with_session(id, [cc, t, text, key](session_actor& s) {
    auto r = cc.respond;
    auto ok = [r](uint64_t seq) { r(json_response(202, json{{"seq", seq}})); };
    if (key.empty())
      cc.self->request(s, cc.ctx->timeout, publish_atom::value, t, text)
        .then(ok, cc.on_error());
    else
      cc.self->request(s, cc.ctx->timeout, publish_atom::value, t, text, key)
        .then(ok, cc.on_error());
  });
}

void get_events(const call& c, const std::string& id, const query_map& q) {
  uint64_t from = 0, limit = 1000;
  if (auto i = q.find("from_seq"); i != q.end() && !parse_u64(i->second, from))
    return c.fail(errc::bad_request, "from_seq must be a non-negative integer");
  if (auto i = q.find("limit"); i != q.end()) {
    if (!parse_u64(i->second, limit) || limit == 0 || limit > 10000)
      return c.fail(errc::bad_request, "limit must be 1 to 10000");
  }
  try {
    if (!c.ctx->store->load(id))
      return c.fail(errc::not_found, "no session " + id);
    auto events = c.ctx->store->read_events(id, from, limit);
    json arr = json::array();
    for (auto& e : events)
      arr.push_back(to_json(e));
    c.respond(json_response(200, json{{"events", std::move(arr)}}));
  } catch (const store_error& e) {
    c.fail(errc::internal, e.what());
  }
}

template <class Atom>
void host_op(const call& c, Atom atom, const std::string& id) {
  auto r = c.respond;
  c.self->request(c.ctx->host, c.ctx->timeout, atom, id)
    .then([r](session_info& info) { r(json_response(200, to_json(info))); },
          c.on_error());
}

void terminate_session(const call& c, const std::string& id,
                       const query_map& q) {
  std::string reason = "requested";
  if (auto i = q.find("reason"); i != q.end() && !i->second.empty())
    reason = i->second;
  auto r = c.respond;
  c.self
    ->request(c.ctx->host, c.ctx->timeout, terminate_atom::value, id, reason)
    .then([r](session_info& info) { r(json_response(200, to_json(info))); },
          c.on_error());
}

void healthz(const call& c) {
  auto r = c.respond;
  c.self->request(c.ctx->host, c.ctx->timeout, healthy_atom::value)
    .then(
      [r](bool ok) {
        r(json_response(ok ? 200 : 503,
                        json{{"status", ok ? "ok" : "unhealthy"}}));
      },
      [r](caf::error&) {
        r(json_response(503, json{{"status", "unhealthy"}}));
      });
}

void metrics(const call& c) {
  auto ctx = c.ctx;
  auto r = c.respond;
  c.self->request(c.ctx->host, c.ctx->timeout, loaded_ids_atom::value)
    .then(
      [ctx, r](std::vector<std::string>& ids) {
        std::ostringstream out;
        auto counter = [&](const char* name, const char* help, uint64_t v) {
          out << "# HELP " << name << ' ' << help << "\n# TYPE " << name
              << " counter\n"
              << name << ' ' << v << '\n';
        };
        auto gauge = [&](const char* name, const char* help, uint64_t v) {
          out << "# HELP " << name << ' ' << help << "\n# TYPE " << name
              << " gauge\n"
              << name << ' ' << v << '\n';
        };
        auto& k = ctx->obs->counters;
        counter("sessionhost_events_published_total", "Events published.",
                k.events_published.load());
        counter("sessionhost_events_persisted_total", "Events made durable.",
                k.events_persisted.load());
        counter("sessionhost_subscribers_dropped_total",
                "Subscribers dropped for lagging.",
                k.subscribers_dropped.load());
        counter("sessionhost_publishes_refused_total",
                "Publishes refused (overloaded).", k.publishes_refused.load());
        counter("sessionhost_store_failures_total", "Failed store writes.",
                k.store_failures.load());
        counter("sessionhost_hook_failures_total", "Hooks that threw.",
                k.hook_failures.load());
        gauge("sessionhost_sessions_loaded", "Sessions in memory.",
              ids.size());
        gauge("sessionhost_store_healthy", "1 while the store accepts writes.",
              ctx->obs->store_healthy.load() ? 1 : 0);
        auto& s = *ctx->stats;
        counter("sessionhost_http_requests_total", "HTTP requests read.",
                s.http_requests.load());
        counter("sessionhost_ws_connections_total", "WebSockets accepted.",
                s.ws_connections.load());
        gauge("sessionhost_ws_connections_open", "WebSockets open now.",
              s.ws_open.load());
        counter("sessionhost_ws_slow_closed_total",
                "WebSockets closed with 1013 (client too slow).",
                s.ws_slow_closed.load());
        counter("sessionhost_ws_resumed_total",
                "Live subscriptions the client hub dropped (lagging, or "
                "their session stopped unannounced), resumed from the store.",
                s.ws_resumed.load());
        counter("sessionhost_ws_oversize_closed_total",
                "WebSockets closed with 1009 (frame too big).",
                s.ws_oversize_closed.load());
        counter("sessionhost_ws_refused_total",
                "WebSocket upgrades refused (token or origin).",
                s.ws_refused.load());
        // Where a publish's time goes, stage by stage (docs/PROTOCOL.md).
        ctx->obs->publish_to_durable.write_prometheus(
          out, "sessionhost_publish_to_durable_seconds",
          "From an event's publish (ts) to the store's commit of it "
          "returned (durable).");
        ctx->obs->store_commit.write_prometheus(
          out, "sessionhost_store_commit_seconds",
          "The store's write of one group commit (transaction and sync), "
          "per commit.");
        s.publish_to_send.write_prometheus(
          out, "sessionhost_publish_to_send_seconds",
          "From an event's publish (ts) to its frame handed to the socket "
          "write, live events, per subscriber.");
        s.publish_to_ack.write_prometheus(
          out, "sessionhost_publish_to_ack_seconds",
          "From a WebSocket publish frame read off the socket to its ack "
          "handed to the socket write.");
        r({200, "text/plain; version=0.0.4", out.str()});
      },
      c.on_error());
}

/// The scope of the request's token; false when one is needed and missing
/// or unknown.
bool find_scope(const api_context& ctx, const std::string& authorization,
                const query_map& q, const token_scope*& out) {
  out = nullptr;
  if (!ctx.tokens)
    return true;
  auto i = q.find("token");
  out = ctx.tokens->find(
    bearer_token(authorization, i == q.end() ? std::string{} : i->second));
  return out != nullptr;
}

void route(call& c, const http_request& req) {
  std::string path;
  query_map q;
  if (!split_target(req.target, path, q))
    return c.fail(errc::bad_request, "malformed percent escape in the URL");
  auto& m = req.method;
  auto not_allowed = [&] {
    c.respond({405, "application/json",
               json{{"error",
                     {{"code", "method_not_allowed"},
                      {"message", m + " is not allowed on " + path}}}}
                 .dump()});
  };
  if (path == "/healthz")
    return m == "GET" ? healthz(c) : not_allowed();
  if (!find_scope(*c.ctx, req.authorization, q, c.scope))
    return c.fail(errc::unauthorized, "missing or wrong bearer token");
  if (c.scope && c.scope->read_only && m != "GET")
    return c.fail(errc::forbidden, "this token is read-only");
  if (path == "/metrics") {
    if (c.scope && !c.scope->unlimited())
      return c.fail(errc::forbidden,
                    "/metrics needs a token not limited to sessions or roles");
    return m == "GET" ? metrics(c) : not_allowed();
  }
  const std::string prefix = "/v1/sessions";
  if (path == prefix || path == prefix + "/") {
    if (m == "POST")
      return create_session(c, req.body);
    if (m == "GET")
      return list_sessions(c, q);
    return not_allowed();
  }
  if (path.compare(0, prefix.size() + 1, prefix + "/") != 0)
    return c.fail(errc::not_found, "no route " + path);
  auto rest = path.substr(prefix.size() + 1);
  auto slash = rest.find('/');
  auto id = rest.substr(0, slash);
  auto sub = slash == std::string::npos ? std::string{} : rest.substr(slash + 1);
  if (id.empty())
    return c.fail(errc::not_found, "no route " + path);
  try {
    if (!in_scope(*c.ctx, c.scope, id))
      return c.fail(errc::forbidden,
                    "session " + id + " is outside this token's scope");
  } catch (const store_error& e) {
    return c.fail(errc::internal, e.what());
  }
  if (sub.empty()) {
    if (m == "GET")
      return get_session(c, id);
    if (m == "DELETE")
      return terminate_session(c, id, q);
    return not_allowed();
  }
  if (sub == "messages")
    return m == "POST" ? post_message(c, id, req.body) : not_allowed();
  if (sub == "events") {
    if (m == "POST")
      return post_event(c, id, req.body);
    if (m == "GET")
      return get_events(c, id, q);
    return not_allowed();
  }
  if (sub == "unload")
    return m == "POST" ? host_op(c, unload_atom::value, id) : not_allowed();
  if (sub == "load")
    return m == "POST" ? host_op(c, load_atom::value, id) : not_allowed();
  c.fail(errc::not_found, "no route " + path);
}

} // namespace

api::api(caf::actor_system& sys, embedded_host& host, api_options opts,
         std::shared_ptr<server_stats> stats)
  : ctx_(std::make_shared<api_context>()) {
  ctx_->sys = &sys;
  ctx_->host = host.host();
  ctx_->hub = host.hub();
  ctx_->store = host.store();
  ctx_->obs = &host.observability();
  ctx_->stats = stats ? std::move(stats) : std::make_shared<server_stats>();
  ctx_->tokens = std::move(opts.tokens);
  ctx_->origins = origin_policy{opts.allowed_origins};
  ctx_->timeout = opts.request_timeout;
}

api::~api() = default;

void api::handle_http(http_request req, respond_fn respond) {
  auto ctx = ctx_;
  respond_fn guarded = [ctx, respond = std::move(respond)](http_response r) {
    ctx->if_open([&] { respond(std::move(r)); });
  };
  ctx->sys->spawn([ctx, req = std::move(req),
                   respond = std::move(guarded)](caf::event_based_actor* self) {
    call c{ctx, self, respond, nullptr};
    try {
      route(c, req);
    } catch (const std::exception& e) {
      c.fail(errc::internal, e.what());
    }
  });
}

void api::close() { ctx_->close(); }

std::optional<http_response> api::check_upgrade(const ws_upgrade& up) {
  std::string path;
  query_map q;
  if (!split_target(up.target, path, q))
    return error_response(errc::bad_request,
                          "malformed percent escape in the URL");
  const token_scope* scope = nullptr;
  if (!find_scope(*ctx_, up.authorization, q, scope))
    return error_response(errc::unauthorized, "missing or wrong bearer token");
  if (!ctx_->origins.allows(up.origin, up.host))
    return error_response(errc::forbidden,
                          "origin " + up.origin + " may not open WebSockets "
                            "here (--allowed-origins)");
  return std::nullopt;
}

std::shared_ptr<ws_handler> api::open_ws(std::shared_ptr<ws_sink> sink,
                                         const ws_upgrade& up) {
  std::string path;
  query_map q;
  const token_scope* scope = nullptr;
  split_target(up.target, path, q);
  find_scope(*ctx_, up.authorization, q, scope); // passed check_upgrade
  return spawn_ws_connection(ctx_, std::move(sink), scope, up.proto);
}

bool in_scope(const api_context& ctx, const token_scope* scope,
              const std::string& id) {
  if (!scope || scope->allows_id(id))
    return true;
  if (scope->roles.empty())
    return false;
  auto info = ctx.store->load(id);
  return info && scope->roles.count(info->role) > 0;
}

} // namespace sessionhost::transport
