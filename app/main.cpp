// `sessionhost serve`: one process with REST + WebSocket on one port and the
// session host behind it (docs/PROTOCOL.md). Main only parses options, wires
// the store, the embedded host and the transport together, and waits for
// SIGINT/SIGTERM, which it blocks before any thread starts.
#include <pthread.h>
#include <sched.h>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/config_option_adder.hpp>
#include <caf/settings.hpp>
#include <spdlog/spdlog.h>

#include "app/backup_command.hpp"
#include "app/demo.hpp"
#include "host/config.hpp"
#include "host/embedded_host.hpp"
#include "host/process/process_types.hpp"
#include "host/store/open_store.hpp"
#include "transport/http_frontend.hpp"

namespace {

using namespace sessionhost;

constexpr const char* usage =
  "usage: sessionhost serve [--listen=HOST:PORT] [--data-dir=DIR] [--store=URL]\n"
  "                         [--max-frame-size=BYTES] [--max-body-size=BYTES]\n"
  "                         [--client-queue-bytes=BYTES] [--auth-token-file=FILE]\n"
  "                         [--allowed-origins=ORIGIN,…]\n"
  "                         [--demo]\n"
  "                         [--sessionhost.*=…]\n"
  "       sessionhost serve --help   (every option)\n"
  "       sessionhost backup DEST [--data-dir=DIR] [--store=sqlite:PATH]\n";

/// `sessionhost serve` options on top of the host's `sessionhost.*` ones.
class serve_config : public sessionhost_config {
public:
  serve_config() {
    opt_group{custom_options_, "global"}
      .add(listen, "listen", "HOST:PORT to serve on (port 0: any free port)")
      .add(data_dir, "data-dir", "directory of the SQLite database")
      .add(store, "store",
           "store URL: postgresql://…, sqlite:PATH, memory: (default: "
           "SQLite in the data dir)")
      .add(max_frame, "max-frame-size",
           "largest WebSocket frame in bytes (larger: close 1009)")
      .add(max_body, "max-body-size",
           "largest HTTP body in bytes (larger: 413)")
      .add(client_queue, "client-queue-bytes",
           "per-WebSocket outgoing queue bound (past it: close 1013)")
      .add(auth_token_file, "auth-token-file",
           "file of bearer tokens, one per line: TOKEN [sessions=ID,…] "
           "[roles=ROLE,…] [read-only]")
      .add(allowed_origins, "allowed-origins",
           "browser origins allowed to open WebSockets besides the server's "
           "own, comma-separated, or * for any")
      .add(demo, "demo",
           "keep 3 echo sessions (roles demo-1..3) busy with messages");
  }

  std::string listen = "127.0.0.1:8080";
  std::string data_dir = "./data";
  std::string store;
  size_t max_frame = 1 << 20;
  size_t max_body = 1 << 20;
  size_t client_queue = 8 << 20;
  std::string auth_token_file;
  bool demo = false;
  std::string allowed_origins;
};

bool split_listen(const std::string& s, std::string& host, uint16_t& port) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return false;
  host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto p = s.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != p.npos)
    return false;
  auto v = std::stoul(p);
  if (v > 65535)
    return false;
  port = static_cast<uint16_t>(v);
  return true;
}

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "::1" || host == "localhost"
         || host.rfind("127.", 0) == 0;
}

