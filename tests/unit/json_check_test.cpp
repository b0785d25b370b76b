// json_valid: exactly one JSON value (RFC 8259, as nlohmann::json::accept
// reads it), and no NUL byte anywhere; json_text, made only from checked
// text.
#include <stdexcept>
#include <string>
#include <vector>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "host/json_check.hpp"

using sessionhost::checked_json_view;
using sessionhost::json_text;
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

TEST(json_text, is_made_only_from_checked_text) {
  EXPECT_EQ(json_text{}.str(), "null");
  EXPECT_FALSE(json_text::check("{\"a\":}"));
  EXPECT_FALSE(json_text::check(std::string("[1]\0x", 5)));
  auto ok = json_text::check(" [1, 2] ");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->str(), " [1, 2] "); // as it came, not rewritten
  // nlohmann's writer: invalid UTF-8 in a string comes out replaced.
  auto written = json_text::write(nlohmann::json("a\xff"));
  EXPECT_TRUE(json_valid(written.str())) << written.str();
}

TEST(json_text, a_value_of_a_checked_frame_is_taken_without_a_second_check) {
  EXPECT_FALSE(checked_json_view::check("{\"data\":{\"a\":},\"op\":1}"));
  std::string frame = R"({"data": {"a": [1, "x"]}, "op": "publish"})";
  auto view = checked_json_view::check(frame);
  ASSERT_TRUE(view);
  auto at = frame.find('{', 1);
  auto data = std::string_view{frame}.substr(at, frame.find('}') + 1 - at);
  EXPECT_EQ(view->value_at(data).str(), R"({"a": [1, "x"]})");
  // Only a part of the checked text: anything else is refused.
  std::string elsewhere = "{\"a\":}";
  EXPECT_THROW(view->value_at(elsewhere), std::invalid_argument);
  EXPECT_THROW(view->value_at({}), std::invalid_argument);
}

TEST(json_text, arriving_from_another_node_it_is_checked_again) {
  // What a remote node sent is deserialized, not built by a check: a text
  // that is not JSON fails to load.
  auto roundtrip = [](const std::string& text, json_text& out) {
    std::vector<char> buf;
    caf::binary_serializer sink{nullptr, buf};
    auto copy = text;
    if (auto err = sink(copy))
      return err;
    caf::binary_deserializer source{nullptr, buf};
    return source(out);
  };
  json_text good;
  EXPECT_FALSE(roundtrip("{\"a\":1}", good));
  EXPECT_EQ(good.str(), "{\"a\":1}");
  json_text bad;
  EXPECT_TRUE(roundtrip("{\"a\":", bad));
  EXPECT_EQ(bad.str(), "null");
}
