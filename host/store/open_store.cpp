#include "host/store/open_store.hpp"

#include <filesystem>
#include <system_error>

#include "host/store/memory_store.hpp"
#include "host/store/postgres_store.hpp"
#include "host/store/sqlite_store.hpp"

namespace sessionhost {

namespace {

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

} // namespace

store_ptr open_store(const std::string& url, const std::string& data_dir) {
  using code = store_error::code;
  if (starts_with(url, "postgresql://") || starts_with(url, "postgres://"))
    return std::make_shared<postgres_store>(url);
  if (url == "memory:")
    return std::make_shared<memory_store>();
  if (starts_with(url, "sqlite:")) {
    auto path = url.substr(7);
    if (path.empty())
      throw store_error(code::invalid_argument, "sqlite: URL without a path");
    return std::make_shared<sqlite_store>(path);
  }
  if (url.empty()) {
    std::filesystem::path dir = data_dir.empty() ? "." : data_dir;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec)
      throw store_error(code::io, "cannot create data directory " + dir.string()
                                    + ": " + ec.message());
    return std::make_shared<sqlite_store>((dir / "sessionhost.db").string());
  }
  throw store_error(code::invalid_argument,
                    "unknown store URL '" + url
                      + "' (expected postgresql://…, sqlite:PATH or memory:)");
}

} // namespace sessionhost
