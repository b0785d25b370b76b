// Durable throughput and reload time of the session stores.
//
//   append/<store>/batch:<n>   one append of n events (~200-byte JSON each)
//                              per iteration, i.e. one durable transaction;
//                              the "events/s" counter is the figure to read.
//   reload/<store>/<mode>      load() + read_events() of a session with
//                              10,000 events: "no_snapshot" replays all of
//                              them, "snapshot" has a snapshot written with
//                              the last batch, so only the events after
//                              load().last_seq (none) are read.
//   load_activate/<store>/batch:100
//                              one load_activate_many of 100 stored sessions
//                              (a burst of loads on demand): read, claimed
//                              with a new epoch; read "sessions/s".
//
// SQLite writes to a file in a temporary directory, PostgreSQL to a
// throwaway server (tests/support/postgres_fixture); "memory" is the
// in-memory reference, for scale.

#include <benchmark/benchmark.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>

#include "host/store/open_store.hpp"
#include "tests/support/postgres_fixture.hpp"
#include "tests/support/temp_dir.hpp"

using namespace sessionhost;

namespace {

const std::string payload_pad(150, 'x');

/// One store per kind, opened on first use and kept for the whole run.
session_store& store_of(const std::string& kind) {
  static testing::temp_dir dir{"sessionhost-bench"};
  static std::map<std::string, store_ptr> stores;
  auto& s = stores[kind];
  if (!s) {
    if (kind == "memory")
      s = open_store("memory:", "");
    else if (kind == "sqlite")
      s = open_store("sqlite:" + dir.path + "/bench.db", "");
    else
      s = open_store(testing::fresh_postgres_database(), "");
  }
  return *s;
}

std::string fresh_session(session_store& store) {
  static std::atomic<int> n{0};
  session_info info;
  info.id = "bench-" + std::to_string(++n);
  info.type = "bench";
  info.state = session_state::active;
  info.created_at = system_clock{}.now();
  info.epoch = 1;
  store.create(info);
  return info.id;
}

event make_event(const std::string& id, uint64_t seq) {
  event e;
  e.session_id = id;
  e.seq = seq;
  e.type = "block:delta";
  e.data = "{\"seq\":" + std::to_string(seq) + ",\"text\":\"" + payload_pad + "\"}";
  e.ts = system_clock{}.now();
  e.epoch = 1;
  return e;
}

void bm_append(benchmark::State& state, std::string kind) {
  auto batch_size = static_cast<uint64_t>(state.range(0));
  auto& store = store_of(kind);
  auto id = fresh_session(store);
  uint64_t next = 1;
  uint64_t events = 0;
  for (auto _ : state) {
    state.PauseTiming();
    append_batch b;
    b.session_id = id;
    b.epoch = 1;
    for (uint64_t k = 0; k < batch_size; ++k)
      b.events.push_back(make_event(id, next + k));
    std::vector<append_batch> batches{std::move(b)};
    state.ResumeTiming();
    store.append(batches);
    next += batch_size;
    events += batch_size;
  }
  state.counters["events/s"] =
    benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}

void bm_reload(benchmark::State& state, std::string kind, bool with_snapshot) {
  constexpr uint64_t total = 10'000;
  auto& store = store_of(kind);
  auto id = fresh_session(store);
  for (uint64_t first = 1; first <= total; first += 1000) {
    append_batch b;
    b.session_id = id;
    b.epoch = 1;
    for (uint64_t s = first; s < first + 1000; ++s)
      b.events.push_back(make_event(id, s));
    if (with_snapshot && first + 1000 > total) {
      session_info snap = *store.load(id);
      snap.message_count = total;
      snap.last_seq = total;
      b.snapshot = snap;
    }
    store.append({b});
  }
  size_t replayed = 0;
  for (auto _ : state) {
    auto info = store.load(id);
    uint64_t after = with_snapshot ? info->last_seq : 0;
    replayed = 0;
    for (;;) {
      auto evs = store.read_events(id, after, 2000);
      if (evs.empty())
        break;
      replayed += evs.size();
      after = evs.back().seq;
    }
    benchmark::DoNotOptimize(replayed);
  }
  state.counters["events_replayed"] = static_cast<double>(replayed);
}

/// Loads and claims `batch` stored sessions in one `load_activate_many`, as
/// the host does for a burst of loads on demand.
void bm_load_activate(benchmark::State& state, std::string kind) {
  auto batch = static_cast<size_t>(state.range(0));
  auto& store = store_of(kind);
  std::vector<std::string> ids;
  for (size_t i = 0; i < batch; ++i)
    ids.push_back(fresh_session(store));
  size_t loaded = 0;
  for (auto _ : state) {
    for (auto& a : store.load_activate_many(ids)) {
      if (!a.info)
        state.SkipWithError("a session did not load");
      ++loaded;
    }
  }
  state.counters["sessions/s"] =
    benchmark::Counter(static_cast<double>(loaded), benchmark::Counter::kIsRate);
}

} // namespace

int main(int argc, char** argv) {
  for (std::string kind : {"memory", "sqlite", "postgres"}) {
    for (int64_t n : {1, 10, 100, 1000})
      benchmark::RegisterBenchmark(("append/" + kind).c_str(), bm_append, kind)
        ->Arg(n)
        ->ArgName("batch")
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("load_activate/" + kind).c_str(),
                                 bm_load_activate, kind)
      ->Arg(100)
      ->ArgName("batch")
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
    for (bool snap : {false, true})
      benchmark::RegisterBenchmark(
        ("reload/" + kind + (snap ? "/snapshot" : "/no_snapshot")).c_str(),
        bm_reload, kind, snap)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
