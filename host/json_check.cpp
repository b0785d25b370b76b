// json_valid: nlohmann's accept, and no NUL byte anywhere (json_check.hpp);
// json_text and checked_json_view, built only from checked text.
#include "host/json_check.hpp"

#include <stdexcept>

#include <nlohmann/json.hpp>

namespace sessionhost {

bool json_valid(std::string_view text) {
  if (text.find('\0') != std::string_view::npos)
    return false; // nlohmann would stop there and accept what came before
  return nlohmann::json::accept(text.begin(), text.end());
}

std::optional<checked_json_view> checked_json_view::check(std::string_view text) {
  if (!json_valid(text))
    return std::nullopt;
  return checked_json_view{text};
}

json_text checked_json_view::value_at(std::string_view part) const {
  auto* first = text_.data();
  auto* last = first + text_.size();
  if (part.empty() || part.data() < first || part.data() + part.size() > last)
    throw std::invalid_argument("value_at: not a part of the checked text");
  return json_text{std::string{part}};
}

std::optional<json_text> json_text::check(std::string text) {
  if (!json_valid(text))
    return std::nullopt;
  return json_text{std::move(text)};
}

json_text json_text::write(const nlohmann::json& j) {
  return json_text{
    j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

} // namespace sessionhost
