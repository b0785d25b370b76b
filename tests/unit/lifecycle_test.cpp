// The lifecycle table of DESIGN.md, all 5 × 4 pairs.
#include <gtest/gtest.h>

#include <optional>

#include "host/lifecycle.hpp"

using namespace sessionhost;

namespace {

struct row {
  session_state from;
  lifecycle_event event;
  std::optional<session_state> to; // empty: TransitionError
};

using s = session_state;
using e = lifecycle_event;

const row table[] = {
  {s::created, e::spawn, s::spawning},
  {s::created, e::activate, std::nullopt},
  {s::created, e::terminate, s::terminating},
  {s::created, e::clean, std::nullopt},
  {s::spawning, e::spawn, std::nullopt},
  {s::spawning, e::activate, s::active},
  {s::spawning, e::terminate, s::terminating},
  {s::spawning, e::clean, std::nullopt},
  {s::active, e::spawn, std::nullopt},
  {s::active, e::activate, std::nullopt},
  {s::active, e::terminate, s::terminating},
  {s::active, e::clean, std::nullopt},
  {s::terminating, e::spawn, std::nullopt},
  {s::terminating, e::activate, std::nullopt},
  {s::terminating, e::terminate, s::terminating},
  {s::terminating, e::clean, s::cleaned},
  {s::cleaned, e::spawn, std::nullopt},
  {s::cleaned, e::activate, std::nullopt},
  {s::cleaned, e::terminate, std::nullopt},
  {s::cleaned, e::clean, std::nullopt},
};

class next_state_table : public ::testing::TestWithParam<row> {};

} // namespace

TEST_P(next_state_table, matches_design) {
  auto r = GetParam();
  auto t = next_state(r.from, r.event);
  EXPECT_EQ(t.from, r.from);
  EXPECT_EQ(t.event, r.event);
  ASSERT_EQ(t.ok(), r.to.has_value())
    << to_string(r.from) << " + " << to_string(r.event);
  if (r.to)
    EXPECT_EQ(*t.to, *r.to);
  else
    EXPECT_EQ(t.error().message(), std::string{"invalid transition: "}
                                     + to_string(r.from) + " + "
                                     + to_string(r.event));
}

INSTANTIATE_TEST_SUITE_P(all_pairs, next_state_table, ::testing::ValuesIn(table));

TEST(lifecycle, covers_every_pair_once) {
  EXPECT_EQ(std::size(table), 20u);
  int allowed = 0;
  for (auto& r : table)
    allowed += r.to ? 1 : 0;
  EXPECT_EQ(allowed, 7); // the seven rows of the design table
}

TEST(lifecycle, state_names_round_trip) {
  for (auto st : {s::created, s::spawning, s::active, s::terminating, s::cleaned})
    EXPECT_EQ(parse_session_state(to_string(st)), st);
  EXPECT_FALSE(parse_session_state("active"));
  EXPECT_FALSE(parse_session_state(""));
}
