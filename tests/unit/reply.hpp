#pragma once
// caf::expected plus value_or, for terse test assertions.

#include <caf/expected.hpp>

namespace sessionhost::test {

template <class T>
struct reply : caf::expected<T> {
  using caf::expected<T>::expected;
  using caf::expected<T>::operator=;
  T value_or(T fallback) const { return *this ? this->value() : fallback; }
};

} // namespace sessionhost::test
