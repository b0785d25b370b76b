// pipeline_probe: events arriving at a fixed rate made durable on this disk,
// the way the persistence listener does it today and the way a pipelined
// group commit would, without SQLite (docs/PERFORMANCE.md, "the commit
// delay in rounds…", 2026-11-22, issue 6):
//
//   --mode=serial     one thread takes whatever arrived, writes it (2 pages
//                     of 4 KiB per event, into a 40 MiB ring as into a WAL),
//                     fdatasyncs and acknowledges it: every event arriving
//                     during a slow sync waits for it.
//   --mode=pipelined  a writer writes whatever arrived as soon as its last
//                     write returned; --syncers=K threads each fdatasync and
//                     acknowledge every event written before their sync
//                     began (a sync covers every write made before it).
//
// Prints each event's arrival → durable latency (p50, p99, p999, max) and
// how many waited over 5 ms, as one JSON line.
//
//   pipeline_probe [--dir=PATH] [--mode=serial|pipelined] [--rate=N]
//                  [--seconds=S] [--syncers=K]
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "probe_file.hpp"

namespace {

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

constexpr size_t page = 4096;
constexpr long ring_pages = 10'240; // 40 MiB, the WAL's size between checkpoints
constexpr int pages_per_event = 2;  // an events leaf and its session's row

} // namespace

int main(int argc, char** argv) {
  std::string dir = ".";
  std::string mode = "serial";
  long rate = 2000;
  double seconds = 4;
  long syncers = 2;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--dir=", 0) == 0) {
      dir = a.substr(6);
    } else if (a.rfind("--mode=", 0) == 0) {
      mode = a.substr(7);
    } else if (a.rfind("--rate=", 0) == 0) {
      rate = std::strtol(a.c_str() + 7, nullptr, 10);
    } else if (a.rfind("--seconds=", 0) == 0) {
      seconds = std::strtod(a.c_str() + 10, nullptr);
    } else if (a.rfind("--syncers=", 0) == 0) {
      syncers = std::strtol(a.c_str() + 10, nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: pipeline_probe [--dir=PATH] "
                           "[--mode=serial|pipelined] [--rate=N] "
                           "[--seconds=S] [--syncers=K]\n");
      return 2;
    }
  }
  long events = static_cast<long>(static_cast<double>(rate) * seconds);
  if ((mode != "serial" && mode != "pipelined") || rate < 1 || rate > 1'000'000
      || events < 1 || events > 100'000'000 || syncers < 1 || syncers > 16) {
    std::fprintf(stderr, "pipeline_probe: --mode is serial or pipelined, "
                         "--rate 1..1000000, --seconds > 0 (at most 1e8 "
                         "events), --syncers 1..16\n");
    return 2;
  }
  auto file = make_probe_file(dir, "pipeline_probe");
  if (file.fd < 0)
    return 1;
  int fd = file.fd;
  std::vector<char> buf(page, 'x');
  std::atomic<bool> failed{false};
  // The ring written and made durable first: the run measures overwrites.
  for (long p = 0; p < ring_pages && !failed; ++p)
    failed = pwrite(fd, buf.data(), page, static_cast<off_t>(p * page))
             != static_cast<ssize_t>(page);
  failed = failed || fsync(fd) != 0;

  std::vector<int64_t> arrive(static_cast<size_t>(events));
  std::vector<int64_t> done(static_cast<size_t>(events), 0);
  int64_t t0 = now_us() + 1000;
  for (long i = 0; i < events; ++i)
    arrive[i] = t0 + static_cast<int64_t>(static_cast<double>(i) * 1e6
                                          / static_cast<double>(rate));
  long ring_at = 0;
  auto write_events = [&](long from, long to) {
    for (long i = from; i < to && !failed; ++i)
      for (int k = 0; k < pages_per_event; ++k) {
        off_t at = static_cast<off_t>((ring_at++ % ring_pages) * page);
        if (pwrite(fd, buf.data(), page, at) != static_cast<ssize_t>(page))
          failed = true;
      }
  };
  // The events arrived by now, from `from` on, and a wait for the next one.
  auto arrived = [&](long from) {
    int64_t t = now_us();
    while (from < events && arrive[from] <= t)
      ++from;
    return from;
  };
  // Waits for the event at `next`, then writes it and every event that
  // arrived meanwhile; returns where the next burst starts.
  auto write_burst = [&](long next) {
    long to = arrived(next);
    while (to == next) {
      int64_t d = arrive[next] - now_us();
      if (d > 0)
        std::this_thread::sleep_for(std::chrono::microseconds(d));
      to = arrived(next);
    }
    write_events(next, to);
    return to;
  };

  if (!failed && mode == "serial") {
    for (long next = 0; next < events && !failed;) {
      long to = write_burst(next);
      if (fdatasync(fd) != 0)
        failed = true;
      int64_t t = now_us();
      for (long i = next; i < to; ++i)
        done[i] = t;
      next = to;
    }
  } else if (!failed) {
    std::mutex mtx;
    std::condition_variable cv;
    long written = 0;  // events written so far (guarded by mtx)
    long claimed = 0;  // covered by a sync begun (guarded by mtx)
    long covered = 0;  // covered by a sync returned (guarded by mtx)
    bool writer_done = false;
    std::vector<std::thread> threads;
    for (long k = 0; k < syncers; ++k)
      threads.emplace_back([&] {
        for (;;) {
          long cover = 0;
          {
            std::unique_lock<std::mutex> lock{mtx};
            cv.wait(lock, [&] { return written > claimed || writer_done; });
            if (written <= claimed)
              return; // the writer is done and everything is claimed
            cover = claimed = written;
          }
          if (fdatasync(fd) != 0)
            failed = true;
          int64_t t = now_us();
          std::lock_guard<std::mutex> lock{mtx};
          for (long i = covered; i < cover; ++i)
            done[i] = t;
          covered = std::max(covered, cover);
        }
      });
    for (long next = 0; next < events && !failed;) {
      long to = write_burst(next);
      {
        std::lock_guard<std::mutex> lock{mtx};
        written = to;
      }
      cv.notify_one();
      next = to;
    }
    {
      std::lock_guard<std::mutex> lock{mtx};
      writer_done = true;
    }
    cv.notify_all();
    for (auto& t : threads)
      t.join();
  }
  close(fd);
  unlink(file.name.c_str());
  if (failed) {
    std::fprintf(stderr, "pipeline_probe: write or sync failed in %s: %s\n",
                 dir.c_str(), std::strerror(errno));
    return 1;
  }
  std::vector<int64_t> lat(static_cast<size_t>(events));
  long over_5ms = 0;
  for (long i = 0; i < events; ++i) {
    lat[i] = done[i] - arrive[i];
    over_5ms += lat[i] > 5000;
  }
  std::sort(lat.begin(), lat.end());
  auto q = [&](double f) {
    return static_cast<long long>(
      lat[static_cast<size_t>(f * static_cast<double>(lat.size() - 1))]);
  };
  std::printf("{\"tool\":\"pipeline_probe\",\"mode\":\"%s\",\"syncers\":%ld,"
              "\"rate\":%ld,\"events\":%ld,\"durable_us\":{\"p50\":%lld,"
              "\"p99\":%lld,\"p999\":%lld,\"max\":%lld},\"over_5ms\":%ld}\n",
              mode.c_str(), mode == "serial" ? 1L : syncers, rate, events,
              q(0.5), q(0.99), q(0.999), static_cast<long long>(lat.back()),
              over_5ms);
  return 0;
}
