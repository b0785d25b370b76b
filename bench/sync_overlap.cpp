// sync_overlap: when one fdatasync is slow, does a sync started after it
// finish first? Two threads each overwrite one 4 KiB page and fdatasync it,
// in a loop, on two files (or with --same-file on one file, at distinct
// offsets, as commits written one after another into one log would be).
// For every sync slower than --slow-us it counts the other thread's syncs
// that started during it and how many of those returned before it did.
//
// Why: a group commit that waits for the previous commit's sync makes every
// event arriving during a slow sync wait for it. A commit written and synced
// while the slow sync is still in flight only helps if its own sync can
// return first; and a sync that returns covers every write made before it
// began, so it would also cover the slow one's. This measures how often the
// disk allows that (docs/PERFORMANCE.md, "the commit delay in rounds…", 2026-11-22).
//
//   sync_overlap [--dir=PATH] [--count=N] [--slow-us=U] [--same-file]
//                                                     one JSON line on stdout
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "probe_file.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

struct span {
  int64_t start_us = 0;
  int64_t end_us = 0;
  int64_t us() const { return end_us - start_us; }
};

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
           clock_type::now().time_since_epoch())
    .count();
}

constexpr size_t page = 4096;
constexpr long pages = 64; // per thread

} // namespace

int main(int argc, char** argv) {
  std::string dir = ".";
  long count = 1000;
  long slow_us = 5000;
  bool same_file = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--dir=", 0) == 0) {
      dir = a.substr(6);
    } else if (a.rfind("--count=", 0) == 0) {
      count = std::strtol(a.c_str() + 8, nullptr, 10);
    } else if (a.rfind("--slow-us=", 0) == 0) {
      slow_us = std::strtol(a.c_str() + 10, nullptr, 10);
    } else if (a == "--same-file") {
      same_file = true;
    } else {
      std::fprintf(stderr, "usage: sync_overlap [--dir=PATH] [--count=N] "
                           "[--slow-us=U] [--same-file]\n");
      return 2;
    }
  }
  if (count < 1 || count > 10'000'000 || slow_us < 1) {
    std::fprintf(stderr, "sync_overlap: --count must be 1..10000000 and "
                         "--slow-us at least 1\n");
    return 2;
  }
  // Named files, removed at the end: an unlinked file's fdatasync is not
  // what a log's is on every file system.
  std::vector<std::string> names;
  int fds[2] = {-1, -1};
  for (int t = 0; t < (same_file ? 1 : 2); ++t) {
    auto file = make_probe_file(dir, "sync_overlap");
    fds[t] = file.fd;
    if (fds[t] < 0) {
      for (auto& n : names)
        unlink(n.c_str());
      return 1;
    }
    names.push_back(file.name);
  }
  if (same_file)
    fds[1] = fds[0];
  // Every page written and made durable first: the loop measures overwrites.
  std::vector<char> buf(page, 'x');
  bool ok = true;
  for (int t = 0; t < 2 && ok; ++t)
    for (long p = 0; p < pages && ok; ++p) {
      off_t at = static_cast<off_t>((same_file ? t * pages + p : p) * page);
      ok = pwrite(fds[t], buf.data(), page, at) == static_cast<ssize_t>(page);
    }
  ok = ok && fsync(fds[0]) == 0 && fsync(fds[1]) == 0;
  std::vector<span> spans[2];
  std::atomic<bool> failed{!ok};
  auto loop = [&](int t) {
    std::vector<char> own(page, static_cast<char>('a' + t));
    auto& out = spans[t];
    out.reserve(static_cast<size_t>(count));
    for (long i = 0; i < count && !failed; ++i) {
      own[0] = static_cast<char>(i);
      off_t at = static_cast<off_t>(((same_file ? t * pages : 0) + i % pages) * page);
      span s;
      if (pwrite(fds[t], own.data(), page, at) != static_cast<ssize_t>(page)) {
        failed = true;
        return;
      }
      s.start_us = now_us();
      if (fdatasync(fds[t]) != 0) {
        failed = true;
        return;
      }
      s.end_us = now_us();
      out.push_back(s);
    }
  };
  if (ok) {
    std::thread a(loop, 0), b(loop, 1);
    a.join();
    b.join();
  }
  close(fds[0]);
  if (!same_file)
    close(fds[1]);
  for (auto& n : names)
    unlink(n.c_str());
  if (failed) {
    std::fprintf(stderr, "sync_overlap: write or sync failed in %s: %s\n",
                 dir.c_str(), std::strerror(errno));
    return 1;
  }
  std::vector<int64_t> all;
  for (auto& v : spans)
    for (auto& s : v)
      all.push_back(s.us());
  std::sort(all.begin(), all.end());
  auto q = [](const std::vector<int64_t>& v, double f) {
    return v.empty() ? 0 : v[static_cast<size_t>(f * static_cast<double>(v.size() - 1))];
  };
  long slow = 0, started = 0, returned_first = 0;
  std::vector<int64_t> theirs; // the syncs started during a slow one
  for (int t = 0; t < 2; ++t)
    for (auto& s : spans[t]) {
      if (s.us() < slow_us)
        continue;
      ++slow;
      for (auto& o : spans[1 - t])
        if (o.start_us > s.start_us && o.start_us < s.end_us) {
          ++started;
          theirs.push_back(o.us());
          if (o.end_us < s.end_us)
            ++returned_first;
        }
    }
  std::sort(theirs.begin(), theirs.end());
  std::printf("{\"tool\":\"sync_overlap\",\"files\":%d,\"syncs\":%zu,"
              "\"fdatasync_us\":{\"p50\":%lld,\"p99\":%lld,\"max\":%lld},"
              "\"slow_us\":%ld,\"slow\":%ld,\"started_during_slow\":%ld,"
              "\"returned_before_it\":%ld,\"their_us\":{\"p50\":%lld,\"p90\":%lld}}\n",
              same_file ? 1 : 2, all.size(), static_cast<long long>(q(all, 0.5)),
              static_cast<long long>(q(all, 0.99)),
              static_cast<long long>(all.empty() ? 0 : all.back()), slow_us, slow,
              started, returned_first, static_cast<long long>(q(theirs, 0.5)),
              static_cast<long long>(q(theirs, 0.9)));
  return 0;
}
