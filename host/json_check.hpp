#pragma once
// Whether a text is one JSON value: nlohmann::json::accept's answer (RFC 8259,
// UTF-8 checked inside strings, \u escapes paired, a leading UTF-8 BOM
// skipped), with one difference: nlohmann stops reading at a NUL byte after
// the value, so any NUL byte is refused here and accepted text never carries
// bytes past its value.
//
// Every publish's data is checked once, where it enters: `json_text` carries
// the fact with the value, so the session and the event frame builder do not
// check it again (the check is ~8,000 instructions for 250 bytes).
// Thread safety: pure functions; a json_text is a value.

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>
#include <nlohmann/json_fwd.hpp>

namespace sessionhost {

/// Whether `text` is exactly one JSON value (whitespace around it allowed).
bool json_valid(std::string_view text);

class json_text;

/// A text that passed `json_valid`, by reference. Its parts that are whole
/// values of it (an object member's value) are JSON values too.
class checked_json_view {
public:
  /// `text` when it is one JSON value (json_valid), else nothing.
  static std::optional<checked_json_view> check(std::string_view text);

  std::string_view text() const noexcept { return text_; }

  /// `part` as JSON text. REQUIRES: `part` is a slice of text() that holds
  /// one whole value of it (a member's value as json_object_members finds
  /// it); a slice outside text() throws std::invalid_argument.
  json_text value_at(std::string_view part) const;

private:
  explicit checked_json_view(std::string_view text) : text_(text) {}
  std::string_view text_;
};

/// JSON text that is exactly one value (json_valid's sense). It can only be
/// made by checking text, by nlohmann's writer, or from a whole value of a
/// checked text: whoever receives one trusts it without checking again.
/// Arriving from another node (deserialized), it is checked on arrival.
class json_text {
public:
  /// `null`.
  json_text() = default;

  /// `text` when it is one JSON value, else nothing.
  static std::optional<json_text> check(std::string text);

  /// `j` as nlohmann writes it (invalid UTF-8 in strings replaced by U+FFFD).
  static json_text write(const nlohmann::json& j);

  const std::string& str() const noexcept { return text_; }
  std::string take() && { return std::move(text_); }

  friend bool operator==(const json_text& x, const json_text& y) {
    return x.text_ == y.text_;
  }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, json_text& x) {
    auto recheck = [&x]() -> caf::error {
      if (json_valid(x.text_))
        return caf::none;
      x.text_ = "null";
      return caf::make_error(caf::sec::invalid_argument,
                             "json_text: not a JSON value");
    };
    return f(caf::meta::type_name("sessionhost.json_text"), x.text_,
             caf::meta::load_callback(recheck));
  }

private:
  friend class checked_json_view;
  explicit json_text(std::string text) : text_(std::move(text)) {}
  std::string text_ = "null";
};

} // namespace sessionhost
