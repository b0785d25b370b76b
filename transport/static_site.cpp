// GET / and GET /web/<file> from the embedded web/ files; everything else
// goes to the wrapped backend (the API), which answers unknown paths with
// its 404 JSON.
#include "transport/static_site.hpp"

#include <cstring>
#include <string>

#include "transport/web_assets.hpp"

namespace sessionhost::transport {

namespace {

const web_asset* find_asset(const std::string& name) {
  for (auto* a = web_assets_begin(); a != web_assets_end(); ++a)
    if (name == a->name)
      return a;
  return nullptr;
}

bool ends_with(const std::string& s, const char* suffix) {
  auto n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

} // namespace

const char* content_type_of(const std::string& name) {
  if (ends_with(name, ".html"))
    return "text/html; charset=utf-8";
  if (ends_with(name, ".js"))
    return "text/javascript; charset=utf-8";
  if (ends_with(name, ".css"))
    return "text/css; charset=utf-8";
  if (ends_with(name, ".svg"))
    return "image/svg+xml";
  if (ends_with(name, ".json"))
    return "application/json";
  return "application/octet-stream";
}

static_site::static_site(std::shared_ptr<backend> api) : api_(std::move(api)) {}

void static_site::handle_http(http_request req, respond_fn respond) {
  auto path = req.target.substr(0, req.target.find('?'));
  const web_asset* asset = nullptr;
  if (path == "/")
    asset = find_asset("index.html");
  else if (path.compare(0, 5, "/web/") == 0)
    asset = find_asset(path.substr(5));
  if (asset == nullptr)
    return api_->handle_http(std::move(req), std::move(respond));
  if (req.method != "GET")
    return respond({405, "application/json",
                    "{\"error\":{\"code\":\"method_not_allowed\",\"message\":"
                    "\"the dashboard's files only answer GET\"}}"});
  respond({200, content_type_of(asset->name),
           std::string{reinterpret_cast<const char*>(asset->data),
                       asset->size}});
}

std::optional<http_response> static_site::check_upgrade(const ws_upgrade& up) {
  return api_->check_upgrade(up);
}

std::shared_ptr<ws_handler> static_site::open_ws(std::shared_ptr<ws_sink> sink,
                                                 const ws_upgrade& up) {
  return api_->open_ws(std::move(sink), up);
}

} // namespace sessionhost::transport
