// A JSON validator with nlohmann::json::accept's answers; see json_check.hpp.
#include "host/json_check.hpp"

#include <cmath>
#include <cstdlib>
#include <string>

namespace sessionhost {

namespace {

class checker {
public:
  explicit checker(std::string_view s) : p_(s.data()), end_(s.data() + s.size()) {}

  bool document() {
    // nlohmann skips a UTF-8 byte order mark; a partial one is an error.
    if (p_ < end_ && byte(*p_) == 0xEF) {
      if (end_ - p_ < 3 || byte(p_[1]) != 0xBB || byte(p_[2]) != 0xBF)
        return false;
      p_ += 3;
    }
    skip_ws();
    if (!value())
      return false;
    skip_ws();
    return p_ == end_; // a NUL byte ends nlohmann's input; here it is refused
  }

private:
  static unsigned byte(char c) { return static_cast<unsigned char>(c); }

  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r'))
      ++p_;
  }

  bool literal(const char* word, size_t n) {
    if (static_cast<size_t>(end_ - p_) < n || std::string_view{p_, n} != word)
      return false;
    p_ += n;
    return true;
  }

  // Objects and arrays without recursion: `stack` holds the open brackets.
  bool value() {
    std::string stack;
    for (;;) {
      skip_ws();
      if (p_ == end_)
        return false;
      char c = *p_;
      if (c == '{' || c == '[') {
        ++p_;
        skip_ws();
        if (p_ < end_ && *p_ == (c == '{' ? '}' : ']')) {
          ++p_; // empty: a complete value
        } else {
          stack.push_back(c);
          if (c == '{' && !member_key())
            return false;
          continue;
        }
      } else if (!scalar()) {
        return false;
      }
      // A value ended: close brackets, or go on after a comma.
      for (;;) {
        if (stack.empty())
          return true;
        skip_ws();
        if (p_ == end_)
          return false;
        char open = stack.back();
        if (*p_ == ',') {
          ++p_;
          if (open == '{' && !member_key())
            return false;
          break; // the next value
        }
        if (*p_ != (open == '{' ? '}' : ']'))
          return false;
        ++p_;
        stack.pop_back();
      }
    }
  }

  // `"key" :` of an object member.
  bool member_key() {
    skip_ws();
    if (p_ == end_ || *p_ != '"' || !string())
      return false;
    skip_ws();
    if (p_ == end_ || *p_ != ':')
      return false;
    ++p_;
    return true;
  }

  bool scalar() {
    switch (*p_) {
      case '"':
        return string();
      case 't':
        return literal("true", 4);
      case 'f':
        return literal("false", 5);
      case 'n':
        return literal("null", 4);
      default:
        return number();
    }
  }

  static int hex(char c) {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  }

  // Four hex digits after "\u"; -1 if they are not.
  int code_unit() {
    if (end_ - p_ < 4)
      return -1;
    int v = 0;
    for (int i = 0; i < 4; ++i) {
      int h = hex(p_[i]);
      if (h < 0)
        return -1;
      v = v * 16 + h;
    }
    p_ += 4;
    return v;
  }

  bool cont(int n) { // n continuation bytes 0x80..0xBF
    if (end_ - p_ < n)
      return false;
    for (int i = 0; i < n; ++i)
      if ((byte(p_[i]) & 0xC0) != 0x80)
        return false;
    p_ += n;
    return true;
  }

  bool in(unsigned lo, unsigned hi) { // the next byte within [lo, hi]
    if (p_ == end_ || byte(*p_) < lo || byte(*p_) > hi)
      return false;
    ++p_;
    return true;
  }

  bool string() {
    ++p_; // the opening quote
    while (p_ < end_) {
      unsigned b = byte(*p_);
      if (b == '"') {
        ++p_;
        return true;
      }
      if (b < 0x20)
        return false;
      ++p_;
      if (b == '\\') {
        if (p_ == end_)
          return false;
        char e = *p_++;
        switch (e) {
          case '"': case '\\': case '/': case 'b': case 'f': case 'n':
          case 'r': case 't':
            break;
          case 'u': {
            int u = code_unit();
            if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF))
              return false;
            if (u >= 0xD800 && u <= 0xDBFF) { // a low surrogate must follow
              if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u')
                return false;
              p_ += 2;
              int low = code_unit();
              if (low < 0xDC00 || low > 0xDFFF)
                return false;
            }
            break;
          }
          default:
            return false;
        }
        continue;
      }
      if (b < 0x80)
        continue;
      // UTF-8 (RFC 3629): no overlong forms, no surrogates, <= U+10FFFF.
      bool ok;
      if (b >= 0xC2 && b <= 0xDF)
        ok = cont(1);
      else if (b == 0xE0)
        ok = in(0xA0, 0xBF) && cont(1);
      else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF)
        ok = cont(2);
      else if (b == 0xED)
        ok = in(0x80, 0x9F) && cont(1);
      else if (b == 0xF0)
        ok = in(0x90, 0xBF) && cont(2);
      else if (b >= 0xF1 && b <= 0xF3)
        ok = cont(3);
      else if (b == 0xF4)
        ok = in(0x80, 0x8F) && cont(2);
      else
        ok = false;
      if (!ok)
        return false;
    }
    return false; // unterminated
  }

  size_t digits() {
    auto start = p_;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9')
      ++p_;
    return static_cast<size_t>(p_ - start);
  }

  bool number() {
    auto start = p_;
    if (*p_ == '-')
      ++p_;
    if (p_ == end_)
      return false;
    size_t int_digits;
    if (*p_ == '0') {
      ++p_;
      int_digits = 1;
    } else if (*p_ >= '1' && *p_ <= '9') {
      int_digits = digits();
    } else {
      return false;
    }
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (digits() == 0)
        return false;
    }
    long exp = 0;
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      bool neg = false;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-'))
        neg = *p_++ == '-';
      auto e = p_;
      if (digits() == 0)
        return false;
      for (auto q = e; q < p_ && exp < 100000; ++q)
        exp = exp * 10 + (*q - '0');
      if (neg)
        exp = -exp;
    }
    // Below 1e300 a number is surely finite; nearer DBL_MAX let strtod say,
    // as nlohmann does (it refuses a number that overflows a double).
    if (static_cast<long>(int_digits) + exp < 300)
      return true;
    std::string copy{start, p_};
    return std::isfinite(std::strtod(copy.c_str(), nullptr));
  }

  const char* p_;
  const char* end_;
};

} // namespace

bool json_valid(std::string_view text) noexcept {
  try {
    return checker{text}.document();
  } catch (...) {
    return false; // std::bad_alloc of a very deep nesting
  }
}

} // namespace sessionhost
