// Session ids: what the default generator makes and what the host accepts.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "host/id_generator.hpp"
#include "host/session_key.hpp"

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

TEST(session_key, uuids_pack_and_print_back_and_other_ids_stay_distinct) {
  uuid_generator ids;
  for (int i = 0; i < 1000; ++i) {
    auto id = ids.next();
    EXPECT_EQ(session_key{id}.str(), id);
    EXPECT_TRUE(session_key{id} == session_key{id});
  }
  // Not canonical (upper case, no dashes, other ids): kept as given, and
  // never equal to the canonical form of the same hex digits.
  std::string lower = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b";
  std::string upper = "0190A1B2-C3D4-7E5F-8A6B-7C8D9E0F1A2B";
  EXPECT_EQ(session_key{upper}.str(), upper);
  EXPECT_FALSE(session_key{upper} == session_key{lower});
  EXPECT_FALSE(session_key{"s-1"} == session_key{"s-2"});
  EXPECT_TRUE(session_key{"s-1"} == session_key{"s-1"});
  EXPECT_EQ(session_key{"s-1"}.str(), "s-1");
  EXPECT_EQ(session_key{"0190a1b2c3d47e5f8a6b7c8d9e0f1a2b"}.str(),
            "0190a1b2c3d47e5f8a6b7c8d9e0f1a2b");
  EXPECT_FALSE(session_key{lower} == session_key{"0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2"});
}

TEST(session_key, one_wrong_character_anywhere_makes_an_id_of_its_own) {
  std::string lower = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b";
  for (size_t i = 0; i < lower.size(); ++i)
    for (char c : {'g', 'G', 'A', 'F', '-', '0', '/', ':', '`', '\xff'}) {
      if (lower[i] == c)
        continue;
      auto other = lower;
      other[i] = c;
      SCOPED_TRACE(other);
      EXPECT_EQ(session_key{other}.str(), other);
      EXPECT_FALSE(session_key{other} == session_key{lower});
      EXPECT_TRUE(session_key{other} == session_key{other});
    }
}
