// Session ids: what the default generator makes and what the host accepts.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "host/id_generator.hpp"

using namespace sessionhost;

TEST(uuid_generator, makes_unique_valid_version_7_ids_in_creation_order) {
  uuid_generator ids;
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    auto id = ids.next();
    ASSERT_EQ(id.size(), 36u) << id;
    EXPECT_TRUE(valid_session_id(id)) << id;
    EXPECT_EQ(id[14], '7') << id;                           // version
    EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << id; // variant
    EXPECT_TRUE(seen.insert(id).second) << "duplicate " << id;
  }
  // Ids made a few milliseconds apart sort by creation time.
  auto first = ids.next();
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  auto second = ids.next();
  EXPECT_LT(first, second);
}

TEST(session_ids, only_short_safe_ids_are_valid) {
  EXPECT_TRUE(valid_session_id("s-1"));
  EXPECT_TRUE(valid_session_id("a.b_c:d-9"));
  EXPECT_FALSE(valid_session_id(""));
  EXPECT_FALSE(valid_session_id(std::string(129, 'a')));
  EXPECT_FALSE(valid_session_id("a/b"));
  EXPECT_FALSE(valid_session_id("a b"));
  EXPECT_FALSE(valid_session_id("é"));
}
