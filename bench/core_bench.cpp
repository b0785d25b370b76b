// core_bench: in-process figures of the core, one JSON line each.
//
//   activation      create N sessions through the host, one create per
//                   request: sessions/s (and per CPU-second of the process)
//   activation_batched  the same with batch creates of 100 sessions each
//   memory          resident bytes per loaded idle session at N sessions
//   activation_of_stored  load ACTIVE sessions that are only in the store:
//                   sessions/s (a load counts once the host's reply says the
//                   session is loaded and ACTIVE)
//   activation_of_stored_batched  the same with batch loads of --batch-loads
//                   ids per request (100 by default)
//   reload          unload + load round trip of one session: µs
//   publish         durable publish throughput, one session and 100 sessions,
//                   with one subscriber each: events/s
//
// Usage: core_bench [--sessions=N] [--store=memory:|sqlite:PATH] [--quick]
//                   [--idle-timer=on|off] [--policy=stealing|sharing]
//                   [--threads=N] [--only=activation|stored] [--sliding]
//                   [--reload=N] [--loads=N] [--batch-loads=N] [--thread-cpu]
//                   [--perf-ctl=FIFO]
// (--threads: CAF workers, by default the CPUs it may run on, as `sessionhost
// serve` sizes them; --quick: tiny sizes, for CI to keep the benchmark working; --only=activation:
// print the first two figures and exit at once, for a profiler; --only=stored:
// create the sessions in batches, then print activation_of_stored alone and
// exit, for a profiler; --reload: how many stored sessions to unload and load
// again (10,000; 1,000 with --quick), --loads=0: unload them but load none (a
// profile's baseline: subtract it to get the loads alone); --batch-loads=N:
// stored loads as batch loads of N ids (with --only=stored; 0: single loads); --sliding: a sliding window
// of requests instead of one window after the other; --thread-cpu: each
// thread's CPU time over the stored loads, on stderr; --perf-ctl: enables a
// `perf record --control=fifo:FIFO -D -1` for the stored loads alone).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <memory>
#include <string>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include "host/embedded_host.hpp"
#include "host/error.hpp"
#include "host/store/open_store.hpp"

using namespace sessionhost;
using namespace std::chrono;
using namespace std::chrono_literals;

namespace {

size_t rss_bytes() {
  std::ifstream in{"/proc/self/statm"};
  size_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// CPU time of the whole process (every thread): on a shared machine the
// figure least moved by other load.
double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

// CPU time per thread (name → ticks) of this process: which thread a
// figure's CPU went to (--thread-cpu).
std::map<std::string, long> thread_ticks() {
  std::map<std::string, long> out;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in{e.path() / "stat"};
    std::string line;
    std::getline(in, line);
    auto open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos)
      continue;
    auto name = line.substr(open + 1, close - open - 1) + "/"
                + e.path().filename().string();
    std::istringstream rest{line.substr(close + 2)};
    std::string f;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> f; ++i) {
      if (i == 14) utime = std::stol(f);
      if (i == 15) stime = std::stol(f);
    }
    out[name] = utime + stime;
    // Context switches, as "name cs": what each thread's wake-ups cost.
    std::ifstream status{e.path() / "status"};
    long cs = 0;
    while (std::getline(status, line))
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0
          || line.rfind("nonvoluntary_ctxt_switches:", 0) == 0)
        cs += std::stol(line.substr(line.find(':') + 1));
    out[name + " cs"] = cs;
  }
  return out;
}

void print_thread_cpu(const std::map<std::string, long>& before) {
  auto hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  for (auto& [name, t] : thread_ticks()) {
    auto i = before.find(name);
    auto d = t - (i == before.end() ? 0 : i->second);
    if (d <= 0)
      continue;
    if (name.size() > 3 && name.compare(name.size() - 3, 3, " cs") == 0)
      std::fprintf(stderr, "thread %s %ld\n", name.c_str(), d);
    else
      std::fprintf(stderr, "thread %s cpu_s %.3f\n", name.c_str(), d / hz);
  }
}

double seconds_since(steady_clock::time_point t0) {
  return duration<double>(steady_clock::now() - t0).count();
}

std::string arg(int argc, char** argv, const std::string& name,
                const std::string& fallback) {
  auto prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind(prefix, 0) == 0)
      return a.substr(prefix.size());
    if (a == "--" + name)
      return "1";
  }
  return fallback;
}

// Sends requests in windows of `window` and waits for all replies: the host
// and sessions stay busy without unbounded queues. With `sliding`, keeps
// `window` in flight instead (a new request per reply, as many independent
// clients would), which makes the host wake per message rather than drain
// a burst.
bool sliding = false;
// Replies that were not what the figure counts (an info not loaded or not
// ACTIVE where `want_active`): reported, never counted.
bool want_active = false;
size_t not_counted = 0;

