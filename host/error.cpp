#include "host/error.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace sessionhost {

const char* to_string(errc x) noexcept {
  switch (x) {
    case errc::bad_request: return "bad_request";
    case errc::unauthorized: return "unauthorized";
    case errc::forbidden: return "forbidden";
    case errc::not_found: return "not_found";
    case errc::conflict: return "conflict";
    case errc::too_large: return "too_large";
    case errc::invalid_transition: return "invalid_transition";
    case errc::overloaded: return "overloaded";
    case errc::internal: return "internal";
    case errc::stale_epoch: return "stale_epoch";
    case errc::unavailable: return "unavailable";
  }
  return "internal";
}

int http_status(errc x) noexcept {
  switch (x) {
    case errc::bad_request: return 400;
    case errc::unauthorized: return 401;
    case errc::forbidden: return 403;
    case errc::not_found: return 404;
    case errc::conflict: return 409;
    case errc::too_large: return 413;
    case errc::invalid_transition: return 409;
    case errc::overloaded: return 503;
    case errc::internal: return 500;
    case errc::stale_epoch: return 409;
    case errc::unavailable: return 503;
  }
  return 500;
}

caf::error make_error(errc code, std::string message) {
  return caf::error{static_cast<uint8_t>(code), error_category,
                    caf::make_message(std::move(message))};
}

errc code_of(const caf::error& err) noexcept {
  if (err.category() == error_category && err.code() >= 1
      && err.code() <= static_cast<uint8_t>(errc::unavailable))
    return static_cast<errc>(err.code());
  if (err.category() == caf::atom("system")) {
    auto s = static_cast<caf::sec>(err.code());
    if (s == caf::sec::request_timeout || s == caf::sec::request_receiver_down)
      return errc::unavailable;
  }
  return errc::internal;
}

std::string message_of(const caf::error& err) {
  if (err.category() == error_category) {
    auto& ctx = err.context();
    if (ctx.match_elements<std::string>())
      return ctx.get_as<std::string>(0);
    return to_string(static_cast<errc>(err.code()));
  }
  return caf::to_string(err);
}

void register_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(error_category,
                         [](uint8_t code, caf::atom_value,
                            const caf::message& ctx) {
                           std::string out = "sessionhost: ";
                           out += to_string(static_cast<errc>(code));
                           if (ctx.match_elements<std::string>())
                             out += " (" + ctx.get_as<std::string>(0) + ")";
                           return out;
                         });
}

} // namespace sessionhost
