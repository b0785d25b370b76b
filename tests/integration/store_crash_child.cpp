// The writer that store_crash_test kills with SIGKILL: opens the store named
// on the command line, claims one session for a new epoch and appends events
// as fast as it can, with a snapshot every fourth batch in the same
// transaction. After each append returns it prints the acknowledged seq, so
// whatever it printed must survive the kill.
//
//   store_crash_child <store-url> <session-id> <seed> [max-seconds]
//
// Output, one line each, flushed:
//   epoch <E>            the epoch this run activated
//   start <L>            the last stored seq it continues from
//   ack <seq> snap|-     an append up to <seq> returned (with a snapshot?)
//   fenced               a newer activation took over: exit code 3
// Other failures print "error <what>" to stderr and exit with code 2.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "host/store/open_store.hpp"

using namespace sessionhost;

namespace {

void say(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s <store-url> <session-id> <seed> [max-seconds]\n",
                 argv[0]);
    return 2;
  }
  std::string url = argv[1];
  std::string id = argv[2];
  std::mt19937 rng{static_cast<unsigned>(std::strtoul(argv[3], nullptr, 10))};
  // Bounded even if nobody kills us.
  auto max_seconds = argc > 4 ? std::atoi(argv[4]) : 30;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(max_seconds);
  try {
    auto store = open_store(url, "");
    if (!store->load(id)) {
      session_info info;
      info.id = id;
      info.type = "crash";
      info.state = session_state::active;
      info.created_at = system_clock{}.now();
      try {
        store->create(info);
      } catch (const store_error& e) {
        if (e.error_code() != store_error::code::conflict)
          throw; // someone else created it first: fine
      }
    }
    auto epoch = store->activate(id);
    say("epoch " + std::to_string(epoch));
    // Read after activating: from now on no older writer can add events.
    auto info = *store->load(id);
    auto last = info.last_seq;
    say("start " + std::to_string(last));
    const std::string pad(160, 'x'); // ~200-byte payloads
    for (uint64_t n = 0; std::chrono::steady_clock::now() < deadline; ++n) {
      append_batch b;
      b.session_id = id;
      b.epoch = epoch;
      auto size = 1 + rng() % 50;
      for (uint64_t k = 0; k < size; ++k) {
        event e;
        e.session_id = id;
        e.seq = last + 1 + k;
        e.type = "tick";
        e.data = "{\"n\":" + std::to_string(e.seq) + ",\"pad\":\"" + pad + "\"}";
        e.ts = system_clock{}.now();
        e.epoch = epoch;
        b.events.push_back(std::move(e));
      }
      auto upto = last + size;
      bool snap = n % 4 == 3;
      if (snap) {
        info.message_count = upto; // the counter: events so far
        info.metadata["snapshot_seq"] = std::to_string(upto);
        info.last_seq = upto;
        info.epoch = epoch;
        info.updated_at = system_clock{}.now();
        b.snapshot = info;
      }
      try {
        store->append({b});
      } catch (const store_error& e) {
        if (e.error_code() == store_error::code::stale_epoch) {
          say("fenced");
          return 3;
        }
        throw;
      }
      last = upto;
      say("ack " + std::to_string(last) + (snap ? " snap" : " -"));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error %s\n", e.what());
    return 2;
  }
}