template <class Make>
size_t pipelined(caf::scoped_actor& self, size_t n, size_t window, Make make,
                 std::vector<std::string>* ids = nullptr) {
  size_t ok = 0;
  size_t sent = 0;
  auto receive_one = [&] {
    self->receive(
      [&](session_info& info) {
        if (!info.loaded
            || (want_active && info.state != session_state::active)) {
          ++not_counted;
          return;
        }
        ++ok;
        if (ids)
          ids->push_back(info.id);
      },
      [&](uint64_t) { ++ok; },
      [&](std::vector<session_info>& infos) { ok += infos.size(); },
      [&](std::vector<load_result>& results) {
        for (auto& r : results) {
          if (r.error || !r.info.loaded
              || (want_active && r.info.state != session_state::active))
            ++not_counted;
          else
            ++ok;
        }
      },
      [&](caf::error& e) {
        std::fprintf(stderr, "error: %s\n", message_of(e).c_str());
      });
  };
  if (!sliding) {
    while (sent < n) {
      size_t batch = std::min(window, n - sent);
      for (size_t i = 0; i < batch; ++i)
        make(sent + i);
      for (size_t i = 0; i < batch; ++i)
        receive_one();
      sent += batch;
    }
    return ok;
  }
  for (; sent < std::min(window, n); ++sent)
    make(sent);
  for (size_t got = 0; got < n; ++got) {
    receive_one();
    if (sent < n)
      make(sent++);
  }
  return ok;
}

caf::behavior counting_subscriber(caf::event_based_actor*,
                                  std::shared_ptr<std::atomic<uint64_t>> n) {
  return {[n](events_atom, const std::string&, const std::vector<event>& evs) {
    *n += evs.size();
  }};
}

// Takes each session CREATED → SPAWNING → ACTIVE as its agent would, so the
// stored loads load ACTIVE sessions. Windows of 1,000 requests.
void activate_all(caf::scoped_actor& self, const session_host_actor& host,
                  const std::vector<std::string>& ids) {
  for (size_t at = 0; at < ids.size(); at += 1000) {
    size_t n = std::min<size_t>(1000, ids.size() - at);
    std::vector<session_actor> handles;
    for (size_t i = 0; i < n; ++i)
      self->send(host, get_session_atom::value, ids[at + i]);
    for (size_t i = 0; i < n; ++i)
      self->receive([&](session_actor& h) { handles.push_back(h); },
                    [&](caf::error& e) {
                      std::fprintf(stderr, "error: %s\n", message_of(e).c_str());
                    });
    for (int step = 0; step < 2; ++step) {
      for (auto& h : handles) {
        if (step == 0)
          self->send(h, begin_spawn_atom::value);
        else
          self->send(h, activate_atom::value, std::string{"bench"});
      }
      for (size_t i = 0; i < handles.size(); ++i)
        self->receive([](session_info&) {}, [&](caf::error& e) {
          std::fprintf(stderr, "error: %s\n", message_of(e).c_str());
        });
    }
  }
}

} // namespace

