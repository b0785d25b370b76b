// json_valid: exactly one JSON value (RFC 8259, as nlohmann::json::accept
// reads it), and no NUL byte anywhere.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "host/json_check.hpp"

using sessionhost::json_valid;

TEST(json_check, accepts_one_json_value) {
  const std::vector<std::string> good{
    "null", "true", "false", "0", "-0", "1.5", "-1.5e10", "1E-2",
    "18446744073709551616", "\"\"", "\"a\\\"b\"", "\"\\u00e9\"",
    "\"\\ud83d\\ude00\"", "\"\\/\"", "\"\xc3\xa9\"", "\"\xf0\x90\x80\x80\"",
    "[]", "{}", "[ ]", " \t\n\r[1] \n", "\xef\xbb\xbf[1]",
    "{\"a\":[1,{\"b\":null}],\"c\":\"d\"}",
    "{\"a\":{\"b\":{\"c\":[true,false,null,-0.5e-3,\"\\n\"]}}}"};
  for (auto& x : good)
    EXPECT_TRUE(json_valid(x)) << "input: " << x;
}

TEST(json_check, refuses_what_is_not_one_json_value) {
  const std::vector<std::string> bad{
    "", " ", "nul", "truex", "01", "-", "1.", ".5", "+1", "1e", "1e+",
    "1e400", "NaN", "Infinity", "\"\\ud83d\"", "\"\\ude00\"", "\"\\ud83dx\"",
    "\"\\u12\"", "\"\\x\"", "\"tab\there\"", "\"\xc3\"", "\"\xc0\x80\"",
    "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xff\"", "\xc3\xa9",
    "\"unterminated", "[1,]", "[,1]", "[1 2]", "{\"a\":1,}", "{\"a\" 1}",
    "{\"a\":}", "{1:2}", "[[[[[]]]]", "[1]x", "[1] [2]", "\xef\xbb[1]",
    "[\xef\xbb\xbf]", "/* c */ 1", "[1]//"};
  for (auto& x : bad)
    EXPECT_FALSE(json_valid(x)) << "input: " << x;
}

TEST(json_check, refuses_nul_bytes_anywhere) {
  // nlohmann stops reading at a NUL after the value; json_valid refuses it,
  // so what it accepts never carries bytes past the value.
  EXPECT_FALSE(json_valid(std::string("[1]\0garbage", 11)));
  EXPECT_FALSE(json_valid(std::string("\"a\0b\"", 5)));
  EXPECT_FALSE(json_valid(std::string("\0", 1)));
  EXPECT_TRUE(json_valid("\"a\\u0000b\"")); // an escaped NUL is text
}

TEST(json_check, takes_deep_nesting) {
  std::string deep(100000, '[');
  deep += std::string(100000, ']');
  EXPECT_TRUE(json_valid(deep));
  deep.pop_back();
  EXPECT_FALSE(json_valid(deep));
}
