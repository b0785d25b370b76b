// disk_probe: how long this disk takes to make one small write durable
// (pwrite of one 4 KiB page + fdatasync, as a WAL commit does), so every
// latency figure can be read beside the floor the disk sets under it. An
// event is acknowledged and delivered only once its commit's fdatasync
// returned (the output gate): the event p99 cannot be below the disk's.
//
//   disk_probe [--dir=PATH] [--count=N]      one JSON line on stdout
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "probe_file.hpp"

int main(int argc, char** argv) {
  std::string dir = ".";
  long count = 1000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--dir=", 0) == 0) {
      dir = a.substr(6);
    } else if (a.rfind("--count=", 0) == 0) {
      count = std::strtol(a.c_str() + 8, nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: disk_probe [--dir=PATH] [--count=N]\n");
      return 2;
    }
  }
  if (count < 1 || count > 10'000'000) {
    std::fprintf(stderr, "disk_probe: --count must be 1..10000000\n");
    return 2;
  }
  auto file = make_probe_file(dir, "disk_probe");
  if (file.fd < 0)
    return 1;
  int fd = file.fd;
  unlink(file.name.c_str()); // gone when closed, whatever happens
  // 64 pages written once and made durable first, so the timed loop measures
  // overwrites (a WAL after its first restart), not the file growing.
  constexpr size_t page = 4096;
  constexpr long pages = 64;
  std::vector<char> buf(page, 'x');
  for (long p = 0; p < pages; ++p)
    if (pwrite(fd, buf.data(), page, static_cast<off_t>(p * page)) != static_cast<ssize_t>(page)) {
      std::perror("disk_probe: pwrite");
      return 1;
    }
  fsync(fd);
  std::vector<int64_t> us;
  us.reserve(static_cast<size_t>(count));
  for (long i = 0; i < count; ++i) {
    buf[0] = static_cast<char>(i);
    if (pwrite(fd, buf.data(), page, static_cast<off_t>((i % pages) * page))
        != static_cast<ssize_t>(page)) {
      std::perror("disk_probe: pwrite");
      return 1;
    }
    auto t0 = std::chrono::steady_clock::now();
    if (fdatasync(fd) != 0) {
      std::perror("disk_probe: fdatasync");
      return 1;
    }
    us.push_back(std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::steady_clock::now() - t0)
                   .count());
  }
  close(fd);
  std::sort(us.begin(), us.end());
  auto q = [&](double f) {
    return us[static_cast<size_t>(f * static_cast<double>(us.size() - 1))];
  };
  std::string dir_json; // the path as a JSON string body
  for (char c : dir) {
    if (c == '"' || c == '\\')
      dir_json += '\\';
    if (static_cast<unsigned char>(c) >= 0x20)
      dir_json += c;
  }
  std::printf("{\"tool\":\"disk_probe\",\"dir\":\"%s\",\"count\":%ld,"
              "\"fdatasync_us\":{\"p50\":%" PRId64 ",\"p90\":%" PRId64
              ",\"p99\":%" PRId64 ",\"p999\":%" PRId64 ",\"max\":%" PRId64 "}}\n",
              dir_json.c_str(), count, q(0.5), q(0.9), q(0.99), q(0.999), us.back());
  return 0;
}
