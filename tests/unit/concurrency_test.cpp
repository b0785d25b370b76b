// Eight client actors create, message and terminate 1,000 sessions at once;
// the final counts must be exact. Run in CI plain and under ASan+UBSan.
#include "real_system.hpp"

#include <thread>

using namespace sessionhost;
using namespace std::chrono_literals;

TEST(concurrency, eight_clients_drive_a_thousand_sessions_with_exact_counts) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 4);
  caf::actor_system sys{cfg};
  auto store = std::make_shared<memory_store>();
  host_options opts;
  opts.store = store;
  opts.config.idle_timeout = 0ms;
  embedded_host host{sys, opts};
  constexpr int clients = 8;
  constexpr int per_client = 125;
  constexpr int messages = 3;
  std::atomic<int> failures{0};
  std::vector<std::vector<std::string>> ids(clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      caf::scoped_actor self{sys}; // one client actor per thread
      auto fail = [&](caf::error&) { ++failures; };
      for (int i = 0; i < per_client; ++i) {
        std::string id;
        self->request(host.host(), 30s, create_atom::value, std::string{"agent"},
                      "c" + std::to_string(c) + "-" + std::to_string(i),
                      metadata_map{})
          .receive([&](session_info& info) { id = info.id; }, fail);
        if (id.empty())
          continue;
        ids[c].push_back(id);
        session_actor s;
        self->request(host.host(), 30s, get_session_atom::value, id)
          .receive([&](session_actor& h) { s = h; }, fail);
        self->request(s, 30s, begin_spawn_atom::value)
          .receive([](session_info&) {}, fail);
        self->request(s, 30s, activate_atom::value, std::string{"agent"})
          .receive([](session_info&) {}, fail);
        for (int m = 0; m < messages; ++m)
          self->request(s, 30s, message_atom::value, std::string{"{}"})
            .receive([](uint64_t) {}, fail);
        self->request(host.host(), 30s, terminate_atom::value, id,
                      std::string{"done"})
          .receive([](session_info&) {}, fail);
      }
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(failures.load(), 0);
  session_filter cleaned{session_state::cleaned, "", ""};
  EXPECT_EQ(store->count(session_filter{}), 1000u);
  EXPECT_EQ(store->count(cleaned), 1000u);
  // Per session: 2 status changes, session:start + 3 messages, session:end,
  // 2 status changes = 9 events, seqs 1..9.
  size_t events = 0;
  for (auto& per : ids) {
    ASSERT_EQ(per.size(), size_t{per_client});
    for (auto& id : per) {
      auto evs = store->read_events(id, 0, 100);
      ASSERT_EQ(evs.size(), 9u) << id;
      for (size_t k = 0; k < evs.size(); ++k)
        ASSERT_EQ(evs[k].seq, k + 1);
      auto snap = store->load(id);
      EXPECT_EQ(snap->message_count, uint64_t{messages});
      EXPECT_EQ(snap->last_seq, 9u);
      events += evs.size();
    }
  }
  EXPECT_EQ(events, 9000u);
  EXPECT_EQ(host.observability().counters.events_persisted.load(), 9000u);
  EXPECT_EQ(host.observability().counters.events_published.load(), 9000u);
}
