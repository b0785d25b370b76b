// json_valid: nlohmann's accept, and no NUL byte anywhere (json_check.hpp).
#include "host/json_check.hpp"

#include <nlohmann/json.hpp>

namespace sessionhost {

bool json_valid(std::string_view text) {
  if (text.find('\0') != std::string_view::npos)
    return false; // nlohmann would stop there and accept what came before
  return nlohmann::json::accept(text.begin(), text.end());
}

} // namespace sessionhost