int serve(int argc, char** argv) {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  serve_config cfg;
  if (auto err = cfg.parse(argc, argv)) {
    std::cerr << "sessionhost serve: " << to_string(err) << "\n" << usage;
    return 2;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  // CAF 0.17 starts one worker per machine core, and at least 4. With more
  // workers than CPUs (a 2-core machine, or a server confined by taskset or
  // a cpuset) every hop between them is a context switch and idle workers
  // nap and poll; unless the scheduler's size is configured, use the CPUs
  // this process may run on. (Nothing that waits for the disk runs on a
  // worker: the store's writers and the loader have threads of their own.)
  cpu_set_t cpus;
  int confined_to = 0; // CPUs this process may run on (0: unknown)
  if (sched_getaffinity(0, sizeof cpus, &cpus) == 0)
    confined_to = CPU_COUNT(&cpus);
  if (!caf::get_if<size_t>(&cfg.content, "scheduler.max-threads")
      && confined_to > 0)
    cfg.set("scheduler.max-threads", static_cast<size_t>(confined_to));
  // An idle CAF worker polls its queue: 100 spins, then 500 polls 50 µs
  // apart (~25 ms) before it sleeps on a condition variable. On one CPU
  // nothing can fill the queue while the worker spins, and each 50 µs nap
  // is a timer wake-up and a context switch: at a moderate event rate that
  // is most of the worker's switches and delays the next message by up to
  // a nap. Confined to one CPU, the worker sleeps at once and is woken by
  // whoever enqueues, unless the user configured the polling.
  if (confined_to == 1) {
    for (auto key : {"work-stealing.aggressive-poll-attempts",
                     "work-stealing.moderate-poll-attempts"})
      if (!caf::get_if<size_t>(&cfg.content, key))
        cfg.set(key, size_t{0});
  }
  if (!cfg.remainder.empty()) {
    std::cerr << "sessionhost serve: unexpected argument '"
              << cfg.remainder.front() << "' (options are --name=value)\n"
              << usage;
    return 2;
  }
  transport::http_frontend_options web_opts; // REST, WebSocket, dashboard
  auto& sopts = web_opts.server;
  if (!split_listen(cfg.listen, sopts.host, sopts.port)) {
    std::cerr << "sessionhost serve: --listen must be HOST:PORT, not '"
              << cfg.listen << "'\n";
    return 2;
  }
  if (sopts.host == "localhost")
    sopts.host = "127.0.0.1";
  auto& aopts = web_opts.api;
  if (!cfg.auth_token_file.empty()) {
    std::ifstream in{cfg.auth_token_file};
    if (!in) {
      std::cerr << "sessionhost serve: cannot read " << cfg.auth_token_file
                << "\n";
      return 2;
    }
    try {
      aopts.tokens = std::make_shared<transport::token_table>(
        transport::token_table::parse(in));
    } catch (const std::exception& e) {
      std::cerr << "sessionhost serve: " << cfg.auth_token_file << ": "
                << e.what() << "\n";
      return 2;
    }
  }
  aopts.allowed_origins = cfg.allowed_origins;
  if (!is_loopback(sopts.host) && !aopts.tokens) {
    std::cerr << "sessionhost serve: refusing to listen on " << sopts.host
              << " without --auth-token-file (only loopback is open)\n";
    return 2;
  }
  if (cfg.max_frame == 0 || cfg.max_body == 0 || cfg.client_queue == 0) {
    std::cerr << "sessionhost serve: sizes must be positive\n";
    return 2;
  }
  sopts.max_frame = cfg.max_frame;
  sopts.max_body = cfg.max_body;
  sopts.client_queue_bytes = cfg.client_queue;

  host_options hopts;
  try {
    hopts.config = host_config::from(cfg);
  } catch (const std::exception& e) {
    std::cerr << "sessionhost serve: " << e.what() << "\n";
    return 2;
  }
  apply_log_level(hopts.config.log_level);
  // Process types (sessionhost.process-types.* in the config file): each a
  // session type whose sessions run one child process.
  std::unique_ptr<process_types> procs;
  try {
    procs = std::make_unique<process_types>(
      cfg, std::filesystem::absolute(cfg.data_dir).lexically_normal().string());
    hopts.types = session_type_registry::with_builtins();
    procs->install(*hopts.types);
  } catch (const std::exception& e) {
    std::cerr << "sessionhost serve: " << e.what() << "\n";
    return 2;
  }
  hopts.client_window = hopts.config.subscriber_window;
  try {
    hopts.store = open_store(cfg.store, cfg.data_dir);
  } catch (const std::exception& e) {
    std::cerr << "sessionhost serve: cannot open the store: " << e.what()
              << "\n";
    return 1;
  }

  caf::actor_system sys{cfg};
  auto host = std::make_unique<embedded_host>(sys, hopts);
  auto web = std::make_unique<transport::http_frontend>(sys, *host, web_opts);
  uint16_t port = 0;
  try {
    port = web->start();
  } catch (const std::exception& e) {
    std::cerr << "sessionhost serve: cannot listen on " << cfg.listen << ": "
              << e.what() << "\n";
    web.reset();
    host->stop();
    return 1;
  }
  auto shown = sopts.host.find(':') != std::string::npos
                 ? "[" + sopts.host + "]"
                 : sopts.host;
  std::cout << "listening on http://" << shown << ':' << port << std::endl;
  std::unique_ptr<app::demo_sessions> demo;
  if (cfg.demo)
    demo = std::make_unique<app::demo_sessions>(sys, *host);

  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("signal {}: shutting down", sig);
  web->stop_accepting();
  demo.reset(); // no demo message may reach a session being unloaded
  host->stop(); // every session flushed, snapshotted and unloaded
  procs->stop(); // process sessions ended with the host; nothing is left
  // WebSockets closed with 1001, then the server thread.
  if (auto left = web->stop(std::chrono::milliseconds{1500}))
    spdlog::warn("{} WebSockets did not close in time", left);
  web.reset();
  auto done = std::async(std::launch::async, [&] {
    host.reset();
    sys.await_all_actors_done();
  });
  if (done.wait_for(std::chrono::seconds(10)) == std::future_status::timeout) {
    std::cerr << "sessionhost serve: shutdown stuck, running actors: "
              << sys.registry().running() << std::endl;
    std::_Exit(3);
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << usage;
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << usage;
    return 0;
  }
  if (cmd == "backup")
    return run_backup(argc - 2, argv + 2);
  if (cmd != "serve") {
    std::cerr << "sessionhost: unknown command '" << cmd << "'\n" << usage;
    return 2;
  }
  // CAF's parser stops at the first positional argument: drop "serve".
  argv[1] = argv[0];
  return serve(argc - 1, argv + 1);
}
