#pragma once
// Session ids, injected (seed 001). Production ids are UUIDv7 strings (time,
// then random bits), unique across nodes without coordination and ordered by
// creation time, which keeps store indexes appending; tests use a sequence.

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace sessionhost {

/// Makes session ids. Implementations are thread-safe.
class id_generator {
public:
  virtual ~id_generator();
  /// A new id, valid by valid_session_id and never returned before.
  virtual std::string next() = 0;
};

/// RFC 9562 version-7 UUIDs ("019a…-7…"): creation time, then random bits.
class uuid_generator final : public id_generator {
public:
  /// A new UUIDv7.
  std::string next() override;
};

/// "s-1", "s-2", … (unit tests).
class sequential_id_generator final : public id_generator {
public:
  /// Ids are `prefix` + 1, 2, 3, …
  explicit sequential_id_generator(std::string prefix = "s-")
    : prefix_(std::move(prefix)) {}
  /// The next id of the sequence.
  std::string next() override;

private:
  std::string prefix_;
  std::atomic<uint64_t> counter_{0};
};

/// Whether `id` is acceptable as a session id: 1–128 characters from
/// [A-Za-z0-9._:-]. Anything else is refused before it reaches a store.
bool valid_session_id(std::string_view id) noexcept;

} // namespace sessionhost
