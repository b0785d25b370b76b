#pragma once
// The disk probes' file: a new one in the directory under test, created
// with mkstemp. Named, so the probe decides when it goes (unlinked at once,
// or kept while it runs: an unlinked file's fdatasync is not what a log's
// is on every file system).

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

/// A new file `dir/TOOL.XXXXXX` opened for writing: its descriptor and
/// name, or a descriptor of -1 after printing why to stderr.
struct probe_file {
  int fd = -1;
  std::string name;
};

inline probe_file make_probe_file(const std::string& dir, const char* tool) {
  std::string path = dir + "/" + tool + ".XXXXXX";
  std::vector<char> name(path.begin(), path.end());
  name.push_back('\0');
  probe_file f;
  f.fd = mkstemp(name.data());
  if (f.fd < 0) {
    std::fprintf(stderr, "%s: cannot create a file in %s: %s\n", tool,
                 dir.c_str(), std::strerror(errno));
    return f;
  }
  f.name = name.data();
  return f;
}
