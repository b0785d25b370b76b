// Neither Beast nor CAF's heavy headers: the api and the server are
// opaque here, so this stays cheap to compile.
#include "transport/http_frontend.hpp"

#include "transport/static_site.hpp"

namespace sessionhost::transport {

http_frontend::http_frontend(caf::actor_system& sys, embedded_host& host,
                             http_frontend_options opts) {
  auto stats = std::make_shared<server_stats>();
  api_ = std::make_shared<api>(sys, host, std::move(opts.api), stats);
  backend_ = api_;
  if (opts.dashboard)
    backend_ = std::make_shared<static_site>(api_);
  server_ = std::make_unique<server>(std::move(opts.server), backend_, stats);
}

http_frontend::~http_frontend() {
  stop(std::chrono::milliseconds{0});
}

uint16_t http_frontend::start() {
  auto p = server_->start();
  port_ = p;
  return p;
}

uint16_t http_frontend::port() const noexcept {
  return port_;
}

void http_frontend::stop_accepting() {
  if (!stopped_)
    server_->stop_accepting();
}

size_t http_frontend::stop(std::chrono::milliseconds ws_close_timeout) {
  if (stopped_)
    return 0;
  stopped_ = true;
  server_->stop_accepting();
  auto left = server_->close_websockets(
    1001, static_cast<int>(ws_close_timeout.count()));
  // Before the server goes: actors still answering must not reach it.
  api_->close();
  server_->stop();
  return left;
}

} // namespace sessionhost::transport
