// The key → seq window behind idempotent publishes: keys live for the
// window after their event's ts, the first publish of a key wins, and
// recover() finds the keys of stored events still inside the window.
#include <gtest/gtest.h>

#include "actors/idempotency_window.hpp"
#include "host/store/memory_store.hpp"

using namespace sessionhost;

TEST(idempotency_window, a_key_is_known_for_the_window_after_its_ts) {
  idempotency_window w{1'000};
  w.remember("a", 5, 100);
  EXPECT_EQ(w.find("a", 500), std::optional<uint64_t>{5});
  EXPECT_EQ(w.find("a", 1'100), std::optional<uint64_t>{5}) << "at the edge";
  EXPECT_FALSE(w.find("a", 1'101)) << "past the window";
  EXPECT_FALSE(w.find("b", 200));
  EXPECT_EQ(w.size(), 0u) << "expired keys are dropped";
}

TEST(idempotency_window, the_first_publish_of_a_key_wins) {
  idempotency_window w{1'000};
  w.remember("a", 5, 100);
  w.remember("a", 9, 200);
  EXPECT_EQ(w.find("a", 300), std::optional<uint64_t>{5});
}

TEST(idempotency_window, recover_reads_back_the_keys_inside_the_window) {
  memory_store store;
  session_info info;
  info.id = "s";
  info.type = "echo";
  info.epoch = 1;
  store.create(info);
  // 2,500 events, ts = 10 × seq, every 7th with a key.
  std::vector<event> evs;
  for (uint64_t seq = 1; seq <= 2'500; ++seq) {
    event e;
    e.session_id = "s";
    e.seq = seq;
    e.type = "log";
    e.ts = static_cast<micros>(seq * 10);
    e.epoch = 1;
    if (seq % 7 == 0)
      e.idempotency_key = "k" + std::to_string(seq);
    evs.push_back(e);
  }
  append_batch b;
  b.session_id = "s";
  b.epoch = 1;
  b.events = evs;
  store.append({b});
  idempotency_window w{5'000};
  EXPECT_FALSE(w.recovered());
  w.recover(store, "s", 2'500, 25'000); // the window reaches back to ts 20,000
  EXPECT_TRUE(w.recovered());
  EXPECT_EQ(w.find("k2002", 25'000), std::optional<uint64_t>{2'002});
  EXPECT_EQ(w.find("k2499", 25'000), std::optional<uint64_t>{2'499});
  EXPECT_FALSE(w.find("k1995", 25'000)) << "older than the window";
  EXPECT_FALSE(w.find("k7", 25'000));
  // Keys remembered afterwards keep their place in time.
  w.remember("new", 2'501, 25'010);
  EXPECT_FALSE(w.find("k2002", 25'030)) << "ts 20,020 is out at 25,030";
  EXPECT_EQ(w.find("new", 25'030), std::optional<uint64_t>{2'501});
}
