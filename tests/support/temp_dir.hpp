#pragma once
// A fresh directory under the system's temp dir (TMPDIR or /tmp), removed
// with everything in it when the object goes. Header-only, for tests and
// benchmarks alike.
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace sessionhost::testing {

struct temp_dir {
  /// Creates <tmp>/<prefix>-XXXXXX; throws std::runtime_error when it cannot.
  explicit temp_dir(const std::string& prefix = "sessionhost-test") {
    auto pattern =
      (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr)
      throw std::runtime_error("cannot create a temp dir " + pattern);
    path = buf.data();
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  /// `name` inside the directory.
  std::string file(const std::string& name) const { return path + "/" + name; }

  std::string path; ///< constant after construction
};

} // namespace sessionhost::testing
