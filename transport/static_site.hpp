#pragma once
// The dashboard in front of the API: a `backend` that answers `GET /` (the
// page) and `GET /web/<file>` from the embedded web/ files and hands every
// other request, every WebSocket and every authorization check to the
// backend it wraps. The files hold no data, so they need no token; the page
// sends the token (from its own `?token=`) with each REST call and
// WebSocket, where the wrapped backend checks it.
//
// Thread safety: as `backend`; the files are constant.

#include <memory>

#include "transport/backend.hpp"

namespace sessionhost::transport {

class static_site : public backend {
public:
  explicit static_site(std::shared_ptr<backend> api);

  void handle_http(http_request req, respond_fn respond) override;
  std::optional<http_response> check_upgrade(const ws_upgrade& up) override;
  std::shared_ptr<ws_handler> open_ws(std::shared_ptr<ws_sink> sink,
                                      const ws_upgrade& up) override;

private:
  std::shared_ptr<backend> api_;
};

/// The Content-Type of a file name by its extension (UTF-8 for text).
const char* content_type_of(const std::string& name);

} // namespace sessionhost::transport
