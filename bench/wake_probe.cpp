// wake_probe: what this machine charges for waking a sleeping thread, the
// price of every hand-off inside the server (io thread -> CAF worker ->
// SQLite writer -> worker) and between the server and its clients. Two
// threads pass a token back and forth, each sleeping until it arrives:
//
//   condvar  a mutex and a condition variable (how a CAF worker sleeps)
//   tcp      one 64-byte message each way over a loopback TCP connection
//            (how a client's publish reaches the server and its event
//            comes back: a round trip is the floor under publish-to-receive)
//
// Each round trip is timed; the CPU time and context switches of the whole
// process are divided by the round trips. With --cpus=0,0 both threads share
// one CPU (as the server's threads do under run-all's taskset); with 0,1 each
// wake-up crosses CPUs (on a VM: an inter-processor interrupt, a VM exit).
//
//   wake_probe [--count=N] [--cpus=A,B]     one JSON line per mechanism
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

bool pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

struct usage {
  double cpu_us = 0;
  long switches = 0;
  static usage now() {
    rusage r{};
    getrusage(RUSAGE_SELF, &r);
    usage u;
    u.cpu_us = static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6
               + static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
    u.switches = r.ru_nvcsw + r.ru_nivcsw;
    return u;
  }
};

// Times `count` round trips of `ping` (run on CPU a) against `pong`'s thread
// (started by the caller on CPU b) and prints the JSON line.
void report(const char* mechanism, int a, int b, long count, long warmup,
            const std::function<void()>& ping) {
  std::vector<int64_t> ns;
  ns.reserve(static_cast<size_t>(count));
  for (long i = 0; i < warmup; ++i)
    ping();
  auto u0 = usage::now();
  for (long i = 0; i < count; ++i) {
    auto t0 = clock_type::now();
    ping();
    ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(
                   clock_type::now() - t0)
                   .count());
  }
  auto u1 = usage::now();
  std::sort(ns.begin(), ns.end());
  auto q = [&](double f) {
    return static_cast<double>(ns[static_cast<size_t>(f * static_cast<double>(ns.size() - 1))])
           / 1e3;
  };
  auto n = static_cast<double>(count);
  std::printf("{\"tool\":\"wake_probe\",\"mechanism\":\"%s\",\"cpus\":[%d,%d],"
              "\"round_trips\":%ld,\"round_trip_us\":{\"p50\":%.1f,\"p90\":%.1f,"
              "\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f},\"cpu_us_per_round_trip\":%.1f,"
              "\"switches_per_round_trip\":%.2f}\n",
              mechanism, a, b, count, q(0.5), q(0.9), q(0.99), q(0.999),
              static_cast<double>(ns.back()) / 1e3, (u1.cpu_us - u0.cpu_us) / n,
              static_cast<double>(u1.switches - u0.switches) / n);
  std::fflush(stdout);
}

void condvar_probe(int a, int b, long count, long warmup) {
  std::mutex m;
  std::condition_variable cv;
  long token = 0; // odd: the pong side's turn; even: the ping side's
  bool stop = false;
  std::thread pong([&] {
    pin(b);
    std::unique_lock<std::mutex> lock(m);
    for (;;) {
      cv.wait(lock, [&] { return stop || token % 2 == 1; });
      if (stop)
        return;
      ++token;
      cv.notify_all();
    }
  });
  pin(a);
  report("condvar", a, b, count, warmup, [&] {
    std::unique_lock<std::mutex> lock(m);
    ++token;
    cv.notify_all();
    cv.wait(lock, [&] { return token % 2 == 0; });
  });
  {
    std::lock_guard<std::mutex> lock(m);
    stop = true;
  }
  cv.notify_all();
  pong.join();
}

bool exact(int fd, char* buf, size_t n, bool reading) {
  size_t done = 0;
  while (done < n) {
    auto r = reading ? ::read(fd, buf + done, n - done) : ::write(fd, buf + done, n - done);
    if (r <= 0)
      return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

int tcp_probe(int a, int b, long count, long warmup) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::listen(listener, 1) != 0
      || ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::perror("wake_probe: listen on 127.0.0.1");
    return 1;
  }
  int client = ::socket(AF_INET, SOCK_STREAM, 0);
  if (client < 0 || ::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::perror("wake_probe: connect");
    return 1;
  }
  int server = ::accept(listener, nullptr, nullptr);
  ::close(listener);
  if (server < 0) {
    std::perror("wake_probe: accept");
    return 1;
  }
  int one = 1;
  ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ::setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  constexpr size_t size = 64;
  std::thread pong([&] {
    pin(b);
    char buf[size];
    while (exact(server, buf, size, true) && exact(server, buf, size, false)) {
    }
  });
  pin(a);
  char buf[size] = {};
  bool ok = true;
  report("tcp", a, b, count, warmup, [&] {
    ok = ok && exact(client, buf, size, false) && exact(client, buf, size, true);
  });
  ::shutdown(client, SHUT_WR); // the pong side reads end of stream and stops
  pong.join();
  ::close(client);
  ::close(server);
  if (!ok) {
    std::fprintf(stderr, "wake_probe: the loopback connection failed\n");
    return 1;
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  long count = 20000;
  int a = 0, b = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--count=", 0) == 0) {
      count = std::strtol(arg.c_str() + 8, nullptr, 10);
    } else if (arg.rfind("--cpus=", 0) == 0
               && std::sscanf(arg.c_str() + 7, "%d,%d", &a, &b) == 2) {
    } else {
      std::fprintf(stderr, "usage: wake_probe [--count=N] [--cpus=A,B]\n");
      return 2;
    }
  }
  if (count < 1 || count > 10'000'000) {
    std::fprintf(stderr, "wake_probe: --count must be 1..10000000\n");
    return 2;
  }
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  sched_getaffinity(0, sizeof(allowed), &allowed);
  for (int cpu : {a, b})
    if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed)) {
      std::fprintf(stderr, "wake_probe: CPU %d is not one this process may run on\n", cpu);
      return 2;
    }
  long warmup = std::min(count, 200L);
  condvar_probe(a, b, count, warmup);
  return tcp_probe(a, b, count, warmup);
}
