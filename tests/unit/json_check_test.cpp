// json_valid gives nlohmann::json::accept's answer (it replaced accept on the
// publish path): on hand-picked edge cases and on random mutations of valid
// documents.
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "host/json_check.hpp"

using sessionhost::json_valid;

namespace {

bool nlohmann_accepts(const std::string& s) {
  return nlohmann::json::accept(s);
}

const std::vector<std::string>& corpus() {
  static const std::vector<std::string> xs{
    "", " ", "null", "true", "false", "nul", "truex", "0", "-0", "01", "-",
    "1.", ".5", "1.5", "-1.5e10", "1e", "1e+", "1E-2", "+1", "1e400",
    "-1e400", "0e400", "1e-400", "18446744073709551616",
    "1" + std::string(310, '0'), "1" + std::string(305, '0') + ".5e-10",
    "17976931348623157" + std::string(292, '0'),
    "17976931348623159" + std::string(292, '0'), "NaN", "Infinity",
    "\"\"", "\"abc\"", "\"a\\\"b\"", "\"\\u00e9\"", "\"\\u00E9\"",
    "\"\\ud83d\\ude00\"", "\"\\ud83d\"", "\"\\ude00\"", "\"\\ud83dx\"",
    "\"\\ud83d\\u0041\"", "\"\\u12\"", "\"\\x\"", "\"\\/\"", "\"tab\there\"",
    "\"\x7f\"", "\"\xc3\xa9\"", "\"\xc3\"", "\"\xc0\x80\"", "\"\xe0\x80\x80\"",
    "\"\xe0\xa0\x80\"", "\"\xed\xa0\x80\"", "\"\xed\x9f\xbf\"",
    "\"\xf0\x90\x80\x80\"", "\"\xf0\x80\x80\x80\"", "\"\xf4\x8f\xbf\xbf\"",
    "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xff\"", "\xc3\xa9",
    "\"unterminated", "[]", "{}", "[ ]", "{ }", "[1,]", "[,1]", "[1 2]",
    "{\"a\":1,}", "{\"a\" 1}", "{\"a\":}", "{1:2}", "{\"a\":1 \"b\":2}",
    "[[[[[]]]]]", "[[[[[]]]]", "{\"a\":[1,{\"b\":null}],\"c\":\"d\"}",
    " \t\n\r[1] \n", "[1]x", "[1] [2]", "\xef\xbb\xbf[1]", "\xef\xbb[1]",
    "\xef[1]", "[\xef\xbb\xbf]", "/* c */ 1", "[1]//",
    "{\"p\":\"xxxxxxxx\",\"t\":1795222923456789123}",
    "{\"a\":{\"b\":{\"c\":[true,false,null,-0.5e-3,\"\\n\"]}}}"};
  return xs;
}

} // namespace

TEST(json_check, agrees_with_nlohmann_on_edge_cases) {
  for (auto& x : corpus())
    EXPECT_EQ(json_valid(x), nlohmann_accepts(x)) << "input: " << x;
}

TEST(json_check, agrees_with_nlohmann_on_random_mutations) {
  // Deterministic: a failure names the input, and reruns the same.
  std::mt19937 rng{20261121};
  const std::string alphabet = "{}[]\":,.-+eE0123456789 \\/ubnrtfal"
                               "\xc3\xa9\xed\xa0\xf0\x90\x80\xef\xbb\xbf\x01";
  std::vector<std::string> seeds;
  for (auto& x : corpus())
    if (nlohmann_accepts(x) && !x.empty())
      seeds.push_back(x);
  int accepted = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    auto x = seeds[rng() % seeds.size()];
    auto edits = 1 + rng() % 3;
    for (unsigned k = 0; k < edits; ++k) {
      auto pos = x.empty() ? 0 : rng() % (x.size() + 1);
      auto c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          x.insert(x.begin() + static_cast<std::ptrdiff_t>(pos), c);
          break;
        case 1:
          if (pos < x.size())
            x.erase(pos, 1);
          break;
        default:
          if (pos < x.size())
            x[pos] = c;
      }
    }
    auto want = nlohmann_accepts(x);
    ASSERT_EQ(json_valid(x), want) << "input: " << x;
    (want ? accepted : refused)++;
  }
  // Both answers were exercised, not just one.
  EXPECT_GT(accepted, 1000);
  EXPECT_GT(refused, 1000);
}

TEST(json_check, refuses_nul_bytes_anywhere) {
  // nlohmann stops reading at a NUL after the value; json_valid refuses it,
  // so what it accepts never carries bytes past the value.
  EXPECT_FALSE(json_valid(std::string("[1]\0garbage", 11)));
  EXPECT_FALSE(json_valid(std::string("\"a\0b\"", 5)));
  EXPECT_FALSE(json_valid(std::string("\0", 1)));
}

TEST(json_check, takes_deep_nesting_without_recursion) {
  std::string deep(100000, '[');
  deep += std::string(100000, ']');
  EXPECT_TRUE(json_valid(deep));
  deep.pop_back();
  EXPECT_FALSE(json_valid(deep));
}
