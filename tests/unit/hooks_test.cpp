// The hook registry on its own: ids, order, scoping, clearing.
#include <gtest/gtest.h>

#include "actors/hooks.hpp"

using namespace sessionhost;

TEST(hook_registry, host_wide_hooks_come_first_then_the_sessions_in_order) {
  hook_registry reg;
  std::vector<std::string> calls;
  reg.add(hook_kind::session_open, "s-1", [&](const hook_event&) { calls.push_back("own-1"); });
  reg.add(hook_kind::session_open, "", [&](const hook_event&) { calls.push_back("all"); });
  reg.add(hook_kind::session_open, "s-1", [&](const hook_event&) { calls.push_back("own-2"); });
  reg.add(hook_kind::session_open, "s-2", [&](const hook_event&) { calls.push_back("other"); });
  reg.add(hook_kind::session_close, "s-1", [&](const hook_event&) { calls.push_back("close"); });
  for (auto& fn : reg.collect(hook_kind::session_open, "s-1"))
    (*fn)(hook_event{"s-1", hook_kind::session_open, {}, nullptr});
  EXPECT_EQ(calls, (std::vector<std::string>{"all", "own-1", "own-2"}));
}

TEST(hook_registry, unregister_takes_the_kind_and_the_id) {
  hook_registry reg;
  auto id = reg.add(hook_kind::session_close, "s-1", [](const hook_event&) {});
  EXPECT_FALSE(reg.remove(hook_kind::session_open, id)); // wrong kind
  EXPECT_TRUE(reg.remove(hook_kind::session_close, id));
  EXPECT_FALSE(reg.remove(hook_kind::session_close, id)); // gone already
  EXPECT_TRUE(reg.collect(hook_kind::session_close, "s-1").empty());
}

TEST(hook_registry, disabled_hooks_are_invisible_until_enabled) {
  hook_registry reg;
  auto id = reg.add(hook_kind::session_open, "s-1", [](const hook_event&) {}, false);
  EXPECT_TRUE(reg.collect(hook_kind::session_open, "s-1").empty());
  EXPECT_EQ(reg.get(hook_kind::session_open, id), nullptr);
  EXPECT_TRUE(reg.enable(id));
  EXPECT_EQ(reg.collect(hook_kind::session_open, "s-1").size(), 1u);
  EXPECT_NE(reg.get(hook_kind::session_open, id), nullptr);
  EXPECT_EQ(reg.get(hook_kind::session_close, id), nullptr);
  EXPECT_FALSE(reg.enable(id + 100));
}

TEST(hook_registry, clear_removes_one_sessions_hooks_only) {
  hook_registry reg;
  reg.add(hook_kind::session_open, "s-1", [](const hook_event&) {});
  reg.add(hook_kind::heartbeat_timeout, "s-1", [](const hook_event&) {});
  reg.add(hook_kind::session_open, "s-2", [](const hook_event&) {});
  reg.add(hook_kind::session_open, "", [](const hook_event&) {});
  EXPECT_EQ(reg.clear("s-1"), 2u);
  EXPECT_EQ(reg.size(), 2u);
  EXPECT_EQ(reg.collect(hook_kind::session_open, "s-2").size(), 2u);
  reg.clear_all();
  EXPECT_EQ(reg.size(), 0u);
}
