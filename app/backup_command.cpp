#include "app/backup_command.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "host/store/sqlite_store.hpp"

namespace sessionhost {

namespace {

constexpr const char* backup_usage =
  "usage: sessionhost backup DEST [--data-dir=DIR] [--store=sqlite:PATH]\n"
  "  Copies the live SQLite database (DIR/sessionhost.db, default DIR\n"
  "  ./data, or PATH) to the new file DEST while the server keeps running.\n"
  "  DEST must not exist. A PostgreSQL store is backed up with pg_dump.\n";

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

int usage_error(const std::string& msg) {
  std::cerr << "sessionhost backup: " << msg << "\n" << backup_usage;
  return 2;
}

} // namespace

int run_backup(int argc, char** argv) {
  std::string data_dir = "./data";
  std::string store;
  std::vector<std::string> positional;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << backup_usage;
      return 0;
    }
    if (starts_with(a, "--data-dir="))
      data_dir = a.substr(11);
    else if (starts_with(a, "--store="))
      store = a.substr(8);
    else if (starts_with(a, "-") && a != "-")
      return usage_error("unknown option '" + a + "' (options are --name=value)");
    else
      positional.push_back(a);
  }
  if (positional.empty())
    return usage_error("missing DEST, the file to write the copy to");
  if (positional.size() > 1)
    return usage_error("unexpected argument '" + positional[1] + "'");
  const auto& dest = positional.front();

  std::string source;
  if (starts_with(store, "postgresql://") || starts_with(store, "postgres://"))
    return usage_error("the store is PostgreSQL: back it up with pg_dump "
                       "(pg_dump --format=custom --file=DEST URL)");
  if (store == "memory:")
    return usage_error("the memory: store keeps nothing to back up");
  if (starts_with(store, "sqlite:"))
    source = store.substr(7);
  else if (store.empty())
    source = (data_dir.empty() ? std::string{"."} : data_dir) + "/sessionhost.db";
  else
    return usage_error("unknown store URL '" + store
                       + "' (expected sqlite:PATH or postgresql://…)");
  if (source.empty())
    return usage_error("sqlite: URL without a path");

  struct stat st {};
  if (::lstat(dest.c_str(), &st) == 0) {
    std::cerr << "sessionhost backup: " << dest
              << " exists; refusing to overwrite it (remove it or pick a new "
                 "name)\n";
    return 1;
  }
  auto parent = std::filesystem::path{dest}.parent_path();
  std::error_code ec;
  if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
    std::cerr << "sessionhost backup: cannot write " << dest << ": "
              << parent.string() << " is not a directory\n";
    return 1;
  }
  try {
    sqlite_store::backup_file(source, dest, false);
  } catch (const store_error& e) {
    std::cerr << "sessionhost backup: ";
    if (e.error_code() == store_error::code::not_found)
      std::cerr << "no database at " << source
                << " (check --data-dir or --store)\n";
    else
      std::cerr << e.what() << "\n";
    return 1;
  }
  if (::stat(dest.c_str(), &st) != 0)
    st.st_size = 0;
  std::cout << "backed up " << source << " to " << dest << " (" << st.st_size
            << " bytes)" << std::endl;
  return 0;
}

} // namespace sessionhost