int main(int argc, char** argv) {
  bool quick = arg(argc, argv, "quick", "") == "1";
  sliding = arg(argc, argv, "sliding", "") == "1";
  size_t sessions = std::stoul(arg(argc, argv, "sessions", quick ? "1000" : "100000"));
  std::string store_url = arg(argc, argv, "store", "memory:");
  size_t events = quick ? 2000 : 200000;

  caf::actor_system_config cfg;
  // --policy=sharing|stealing: CAF's scheduler (work stealing by default).
  auto policy = arg(argc, argv, "policy", "stealing");
  cfg.set("scheduler.policy", caf::atom_from_string(policy));
  // CAF workers: as many as the CPUs this process may run on, as
  // `sessionhost serve` does (CAF's own default is at least 4), or --threads.
  size_t threads = std::stoul(arg(argc, argv, "threads", "0"));
  if (cpu_set_t cpus; threads == 0 && sched_getaffinity(0, sizeof cpus, &cpus) == 0)
    threads = static_cast<size_t>(CPU_COUNT(&cpus));
  if (threads > 0)
    cfg.set("scheduler.max-threads", threads);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  host_options opts;
  opts.store = open_store(store_url, "/tmp");
  // Idle passivation as configured by default (one pending timer per idle
  // session), unless --idle-timer=off.
  if (arg(argc, argv, "idle-timer", "on") == "off")
    opts.config.idle_timeout = 0ms;
  embedded_host host{sys, opts};

  auto only = arg(argc, argv, "only", "");
  size_t reload_n = std::stoul(arg(argc, argv, "reload", quick ? "1000" : "10000"));
  std::vector<std::string> ids;
  ids.reserve(sessions);
  // -- activation of stored sessions: unload some, then load them again ---
  // `batch` 0: one load request per session; else batch loads of `batch`
  // ids each (about 1,000 loads in flight either way). `first`: where in
  // `ids` the sessions to unload and load again start.
  auto stored_loads = [&](size_t first, size_t batch) {
    first = std::min(first, ids.size());
    size_t reload = std::min<size_t>(ids.size() - first, reload_n);
    std::vector<std::string> some(ids.begin() + static_cast<ptrdiff_t>(first),
                                  ids.begin() + static_cast<ptrdiff_t>(first + reload));
    activate_all(self, host.host(), some);
    pipelined(self, reload, 256, [&](size_t i) {
      self->send(host.host(), unload_atom::value, some[i]);
    });
    not_counted = 0;
    want_active = true;
    bool per_thread = arg(argc, argv, "thread-cpu", "") == "1";
    auto ticks0 = per_thread ? thread_ticks() : std::map<std::string, long>{};
    // --perf-ctl=FIFO: perf record --control=fifo:FIFO -D -1 profiles the
    // loads alone.
    auto perf_ctl = arg(argc, argv, "perf-ctl", "");
    auto tell_perf = [&](const char* what) {
      if (perf_ctl.empty())
        return;
      std::ofstream ctl{perf_ctl};
      ctl << what << '\n' << std::flush;
    };
    tell_perf("enable");
    auto cpu0 = cpu_seconds();
    auto t0 = steady_clock::now();
    auto loads = std::min<size_t>(
      reload, std::stoul(arg(argc, argv, "loads", std::to_string(reload))));
    size_t loaded = 0;
    if (batch == 0) {
      loaded = pipelined(self, loads, 1000, [&](size_t i) {
        self->send(host.host(), load_atom::value, some[i]);
      });
    } else if (loads > 0) {
      size_t requests = (loads + batch - 1) / batch;
      loaded = pipelined(self, requests, std::max<size_t>(1, 1000 / batch),
                         [&](size_t r) {
                           auto at = some.begin() + static_cast<ptrdiff_t>(r * batch);
                           auto end = some.begin()
                                      + static_cast<ptrdiff_t>(std::min(loads, (r + 1) * batch));
                           self->send(host.host(), load_atom::value,
                                      std::vector<std::string>(at, end));
                         });
    }
    auto secs = seconds_since(t0);
    auto cpu = cpu_seconds() - cpu0;
    tell_perf("disable");
    want_active = false;
    if (per_thread)
      print_thread_cpu(ticks0);
    std::printf("{\"bench\":\"activation_of_stored%s\",\"store\":\"%s\","
                "\"batch\":%zu,\"sessions\":%zu,\"seconds\":%.3f,\"sessions_per_s\":%.0f,"
                "\"cpu_s\":%.3f,\"sessions_per_cpu_s\":%.0f,"
                "\"not_counted\":%zu}\n",
                batch ? "_batched" : "", store_url.c_str(), batch, loaded,
                secs, loaded / secs, cpu, loaded / cpu, not_counted);
  };
  // --batch-loads=N: with --only=stored, batch loads of N ids instead of
  // single loads; in the full run, the batch of the second stored-load
  // figure (100 by default; 0: none).
  auto batch_loads = static_cast<size_t>(
    std::stoul(arg(argc, argv, "batch-loads", only == "stored" ? "0" : "100")));
  if (only == "stored") {
    std::vector<session_spec> specs(100, session_spec{"agent", "", {}});
    for (size_t made = 0; made < sessions; made += 100)
      self->request(host.host(), 60s, create_atom::value, specs)
        .receive(
          [&](std::vector<session_info>& infos) {
            for (auto& i : infos)
              ids.push_back(i.id);
          },
          [](caf::error& e) {
            std::fprintf(stderr, "error: %s\n", message_of(e).c_str());
          });
    stored_loads(0, batch_loads);
    std::fflush(stdout);
    _exit(0);
  }

  // -- activation and memory ---------------------------------------------
  auto rss0 = rss_bytes();
  auto cpu0 = cpu_seconds();
  auto t0 = steady_clock::now();
  auto created = pipelined(
    self, sessions, 1000,
    [&](size_t) {
      self->send(host.host(), create_atom::value, std::string{"agent"},
                 std::string{}, metadata_map{});
    },
    &ids);
  auto secs = seconds_since(t0);
  auto cpu = cpu_seconds() - cpu0;
  auto rss1 = rss_bytes();
  std::printf("{\"bench\":\"activation\",\"store\":\"%s\",\"sessions\":%zu,"
              "\"seconds\":%.3f,\"sessions_per_s\":%.0f,\"cpu_s\":%.3f,"
              "\"sessions_per_cpu_s\":%.0f}\n",
              store_url.c_str(), created, secs, created / secs, cpu,
              created / cpu);
  std::printf("{\"bench\":\"memory_per_idle_session\",\"sessions\":%zu,"
              "\"rss_delta_bytes\":%zu,\"bytes_per_session\":%.0f}\n",
              created, rss1 - rss0,
              static_cast<double>(rss1 - rss0) / static_cast<double>(created));
  if (only == "activation") {
    // Every create was acknowledged, so durable: skip the unloads of a
    // shutdown, which would swamp a profile of the creates.
    std::fflush(stdout);
    _exit(0);
  }

  // -- batched activation: one request creates `batch` sessions ------------
  {
    const size_t batch = 100;
    size_t n = std::min<size_t>(sessions, quick ? 1000 : 100000) / batch;
    std::vector<session_spec> specs(batch, session_spec{"agent", "", {}});
    cpu0 = cpu_seconds();
    t0 = steady_clock::now();
    auto made = pipelined(self, n, 10, [&](size_t) {
      self->send(host.host(), create_atom::value, specs);
    });
    secs = seconds_since(t0);
    cpu = cpu_seconds() - cpu0;
    std::printf("{\"bench\":\"activation_batched\",\"store\":\"%s\","
                "\"batch\":%zu,\"sessions\":%zu,\"seconds\":%.3f,"
                "\"sessions_per_s\":%.0f,\"cpu_s\":%.3f,"
                "\"sessions_per_cpu_s\":%.0f}\n",
                store_url.c_str(), batch, made, secs, made / secs, cpu,
                made / cpu);
  }

  // Single loads, then batch loads of other sessions (as many).
  if (batch_loads > 0) // two sets of sessions, neither loaded by the other
    reload_n = std::min(reload_n, ids.size() / 2);
  stored_loads(0, 0);
  if (batch_loads > 0)
    stored_loads(reload_n, batch_loads);

  // -- unload/load round trip ---------------------------------------------
  session_info one;
  self->request(host.host(), 10s, create_atom::value, std::string{"agent"},
                std::string{}, metadata_map{})
    .receive([&](session_info& i) { one = i; }, [](caf::error&) {});
  const int rounds = quick ? 50 : 2000;
  t0 = steady_clock::now();
  for (int i = 0; i < rounds; ++i) {
    self->request(host.host(), 10s, unload_atom::value, one.id)
      .receive([](session_info&) {}, [](caf::error&) {});
    self->request(host.host(), 10s, load_atom::value, one.id)
      .receive([](session_info&) {}, [](caf::error&) {});
  }
  std::printf("{\"bench\":\"unload_load_round_trip\",\"store\":\"%s\","
              "\"rounds\":%d,\"us_per_round_trip\":%.1f}\n",
              store_url.c_str(), rounds, seconds_since(t0) * 1e6 / rounds);

  // -- durable publish throughput -----------------------------------------
  for (size_t fan : {size_t{1}, size_t{100}}) {
    std::vector<session_actor> targets;
    auto received = std::make_shared<std::atomic<uint64_t>>(0);
    std::vector<caf::actor> subs;
    for (size_t i = 0; i < fan; ++i) {
      session_info info;
      self->request(host.host(), 10s, create_atom::value, std::string{"agent"},
                    std::string{}, metadata_map{})
        .receive([&](session_info& x) { info = x; }, [](caf::error&) {});
      self->request(host.host(), 10s, get_session_atom::value, info.id)
        .receive([&](session_actor& h) { targets.push_back(h); },
                 [](caf::error&) {});
      auto sub = sys.spawn(counting_subscriber, received);
      subs.push_back(sub);
      self->request(targets.back(), 10s, subscribe_atom::value, sub)
        .receive([](uint64_t) {}, [](caf::error&) {});
    }
    std::string payload = R"({"block_id":"b1","delta":")" + std::string(160, 'x') + "\"}";
    t0 = steady_clock::now();
    auto acked = pipelined(self, events, 2000, [&](size_t i) {
      self->send(targets[i % fan], publish_atom::value,
                 std::string{"block:delta"}, payload);
    });
    auto pub_secs = seconds_since(t0);
    auto deadline = steady_clock::now() + 30s;
    while (*received < acked && steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);
    std::printf("{\"bench\":\"durable_publish\",\"store\":\"%s\",\"sessions\":%zu,"
                "\"events\":%zu,\"acked_per_s\":%.0f,\"delivered\":%llu}\n",
                store_url.c_str(), fan, acked, acked / pub_secs,
                static_cast<unsigned long long>(received->load()));
    for (auto& s : subs)
      caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  }
  host.stop();
  return 0;
}
